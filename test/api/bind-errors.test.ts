import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, writeFiles, ROOT, NODE } from '../helpers.ts';

const config = (port: number) => `server:
  address: 127.0.0.1
  dataDir: data
  http: { host: 127.0.0.1, port: ${port} }
  tftp: { enabled: false }
  dhcp: { enabled: false }
`;

test('a port in use: the error names the port, the cause and the fix, without a stack trace', async () => {
  const { dir, cleanup } = tempDir('sbt-bind-');
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as { port: number }).port;
  try {
    writeFiles(dir, { 'swarmboot.yaml': config(port) });
    const r = spawnSync(NODE, [join(ROOT, 'cli.ts'), 'serve', '--config', join(dir, 'swarmboot.yaml')], { encoding: 'utf8', env: { ...process.env, NODE_NO_WARNINGS: '1' }, timeout: 20_000 });
    assert.equal(r.status, 2);
    assert.match(r.stderr, new RegExp(`HTTP server cannot listen on 127\\.0\\.0\\.1:${port}: another program already listens`));
    assert.match(r.stderr, /stop it or change the port in the config/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  } finally {
    blocker.close();
    cleanup();
  }
});

test('a privileged port without root: the error says how to grant CAP_NET_BIND_SERVICE', { skip: process.getuid?.() !== 0 && 'needs root to drop privileges' }, () => {
  const { dir, cleanup } = tempDir('sbt-priv-');
  try {
    writeFiles(dir, { 'swarmboot.yaml': config(81) });
    chmodSync(dir, 0o777);
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', NODE, join(ROOT, 'cli.ts'), 'serve', '--config', join(dir, 'swarmboot.yaml')], {
      encoding: 'utf8',
      env: { ...process.env, NODE_NO_WARNINGS: '1', SWARMBOOT_ADMIN_TOKEN: 'x'.repeat(20) },
      timeout: 20_000,
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /HTTP server cannot listen on 127\.0\.0\.1:81: port 81 is privileged\. Run swarmboot as root, or grant the Node binary that runs it the capability: sudo setcap 'cap_net_bind_service=\+ep' \/\S+node/);
  } finally {
    cleanup();
  }
});
