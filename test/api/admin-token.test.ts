import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { statSync, readFileSync, writeFileSync } from 'node:fs';
import { resolveAdminToken } from '../../server/admin-token.ts';
import type { ServerSettings } from '../../config/load.ts';
import { tempDir } from '../helpers.ts';

const settings = (dataDir: string, over: Partial<ServerSettings> = {}) => ({ dataDir, ...over }) as ServerSettings;

test('admin token: the environment wins, then adminTokenFile, then adminToken', () => {
  const { dir, cleanup } = tempDir('sbt-token-');
  try {
    const file = join(dir, 'token.txt');
    writeFileSync(file, '  from-the-file-0123456789\n');
    const all = settings(join(dir, 'data'), { adminTokenFile: file, adminToken: 'from-the-config-0123456789' });
    assert.deepEqual(resolveAdminToken(all, { SWARMBOOT_ADMIN_TOKEN: 'from-the-env-0123456789' }), { token: 'from-the-env-0123456789', source: 'environment' });
    assert.deepEqual(resolveAdminToken(all, {}), { token: 'from-the-file-0123456789', source: 'adminTokenFile', file });
    assert.deepEqual(resolveAdminToken(settings(dir, { adminToken: 'from-the-config-0123456789' }), {}), { token: 'from-the-config-0123456789', source: 'adminToken' });
  } finally {
    cleanup();
  }
});

test('admin token: generated once into dataDir/admin.token, mode 0600, and kept across restarts', () => {
  const { dir, cleanup } = tempDir('sbt-token-');
  try {
    const s = settings(join(dir, 'data'));
    const first = resolveAdminToken(s, {});
    assert.equal(first.source, 'generated');
    assert.ok(first.token.length >= 32);
    assert.equal(statSync(first.file!).mode & 0o777, 0o600, 'only the owner can read it');
    assert.equal(readFileSync(first.file!, 'utf8').trim(), first.token);
    assert.equal(resolveAdminToken(s, {}).token, first.token, 'the same token after a restart');
  } finally {
    cleanup();
  }
});

test('admin token: a missing or short adminTokenFile is a clear error naming the key and file', () => {
  const { dir, cleanup } = tempDir('sbt-token-');
  try {
    const missing = join(dir, 'nope.txt');
    assert.throws(() => resolveAdminToken(settings(dir, { adminTokenFile: missing }), {}), /server\.adminTokenFile: cannot read .*nope\.txt: the file does not exist/);
    const short = join(dir, 'short.txt');
    writeFileSync(short, 'abc\n');
    assert.throws(() => resolveAdminToken(settings(dir, { adminTokenFile: short }), {}), /shorter than 16 characters/);
  } finally {
    cleanup();
  }
});
