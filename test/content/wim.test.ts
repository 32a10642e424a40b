/** Real WIMs built by wimtools (wimcapture, wimappend, wiminfo), read by our header/XML reader. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { readWimInfo } from '../../content/wim.ts';
import { scanContent } from '../../content/scan.ts';
import { silentLogger } from '../../server/log.ts';
import { run, tempDir } from './helpers.ts';
import { serverSection } from '../helpers.ts';
import { loadConfigChecked } from '../../config/content-check.ts';
import { ConfigError } from '../../config/load.ts';

const t = tempDir('sb-wim-');
const wim = join(t.dir, 'install.wim');
const esd = join(t.dir, 'install.esd');

async function must(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** wiminfo's own view of the images, to compare with ours. */
async function wiminfoImages(path: string): Promise<Array<Record<string, string>>> {
  const out = await must('wiminfo', [path]);
  const blocks = out.split('Available Images:')[1]!.split(/\n\s*\n/).filter((b) => b.includes('Index:'));
  return blocks.map((b) => Object.fromEntries(b.split('\n').map((l) => /^([^:]+):\s*(.*)$/.exec(l)).filter((m) => m !== null).map((m) => [m[1]!.trim(), m[2]!.trim()])));
}

before(async () => {
  const a = join(t.dir, 'src-a');
  const b = join(t.dir, 'src-b');
  mkdirSync(join(a, 'Windows', 'System32'), { recursive: true });
  mkdirSync(b, { recursive: true });
  writeFileSync(join(a, 'Windows', 'System32', 'kernel.bin'), Buffer.alloc(300_000, 7));
  writeFileSync(join(a, 'readme.txt'), 'hello');
  writeFileSync(join(b, 'other.txt'), 'x'.repeat(1000));
  await must('wimcapture', [a, wim, 'Windows 11 Pro', 'The <pro> & friends', '--flags', 'Professional']);
  await must('wimappend', [b, wim, 'Windows 11 Home']);
  await must('wiminfo', [wim, '1', '--image-property', 'WINDOWS/EDITIONID=Professional', '--image-property', 'WINDOWS/ARCH=9']);
  await must('wiminfo', [wim, '2', '--image-property', 'DISPLAYNAME=Home edition']);
  await must('wimcapture', [a, esd, 'Solid One', '--solid']);
});
after(() => t.cleanup());

test('image list from a two-image WIM matches wiminfo', async () => {
  const info = await readWimInfo(wim);
  const theirs = await wiminfoImages(wim);
  assert.equal(info.images.length, 2);
  assert.equal(info.compression, 'lzx');
  assert.equal(info.partNumber, 1);
  assert.equal(info.totalParts, 1);
  for (const [i, img] of info.images.entries()) {
    const w = theirs[i]!;
    assert.equal(String(img.index), w.Index);
    assert.equal(img.name, w.Name);
    assert.equal(String(img.totalBytes), w['Total Bytes']);
    assert.equal(String(img.fileCount), w['File Count']);
  }
  assert.equal(info.images[0]!.description, 'The <pro> & friends');
  assert.equal(info.images[0]!.flags, 'Professional');
  assert.equal(info.images[0]!.edition, 'Professional');
  assert.equal(info.images[0]!.arch, 'x64');
  assert.equal(info.images[0]!.totalBytes, 300_005);
  assert.equal(info.images[1]!.displayName, 'Home edition');
});

test('solid (ESD-style, LZMS) WIM is read too', async () => {
  const info = await readWimInfo(esd);
  assert.equal(info.images.length, 1);
  assert.equal(info.images[0]!.name, 'Solid One');
  assert.equal(info.compression, 'lzms');
  assert.equal(info.version, 0xe00);
});

test('a wim package: default image by name, resolve by index or name, wrong image is a named error', async () => {
  const db = new DatabaseSync(':memory:');
  const cat = await scanContent(
    [
      { id: 'win11', kind: 'wim', path: wim, image: 'windows 11 home' },
      { id: 'bad-image', kind: 'wim', path: wim, image: 'Enterprise' },
      { id: 'not-a-wim', kind: 'wim', path: join(t.dir, 'src-a', 'readme.txt') },
    ],
    { db, logger: silentLogger() },
  );
  const p = cat.require('win11');
  assert.equal(p.defaultImage?.index, 2);
  assert.equal(cat.resolveImage('win11').index, 2);
  assert.equal(cat.resolveImage('win11', 1).name, 'Windows 11 Pro');
  assert.equal(cat.resolveImage('win11', 'Windows 11 Pro').index, 1);
  assert.throws(() => cat.resolveImage('win11', 3), /package "win11" .* has no image with index 3; it has 1 "Windows 11 Pro", 2 "Windows 11 Home"/);
  assert.throws(() => cat.resolveImage('win11', 'Education'), /no image named "Education"/);
  assert.match(cat.problems().get('bad-image') ?? '', /package "bad-image" \(wim, .*install\.wim\): the WIM has no image named "Enterprise"/);
  assert.match(cat.problems().get('not-a-wim') ?? '', /not a WIM file|too short/);
  assert.throws(() => cat.resolveImage('bad-image'), /package "bad-image" is unavailable/);
  assert.throws(() => cat.resolveImage('nope'), /no content package "nope"/);
});

test('config: an apply-image step without image: on a multi-image WIM is an error at the step; a single-image WIM defaults to index 1', async () => {
  const cfg = (pkg: string, step: string): string => `${serverSection()}
packages:
  win: { kind: wim, path: ${pkg} }
sequences:
  s:
    steps:
      - { type: reboot }
      - ${step}
`;
  const file = join(t.dir, 'check.yaml');
  const text = cfg(wim, '{ type: apply-image, package: win }');
  writeFileSync(file, text);
  // Where the step is written: its line, and the column of its "{".
  const line = text.split('\n').findIndex((l) => l.includes('apply-image')) + 1;
  await assert.rejects(loadConfigChecked(file), (e: Error) => {
    assert.ok(e instanceof ConfigError);
    assert.ok(e.message.includes(`check.yaml:${line}:9: `), e.message);
    assert.match(
      e.message,
      /sequences\.s\.steps\[1\]\.image: package "win" has 2 images and the step names none; add image: with an index or name: 1 "Windows 11 Pro", 2 "Windows 11 Home"/,
    );
    return true;
  });
  writeFileSync(file, cfg(wim, '{ type: apply-image, package: win, image: 2 }'));
  await loadConfigChecked(file);
  writeFileSync(file, cfg(esd, '{ type: apply-image, package: win }'));
  const ok = await loadConfigChecked(file);
  const db = new DatabaseSync(':memory:');
  const cat = await scanContent([{ id: 'win', kind: 'wim', path: esd }], { db, logger: silentLogger() });
  assert.equal(cat.resolveImage('win').index, 1, 'the only image');
  assert.ok(ok.sequences.s);
});
