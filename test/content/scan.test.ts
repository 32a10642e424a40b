import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, renameSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { joinModels, splitModels } from '../../content/models.ts';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { scanContent } from '../../content/scan.ts';
import type { ScanProgress } from '../../content/types.ts';
import { silentLogger } from '../../server/log.ts';
import { run, tempDir, waitUntil } from './helpers.ts';

const t = tempDir('sb-scan-');
after(() => t.cleanup());

function tree(name: string, files: Record<string, string | Buffer>): string {
  const root = join(t.dir, name);
  for (const [p, body] of Object.entries(files)) {
    mkdirSync(join(root, p, '..'), { recursive: true });
    writeFileSync(join(root, p), body);
  }
  return root;
}

test('folder package hash is the sha256sum manifest; sha256sum -c checks the copy', async () => {
  const root = tree('folder', { 'b.txt': 'bee', 'a/z.bin': Buffer.alloc(5000, 1), 'a/Ä.txt': 'umlaut', 'A.txt': 'upper', 'empty': '' });
  mkdirSync(join(root, 'empty-dir'));
  const cat = await scanContent([{ id: 'f', kind: 'folder', path: root }], { db: new DatabaseSync(':memory:'), logger: silentLogger() });
  const p = cat.require('f');
  assert.deepEqual(p.files.map((f) => f.path), ['A.txt', 'a/z.bin', 'a/Ä.txt', 'b.txt', 'empty']);
  assert.equal(p.totalSize, 5 + 5000 + 6 + 3 + 0);
  // The documented recipe, run by the real tools.
  const r = await run('sh', ['-c', `cd '${root}' && find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.split(' ')[0], p.sha256);
  const manifest = join(t.dir, 'manifest.sha256');
  writeFileSync(manifest, p.files.map((f) => `${f.sha256}  ${f.path}\n`).join(''));
  const c = await run('sh', ['-c', `cd '${root}' && sha256sum -c --strict --quiet '${manifest}'`]);
  assert.equal(c.code, 0, c.stdout + c.stderr);
});

test('unchanged files are not hashed again; a touched or replaced file is', async () => {
  const root = tree('cache', { 'one.bin': Buffer.alloc(3 << 20, 1), 'two.bin': Buffer.alloc(1 << 20, 2) });
  const db = new DatabaseSync(':memory:');
  const specs = [{ id: 'c', kind: 'folder' as const, path: root }];
  const files = async (): Promise<Set<string>> => {
    const seen = new Set<string>();
    await scanContent(specs, { db, logger: silentLogger(), onProgress: (p: ScanProgress) => void (p.finished || seen.add(p.file)) });
    return seen;
  };
  assert.deepEqual(await files(), new Set(['one.bin', 'two.bin']));
  assert.deepEqual(await files(), new Set());
  // Same content, new mtime: hashed again (the cache trusts size+mtime+inode, nothing else).
  utimesSync(join(root, 'two.bin'), new Date(), new Date(Date.now() - 10_000));
  assert.deepEqual(await files(), new Set(['two.bin']));
  // Replaced by rename: new inode.
  writeFileSync(join(root, 'one.new'), Buffer.alloc(3 << 20, 9));
  renameSync(join(root, 'one.new'), join(root, 'one.bin'));
  assert.deepEqual(await files(), new Set(['one.bin']));
  const row = db.prepare('SELECT size, sha256 FROM content_hashes WHERE path = ?').get(join(root, 'one.bin')) as { size: number; sha256: string };
  assert.equal(row.size, 3 << 20);
  const cat = await scanContent(specs, { db, logger: silentLogger() });
  assert.equal(cat.lookup('c', 'one.bin')?.file.sha256, row.sha256);
});

test('symlinks inside the root are followed, those leading out are skipped', async () => {
  const outside = tree('outside', { 'secret.txt': 'secret' });
  const root = tree('links', { 'real/file.txt': 'inside' });
  symlinkSync(join(root, 'real', 'file.txt'), join(root, 'alias.txt'));
  symlinkSync(join(root, 'real'), join(root, 'dirlink'));
  symlinkSync(join(outside, 'secret.txt'), join(root, 'escape.txt'));
  symlinkSync(outside, join(root, 'escape-dir'));
  symlinkSync('/nonexistent', join(root, 'broken'));
  symlinkSync('..', join(root, 'real', 'loop'));
  const cat = await scanContent([{ id: 'l', kind: 'folder', path: root }], { db: new DatabaseSync(':memory:'), logger: silentLogger() });
  assert.deepEqual(cat.require('l').files.map((f) => f.path), ['alias.txt', 'dirlink/file.txt', 'real/file.txt']);
  assert.ok(cat.require('l').files.every((f) => f.absPath === join(root, 'real', 'file.txt')));
});

test('drivers: folder with INFs or a zip/cab archive, matched by SMBIOS model', async () => {
  const pack = tree('drv-t480', { 'Audio/audio.inf': '[Version]', 'Audio/audio.sys': 'x', 'net/NET.INF': '[Version]' });
  // A real zip, made by the zip tool from a folder of drivers.
  const src = tree('drv-zip-src', { 'opti/net.inf': '[Version]', 'opti/net.sys': 'sys' });
  const zip = join(t.dir, 'opti.zip');
  const z = await run('zip', ['-qr', zip, 'opti'], { cwd: src });
  assert.equal(z.code, 0, z.stderr);
  // A cabinet header (MSCF, reserved 0), as Dell ships driver packs.
  const cab = join(tree('drv-cab', { 'dell.cab': Buffer.concat([Buffer.from('MSCF\0\0\0\0', 'latin1'), Buffer.alloc(60, 1)]) }), 'dell.cab');
  const any = tree('drv-generic', { 'g.inf': '[Version]' });
  const bad = tree('drv-bad', {
    'pack.7z': Buffer.from('377abcaf271c0004', 'hex'),
    'sp12345.exe': Buffer.concat([Buffer.from('MZ'), Buffer.alloc(100)]),
    'renamed.zip': Buffer.alloc(100, 3),
    'empty.cab': '',
  });
  const noInf = tree('drv-noinf', { 'readme.txt': 'unpack me', 'pack.cab': 'MSCF' });
  const cat = await scanContent(
    [
      { id: 't480', kind: 'drivers', path: pack, models: ['ThinkPad T480', '20L5*'] },
      { id: 'opti', kind: 'drivers', path: zip, models: ['OptiPlex 7090'] },
      { id: 'dell', kind: 'drivers', path: cab, models: ['Latitude 7420'] },
      { id: 'generic', kind: 'drivers', path: any, models: ['*'] },
      { id: 'lenovo-20', kind: 'drivers', path: any, models: ['20*'] },
      { id: 'bad', kind: 'folder', path: pack, models: ['x'] },
      { id: 'sevenzip', kind: 'drivers', path: join(bad, 'pack.7z') },
      { id: 'exe', kind: 'drivers', path: join(bad, 'sp12345.exe') },
      { id: 'renamed', kind: 'drivers', path: join(bad, 'renamed.zip') },
      { id: 'empty', kind: 'drivers', path: join(bad, 'empty.cab') },
      { id: 'noinf', kind: 'drivers', path: noInf },
    ],
    { db: new DatabaseSync(':memory:'), logger: silentLogger() },
  );
  assert.deepEqual(cat.require('t480').infs, ['Audio/audio.inf', 'net/NET.INF']);
  assert.equal(cat.require('opti').single, true);
  assert.equal(cat.require('opti').archive, 'zip');
  assert.equal(cat.require('opti').files[0]!.path, 'opti.zip');
  assert.equal(cat.require('dell').archive, 'cab');
  const pr = cat.problems();
  assert.match(pr.get('sevenzip')!, /is a 7z archive, which Windows PE cannot unpack by itself; .*\.zip or \.cab/);
  assert.match(pr.get('exe')!, /is a Windows executable \(a self-extracting vendor pack\?\); unpack it into a folder/);
  assert.match(pr.get('renamed')!, /renamed\.zip\): is not a zip or cab archive \(it starts with 0303030303030303\)/);
  assert.match(pr.get('empty')!, /is empty/);
  assert.match(pr.get('noinf')!, /package "noinf" \(drivers, .*drv-noinf\): the drivers folder holds no \.inf files/);
  const ids = (model: string | string[], among?: string[]): string[] => cat.driversForModel(model, among).map((m) => m.package.id);
  assert.deepEqual(ids(' thinkpad  T480 '), ['t480', 'generic']);
  assert.deepEqual(ids('20L5S0AA00'), ['t480', 'lenovo-20', 'generic']);
  assert.deepEqual(ids('20XY'), ['lenovo-20', 'generic']);
  assert.deepEqual(ids(['OPTIPLEX 7090', 'Dell Inc.']), ['opti', 'generic']);
  assert.deepEqual(ids('Unknown', ['t480', 'opti']), []);
  assert.equal(cat.driversForModel('ThinkPad T480')[0]!.exact, true);
  assert.match(cat.problems().get('bad') ?? '', /"models" applies only to drivers packages/);
});

test('several SMBIOS strings: an exact match on any beats a prefix match on any, joined or as a list', async () => {
  const any = tree('drv-multi', { 'g.inf': '[Version]' });
  const cat = await scanContent(
    [
      { id: 'by-type', kind: 'drivers', path: any, models: ['20L5*'] },
      { id: 'by-name', kind: 'drivers', path: any, models: ['ThinkPad T480'] },
      { id: 'by-type-exact', kind: 'drivers', path: any, models: ['20L5S0AA00'] },
    ],
    { db: new DatabaseSync(':memory:'), logger: silentLogger() },
  );
  const ids = (reported: string | string[]): string[] => cat.driversForModel(reported).map((m) => m.package.id);
  // Lenovo: Product Name is the machine type, Version the friendly name.
  assert.deepEqual(ids(['20L5S0AB11', 'ThinkPad T480']), ['by-name', 'by-type'], 'exact on the second string beats the prefix on the first');
  assert.deepEqual(ids(joinModels(['20L5S0AB11', ' thinkpad t480 '])), ['by-name', 'by-type'], 'joined (as the API passes them) works the same');
  assert.deepEqual(ids(['20L5S0AA00', 'ThinkPad T480']), ['by-name', 'by-type-exact', 'by-type']);
  assert.deepEqual(ids(['20L5S0AB11']), ['by-type'], 'one string: as before');
  assert.equal(cat.driversForModel(['Other', 'ThinkPad T480'])[0]!.reported, 'ThinkPad T480');
  assert.equal(joinModels(['a', '', ' A ', 'b\nc', '  ']), 'a\nb\nc');
  assert.deepEqual(splitModels('a\nb'), ['a', 'b']);
});

test('rewritten in place with size and mtime put back: the cache does not hand out the old hash', async () => {
  const root = tree('ctime', { 'x.bin': Buffer.alloc(1 << 20, 1) });
  const file = join(root, 'x.bin');
  utimesSync(file, 1_700_000_000, 1_700_000_000);
  const db = new DatabaseSync(':memory:');
  const specs = [{ id: 'x', kind: 'file' as const, path: file }];
  const first = await scanContent(specs, { db, logger: silentLogger() });
  assert.equal(first.require('x').sha256, createHash('sha256').update(Buffer.alloc(1 << 20, 1)).digest('hex'));
  await new Promise((r) => setTimeout(r, 20));
  writeFileSync(file, Buffer.alloc(1 << 20, 2)); // same size, in place (O_TRUNC keeps the inode)
  utimesSync(file, 1_700_000_000, 1_700_000_000);
  const second = await scanContent(specs, { db, logger: silentLogger() });
  assert.equal(second.require('x').sha256, createHash('sha256').update(Buffer.alloc(1 << 20, 2)).digest('hex'));
});

test('check: unchanged costs no hashing; a replaced file is stale (not fresh) until re-hashed; a folder gains new files', async () => {
  const root = tree('check', { 'a.bin': 'one', 'dir/b.txt': 'bee' });
  const single = join(tree('check-single', { 'w.bin': 'version 1' }), 'w.bin');
  const cat = await scanContent(
    [
      { id: 'f', kind: 'folder', path: root },
      { id: 'w', kind: 'file', path: single },
    ],
    { db: new DatabaseSync(':memory:'), logger: silentLogger() },
  );
  const changes: string[] = [];
  cat.onChange((id) => changes.push(id));
  try {
    const f0 = cat.require('f');
    assert.equal(await cat.check('f'), f0, 'nothing changed: the same info, nothing swapped');
    assert.deepEqual((await cat.sweep('test')).changed, []);
    assert.deepEqual(changes, []);

    // Replaced by rename: `fresh` sees it at once (a stat), before any check ran.
    const fresh1 = cat.fresh('w');
    assert.ok(fresh1);
    writeFileSync(`${single}.new`, 'version 2, longer');
    renameSync(`${single}.new`, single);
    assert.equal(cat.fresh('w'), undefined, 'a replaced single file is not handed out with its old hash');
    assert.match(cat.staleness('w') ?? '', /package "w" changed on disk and is being re-hashed/);
    await waitUntil(() => cat.fresh('w') !== undefined, 5000, 're-hash of w');
    assert.equal(cat.fresh('w')!.sha256, createHash('sha256').update('version 2, longer').digest('hex'));
    assert.equal(cat.fresh('w')!.totalSize, 17);

    // A file added to the folder (and one in a new subfolder) appears after a check.
    writeFileSync(join(root, 'dir', 'c.inf'), 'new');
    mkdirSync(join(root, 'new'));
    writeFileSync(join(root, 'new', 'd.txt'), 'deep');
    const swept = await cat.sweep('test');
    assert.deepEqual(swept.changed, ['f']);
    assert.deepEqual(cat.require('f').files.map((x) => x.path), ['a.bin', 'dir/b.txt', 'dir/c.inf', 'new/d.txt']);
    assert.ok(cat.require('f').dirs.includes(join(root, 'new')), 'the new folder is known (to be watched)');
    assert.notEqual(cat.require('f').sha256, f0.sha256);
    assert.deepEqual(changes.sort(), ['f', 'w']);
  } finally {
    cat.close();
  }
});

test('problems name the package and the fix; others still scan', async () => {
  const f = tree('p', { 'x.bin': 'x' });
  const cat = await scanContent(
    [
      { id: 'ok', kind: 'file', path: join(f, 'x.bin') },
      { id: 'missing', kind: 'file', path: join(f, 'nope.bin') },
      { id: 'dir-as-file', kind: 'file', path: f },
      { id: 'file-as-folder', kind: 'folder', path: join(f, 'x.bin') },
      { id: 'relative', kind: 'file', path: 'x.bin' },
      { id: 'bad/id', kind: 'file', path: join(f, 'x.bin') },
      { id: 'twice', kind: 'file', path: join(f, 'x.bin') },
      { id: 'twice', kind: 'file', path: join(f, 'x.bin') },
    ],
    { db: new DatabaseSync(':memory:'), logger: silentLogger() },
  );
  assert.deepEqual(cat.list().map((p) => p.id), ['ok']);
  const pr = cat.problems();
  assert.match(pr.get('missing')!, /package "missing" \(file, .*nope\.bin\): does not exist/);
  assert.match(pr.get('dir-as-file')!, /must be a file, this is a directory/);
  assert.match(pr.get('file-as-folder')!, /must be a directory/);
  assert.match(pr.get('relative')!, /must be absolute/);
  assert.match(pr.get('bad/id')!, /package id "bad\/id" must be/);
  assert.match(pr.get('twice')!, /declared 2 times/);
  assert.throws(() => cat.require('missing'), /package "missing" is unavailable: .*does not exist/);
  assert.throws(() => cat.require('OK'), /no content package "OK" \(did you mean "ok"\?\)/);
});

test('a package that breaks on re-scan comes back by itself once its file is there again', async () => {
  const root = tree('retry', { 'boot.wim.tmp': 'x' });
  const file = join(root, 'boot.bin');
  writeFileSync(file, 'one');
  const cat = await scanContent([{ id: 'r', kind: 'file', path: file }], { db: new DatabaseSync(':memory:'), logger: silentLogger(), retryMs: 100 });
  const changes: Array<string | undefined> = [];
  cat.onChange((_id, info) => changes.push(info?.sha256));
  try {
    renameSync(file, `${file}.moved`);
    assert.equal(await cat.check('r'), undefined);
    assert.throws(() => cat.require('r'), /unavailable: .*does not exist/);
    writeFileSync(file, 'two');
    const until = Date.now() + 3000;
    while (!cat.get('r') && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.equal(cat.get('r')?.sha256, createHash('sha256').update('two').digest('hex'));
    assert.deepEqual(changes, [undefined, cat.get('r')?.sha256]);
  } finally {
    cat.close();
  }
});
