import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, readFileSync, writeFileSync, symlinkSync } from 'node:fs';
import { tempDir, writeFiles, daemonFor, serverSection } from '../helpers.ts';

const run = promisify(execFile);
const { dir, cleanup } = tempDir('sbt-seqc-');
let d: Awaited<ReturnType<typeof daemonFor>>;
const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

before(async () => {
  writeFiles(dir, {
    'src/Windows/System32/a.txt': 'image one\n',
    'src2/Windows/System32/b.txt': 'image two\n',
    'content/drivers/lat/net.inf': '[Version]\n',
    'content/drivers/lat/sub/storage.inf': '[Version]\n; storage\n',
    'content/drivers/opti/net.inf': '[Version]\n; optiplex\n',
    'content/apps/setup.exe': 'MZ fake setup\n'.repeat(100),
    'tftp/Winpe/Boot/BCD': 'bcd\n',
    'outside.txt': 'secret\n',
    'swarmboot.yaml': `${serverSection().replace('tftp: { enabled: false }', 'tftp: { enabled: false, root: tftp }')}
packages:
  win: { kind: wim, path: images/win.wim }
  lat: { kind: drivers, path: drivers/lat, models: [Latitude 5440] }
  opti: { kind: drivers, path: drivers/opti, models: ["OptiPlex*"] }
  setup: { kind: file, path: apps/setup.exe }
sequences:
  deploy:
    steps:
      - { type: apply-image, package: win, image: "Windows Pro" }
      - { type: drivers, package: auto }
      - { type: install-package, package: setup, command: "setup.exe /q" }
machines:
  hosts:
    - { mac: "00:00:00:00:00:01", sequence: deploy }
`,
  });
  mkdirSync(join(dir, 'content/images'), { recursive: true });
  await run('wimcapture', [join(dir, 'src'), join(dir, 'content/images/win.wim'), 'Windows Home', '--compress=none']);
  await run('wimappend', [join(dir, 'src2'), join(dir, 'content/images/win.wim'), 'Windows Pro']);
  symlinkSync(join(dir, 'outside.txt'), join(dir, 'tftp/escape.txt'));
  d = await daemonFor(join(dir, 'swarmboot.yaml'));
  await d.contentReady();
});
after(async () => {
  await d?.close();
  cleanup();
});

test('a resolved sequence carries URL, size and SHA-256 for every package, and the bytes match', async () => {
  const r = await fetch(`${d.url}/api/v1/machines/00:00:00:00:00:01/sequence?model=${encodeURIComponent('  latitude   5440 ')}`);
  assert.equal(r.status, 200);
  const body = await r.json();
  const [apply, drivers, setup] = body.steps;
  assert.deepEqual(apply.image, { index: 2, name: 'Windows Pro' }, 'image chosen by name from the real WIM');
  assert.equal(apply.package.sha256, sha(join(dir, 'content/images/win.wim')));
  assert.equal(drivers.package.id, 'lat', 'drivers: auto picks by the reported model');
  assert.match(drivers.note, /chosen for model/);
  assert.equal(drivers.package.files.length, 2);
  for (const f of [...drivers.package.files, ...setup.package.files, ...apply.package.files]) {
    const out = join(dir, `dl-${f.sha256}`);
    await run('curl', ['-sf', '-o', out, f.url]);
    assert.equal(sha(out), f.sha256, f.url);
    assert.equal(readFileSync(out).length, f.size);
  }
  assert.equal(setup.command, 'setup.exe /q');

  const opti = await (await fetch(`${d.url}/api/v1/machines/00:00:00:00:00:01/sequence?model=OptiPlex%207010`)).json();
  assert.equal(opti.steps[1].package.id, 'opti', 'prefix model match');
  const none = await (await fetch(`${d.url}/api/v1/machines/00:00:00:00:00:01/sequence?model=ThinkPad`)).json();
  assert.equal(none.steps[1].package, null);
  assert.match(none.steps[1].note, /no driver package lists model "ThinkPad"/);
});

test('a config naming an image the WIM does not have is refused at start, naming the step and the images', async () => {
  const bad = readFileSync(join(dir, 'swarmboot.yaml'), 'utf8').replace('image: "Windows Pro"', 'image: "Windows Enterprise"');
  writeFileSync(join(dir, 'bad.yaml'), bad);
  await assert.rejects(daemonFor(join(dir, 'bad.yaml')), (e: Error) => {
    assert.match(e.message, /bad\.yaml:\d+:\d+: sequences\.deploy\.steps\[0\]\.image: package "win" has no image named "Windows Enterprise"; it has 1 "Windows Home", 2 "Windows Pro"/);
    return true;
  });
});

test('the TFTP root is served over HTTP with the same rules: any case, no escape', async () => {
  const ok = await fetch(`${d.url}/tftp/winpe/boot/bcd`);
  assert.equal(ok.status, 200);
  assert.equal(await ok.text(), 'bcd\n');
  assert.equal((await fetch(`${d.url}/tftp/Winpe%5CBoot%5CBCD`)).status, 200, 'backslashes as Windows sends them');
  for (const bad of ['/tftp/escape.txt', '/tftp/..%2foutside.txt', '/tftp/%2e%2e/outside.txt', '/tftp/nothing']) {
    const r = await fetch(`${d.url}${bad}`);
    assert.ok(r.status === 400 || r.status === 404, `${bad}: ${r.status}`);
    assert.doesNotMatch(await r.text(), /secret/);
  }
});
