/**
 * Content in the real daemon: the catalogue follows the disk while the daemon runs (a WIM replaced
 * by rename, a file added to a folder) without a restart or a download; drivers archives and
 * several SMBIOS strings in resolved sequences; /tftp with the same ranges and validators as
 * /content; bandwidth limits that change on reload; SIGHUP and `swarmboot content scan` re-checking
 * a running daemon.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { daemonFor, NODE, ROOT, serverSection, startCli, tempDir, writeFiles } from '../helpers.ts';
import { makeFile, run, sha256File } from './helpers.ts';

const { dir, cleanup } = tempDir('sbt-content-daemon-');
const cfgFile = join(dir, 'swarmboot.yaml');
const wim = join(dir, 'content/images/win.wim');
const tftpFile = join(dir, 'tftp/boot/boot.wim');
let d: Awaited<ReturnType<typeof daemonFor>>;
const sha = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');

function config(limits = ''): string {
  const server = serverSection()
    .replace('tftp: { enabled: false }', 'tftp: { enabled: false, root: tftp }')
    .replace('http: { host: 127.0.0.1, port: 0 }', `http: { host: 127.0.0.1, port: 0${limits ? `, limits: ${limits}` : ''} }`);
  return `${server}
packages:
  win: { kind: wim, path: images/win.wim }
  tools: { kind: folder, path: tools }
  opti: { kind: drivers, path: drivers/opti.zip, models: ["OptiPlex 7090"] }
  t480: { kind: drivers, path: drivers/t480, models: ["ThinkPad T480"] }
  type20: { kind: drivers, path: drivers/t480, models: ["20L5*"] }
sequences:
  deploy:
    steps:
      - { type: apply-image, package: win }
      - { type: drivers, package: auto }
      - { type: install-package, package: tools, command: "setup.cmd" }
machines:
  hosts:
    - { mac: "00:00:00:00:00:01", sequence: deploy }
`;
}

async function mustRun(cmd: string, args: string[], cwd?: string): Promise<void> {
  const r = await run(cmd, args, cwd ? { cwd } : {});
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
}

before(async () => {
  writeFiles(dir, {
    'src/Windows/System32/a.txt': 'image one\n',
    'src2/Windows/System32/b.txt': 'image two, a little longer\n'.repeat(50),
    'content/tools/setup.cmd': 'echo setup\n',
    'content/drivers/t480/net/e1d.inf': '[Version]\n',
    'zipsrc/opti/net.inf': '[Version]\n; optiplex\n',
    'zipsrc/opti/net.sys': 'driver binary\n'.repeat(100),
    'swarmboot.yaml': config(),
  });
  mkdirSync(join(dir, 'content/images'), { recursive: true });
  mkdirSync(join(dir, 'tftp/boot'), { recursive: true });
  makeFile(tftpFile, (3 << 20) + 5, 4);
  await mustRun('wimcapture', [join(dir, 'src'), wim, 'Windows Only', '--compress=none']);
  await mustRun('zip', ['-qr', join(dir, 'content/drivers/opti.zip'), 'opti'], join(dir, 'zipsrc'));
  d = await daemonFor(cfgFile);
  await d.contentReady();
});
after(async () => {
  await d?.close();
  cleanup();
});

interface Step {
  type: string;
  note?: string;
  package?: { id: string; url: string; size: number; sha256: string; files: Array<{ path: string; size: number; sha256: string; url: string }> } | null;
  image?: { index: number; name?: string };
}

async function sequence(query = ''): Promise<{ status: number; steps?: Step[]; error?: string }> {
  const r = await fetch(`${d.url}/api/v1/machines/00:00:00:00:00:01/sequence${query}`);
  const body = (await r.json()) as { steps?: Step[]; error?: string };
  return { status: r.status, ...body };
}

async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a single-image WIM needs no image:; a WIM replaced by rename updates the sequence without any download', async () => {
  const first = await sequence();
  assert.equal(first.status, 200, first.error);
  const apply = first.steps![0]!;
  assert.deepEqual(apply.image, { index: 1, name: 'Windows Only' });
  assert.equal(apply.package!.sha256, sha(wim));

  // Replace it the usual way: a new file renamed over the old one.
  const next = `${wim}.new`;
  await mustRun('wimcapture', [join(dir, 'src2'), next, 'Windows Next', '--compress=none']);
  const newSha = sha(next);
  const newSize = readFileSync(next).length;
  renameSync(next, wim);
  // From now on no answer may carry the old hash: either "being re-hashed" (503) or the new one.
  const seen = new Set<string>();
  const got = await until('the new WIM in the sequence', 15_000, async () => {
    const r = await sequence();
    if (r.status === 503) {
      seen.add('503');
      assert.match(r.error ?? '', /package "win" changed on disk and is being re-hashed|content is being scanned/);
      return undefined;
    }
    assert.equal(r.status, 200, r.error);
    assert.equal(r.steps![0]!.package!.sha256, newSha, 'never the old hash once the file was replaced');
    return r.steps![0]!;
  });
  assert.equal(got.package!.size, newSize);
  assert.deepEqual(got.image, { index: 1, name: 'Windows Next' });
  const metrics = await (await fetch(`${d.url}/metrics`)).text();
  assert.doesNotMatch(metrics, /swarmboot_content_bytes_sent_total\{route="content",package="win"\}/, 'no download of the WIM happened');
});

test('a file added to a folder package appears in the sequence by itself (watched folder)', async () => {
  writeFileSync(join(dir, 'content/tools/added.txt'), 'new tool\n');
  mkdirSync(join(dir, 'content/tools/sub'));
  writeFileSync(join(dir, 'content/tools/sub/deep.txt'), 'deeper\n');
  const files = await until('added files', 10_000, async () => {
    const r = await sequence();
    const f = r.steps?.[2]?.package?.files.map((x) => x.path);
    return f?.includes('added.txt') && f.includes('sub/deep.txt') ? r.steps![2]!.package!.files : undefined;
  });
  const added = files.find((f) => f.path === 'added.txt')!;
  assert.equal(added.sha256, sha(join(dir, 'content/tools/added.txt')));
  // And a file added later inside the new subfolder too (its watch came with the re-scan).
  writeFileSync(join(dir, 'content/tools/sub/deeper.txt'), 'deepest\n');
  await until('file in the new subfolder', 10_000, async () => {
    const r = await sequence();
    return r.steps?.[2]?.package?.files.some((x) => x.path === 'sub/deeper.txt') ? true : undefined;
  });
});

test('drivers: auto picks a zip archive package by model; several SMBIOS strings, exact on any before prefix', async () => {
  const r = await sequence(`?model=${encodeURIComponent('OptiPlex 7090')}`);
  assert.equal(r.status, 200, r.error);
  const drv = r.steps![1]!;
  assert.equal(drv.package!.id, 'opti');
  assert.equal(drv.package!.files.length, 1);
  const f = drv.package!.files[0]!;
  assert.match(f.url, /\/content\/opti\/opti\.zip$/);
  const out = join(dir, 'opti-download.zip');
  await mustRun('curl', ['-sf', '-o', out, f.url]);
  assert.equal(sha256File(out), f.sha256);
  assert.equal(readFileSync(out).length, f.size);
  const list = await run('unzip', ['-l', out]);
  if (list.code === 0) assert.match(list.stdout, /opti\/net\.inf/);

  // Lenovo: the machine type in Product Name (matches the prefix "20L5*"), the name in Version.
  const both = await sequence(`?product=20L5S0AA00&version=${encodeURIComponent('ThinkPad T480')}`);
  assert.equal(both.steps![1]!.package!.id, 't480', 'the exact match on version beats the prefix on product');
  const repeated = await sequence(`?model=20L5S0AA00&model=${encodeURIComponent('thinkpad  t480')}`);
  assert.equal(repeated.steps![1]!.package!.id, 't480');
  const typeOnly = await sequence('?model=20L5S0AA00');
  assert.equal(typeOnly.steps![1]!.package!.id, 'type20', 'one model string behaves as before');
  const bad = await fetch(`${d.url}/api/v1/machines/00:00:00:00:00:01/sequence?model=${'x'.repeat(201)}`);
  assert.equal(bad.status, 400);
});

test('/tftp: ranges, validators and conditionals with curl, counted under route="tftp"', async () => {
  const url = `${d.url}/tftp/Boot/BOOT.WIM`;
  const data = readFileSync(tftpFile);
  const hfile = join(dir, 'h.txt');
  const curl = async (args: string[]): Promise<{ status: number; head: Record<string, string>; body: Buffer }> => {
    const bfile = join(dir, `b-${Math.random()}`);
    await run('curl', ['-s', '-D', hfile, '-o', bfile, ...args]);
    const raw = readFileSync(hfile, 'latin1');
    const head: Record<string, string> = {};
    for (const l of raw.split('\r\n').slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) head[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    let body = Buffer.alloc(0);
    try {
      body = readFileSync(bfile);
    } catch {
      // no body
    }
    return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(raw)?.[1]), head, body };
  };
  const h = await curl(['-I', url]);
  assert.equal(h.status, 200);
  assert.equal(h.head['accept-ranges'], 'bytes');
  assert.equal(h.head['content-length'], String(data.length));
  assert.match(h.head.etag ?? '', /^"m-/);
  assert.ok(h.head['last-modified']);
  const r = await curl(['-r', '1048570-2097160', url]);
  assert.equal(r.status, 206);
  assert.equal(r.head['content-range'], `bytes 1048570-2097160/${data.length}`);
  assert.ok(r.body.equals(data.subarray(1048570, 2097161)));
  const tail = await curl(['-r', '-5', url]);
  assert.ok(tail.body.equals(data.subarray(data.length - 5)));
  assert.equal((await curl(['-r', `${data.length}-`, url])).status, 416);
  assert.equal((await curl(['-H', `If-None-Match: ${h.head.etag}`, url])).status, 304);
  assert.equal((await curl(['-H', `If-Range: ${h.head.etag}`, '-r', '0-9', url])).status, 206);
  const stale = await curl(['-H', 'If-Range: "m-0-0-0-0"', '-r', '0-9', url]);
  assert.equal(stale.status, 200);
  assert.equal(stale.body.length, data.length);
  // curl resuming a partial boot.wim the way an interrupted fetch would.
  const out = join(dir, 'bootwim.part');
  writeFileSync(out, data.subarray(0, 1_000_000));
  await mustRun('curl', ['-sf', '-C', '-', '-o', out, url]);
  assert.equal(sha256File(out), sha(tftpFile));
  const metrics = await (await fetch(`${d.url}/metrics`)).text();
  assert.match(metrics, /swarmboot_content_requests_total\{route="tftp",method="GET",status="206"\} [1-9]/);
  assert.match(metrics, /swarmboot_content_bytes_sent_total\{route="tftp"\} [1-9]/);
});

test('bandwidth limits apply to /tftp (the sender /content uses), and a reload changes them for the next transfer', async () => {
  const timed = async (url: string): Promise<number> => {
    const r = await run('curl', ['-sf', '-o', '/dev/null', '-w', '%{time_total}', url]);
    assert.equal(r.code, 0, r.stderr);
    return Number(r.stdout);
  };
  const url = `${d.url}/tftp/boot/boot.wim`; // 3 MiB
  assert.ok((await timed(url)) < 1, 'unlimited at first');
  writeFileSync(cfgFile, config('{ perClient: 1MB/s }'));
  assert.equal((await d.reload('test')).result, 'applied');
  // 3.1 MB at 1 MB/s with a 0.25 s burst: about 2.9 s.
  const slow = await timed(url);
  assert.ok(slow > 2 && slow < 8, `limited: ${slow} s`);
  writeFileSync(cfgFile, config());
  assert.equal((await d.reload('test')).result, 'applied');
  assert.ok((await timed(url)) < 1, 'unlimited again after the reload');
});

test('SIGHUP and a `swarmboot content scan` beside the running daemon re-check its packages', { timeout: 60_000 }, async () => {
  const cli = await startCli(['serve', '--config', cfgFile, '--no-watch']);
  try {
    await cli.waitForLog(/"msg":"content scan finished"/, 30_000);
    cli.child.kill('SIGHUP');
    await cli.waitForLog(/"reason":"config reload".*"msg":"content re-check finished"/, 15_000);
    // The CLI scan, another process on the same state database: the daemon notices it finished.
    const scan = await run(NODE, [join(ROOT, 'cli.ts'), 'content', 'scan', '--config', cfgFile], { env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    assert.equal(scan.code, 0, scan.stdout + scan.stderr);
    assert.match(scan.stdout, /opti\s+drivers/);
    await cli.waitForLog(/swarmboot content scan` finished.*"msg":"content re-check finished"/, 15_000);
  } finally {
    await cli.stop();
  }
});
