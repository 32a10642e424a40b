import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { normalizeName, PathResolver } from '../../server/tftp/path.ts';

let base = '';
let root = '';

before(() => {
  base = mkdtempSync(path.join(os.tmpdir(), 'sbtftp-path-'));
  root = path.join(base, 'root');
  mkdirSync(path.join(root, 'Boot', 'EFI'), { recursive: true });
  writeFileSync(path.join(root, 'Boot', 'BCD'), 'bcd');
  writeFileSync(path.join(root, 'Boot', 'EFI', 'bootmgfw.efi'), 'efi');
  writeFileSync(path.join(root, 'ipxe.efi'), 'ipxe');
  writeFileSync(path.join(base, 'secret'), 'secret');
  symlinkSync(path.join(base, 'secret'), path.join(root, 'escape'));
  symlinkSync(base, path.join(root, 'updir'));
  symlinkSync('ipxe.efi', path.join(root, 'alias.efi'));
});

after(() => rmSync(base, { recursive: true, force: true }));

test('normalizeName maps separators, strips leading ones, refuses .., drives and NUL', () => {
  assert.deepEqual(normalizeName('\\Boot\\BCD'), { ok: true, segments: ['Boot', 'BCD'], name: 'Boot/BCD' });
  assert.deepEqual(normalizeName('///ipxe.efi'), { ok: true, segments: ['ipxe.efi'], name: 'ipxe.efi' });
  assert.deepEqual(normalizeName('./a//b/./c'), { ok: true, segments: ['a', 'b', 'c'], name: 'a/b/c' });
  assert.deepEqual(normalizeName('/etc/passwd'), { ok: true, segments: ['etc', 'passwd'], name: 'etc/passwd' });
  for (const [raw, reason] of [
    ['../secret', 'dotdot'],
    ['..\\secret', 'dotdot'],
    ['Boot/../../secret', 'dotdot'],
    ['\\..\\..\\etc\\passwd', 'dotdot'],
    ['C:\\Windows\\win.ini', 'drive'],
    ['c:boot.ini', 'drive'],
    ['ipxe.efi\0.txt', 'nul'],
    ['', 'empty'],
    ['///', 'empty'],
    ['a'.repeat(2000), 'too_long'],
  ] as const) {
    assert.deepEqual(normalizeName(raw), { ok: false, reason }, raw);
  }
});

test('case-insensitive lookup finds boot/bcd for \\BOOT\\bcd', async () => {
  const r = new PathResolver(root);
  for (const name of ['\\Boot\\BCD', '\\BOOT\\bcd', 'boot/efi/BOOTMGFW.EFI', '/IPXE.EFI']) {
    const n = normalizeName(name);
    assert.ok(n.ok);
    const res = await r.resolve(n.segments);
    assert.ok(res.ok, name);
  }
  const n = normalizeName('boot/nothing');
  assert.ok(n.ok);
  assert.deepEqual(await r.resolve(n.segments), { ok: false, code: 'not_found', reason: 'no such file' });
});

test('folders that differ only by case are both searched (Boot/BCD beside boot/x64/bootmgfw.efi)', async () => {
  const dir = path.join(base, 'mixed');
  mkdirSync(path.join(dir, 'winpe', 'Boot'), { recursive: true });
  mkdirSync(path.join(dir, 'winpe', 'boot', 'x64'), { recursive: true });
  writeFileSync(path.join(dir, 'winpe', 'Boot', 'BCD'), 'bcd');
  writeFileSync(path.join(dir, 'winpe', 'boot', 'x64', 'bootmgfw.efi'), 'efi');
  const r = new PathResolver(dir);
  for (const name of ['\\winpe\\boot\\BCD', 'WinPE/Boot/x64/bootmgfw.efi', 'winpe/BOOT/bcd', 'winpe/boot/x64/BOOTMGFW.EFI']) {
    const n = normalizeName(name);
    assert.ok(n.ok);
    const res = await r.resolve(n.segments);
    assert.ok(res.ok, name);
  }
  assert.equal((await r.resolve(['winpe', 'boot'])).ok, false, 'a folder is still not served');
});

test('symlinks that leave the root are refused; links inside it are followed', async () => {
  const r = new PathResolver(root);
  const esc = await r.resolve(['escape']);
  assert.equal(esc.ok, false);
  assert.equal(!esc.ok && esc.code, 'denied');
  const up = await r.resolve(['updir', 'secret']);
  assert.equal(up.ok, false);
  const upCase = await r.resolve(['UPDIR', 'SECRET']);
  assert.equal(upCase.ok, false);
  const alias = await r.resolve(['alias.efi']);
  assert.ok(alias.ok);
});

test('directories and the root itself are not served; /etc/passwd stays under the root', async () => {
  const r = new PathResolver(root);
  const dir = await r.resolve(['Boot']);
  assert.equal(dir.ok, false);
  const n = normalizeName('/etc/passwd');
  assert.ok(n.ok);
  const res = await r.resolve(n.segments);
  assert.equal(res.ok, false);
});
