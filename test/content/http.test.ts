/** The content route against real clients: curl (ranges, resume, conditionals) and aria2c. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { makeFile, rawRequest, run, serve, sha256File, tempDir, waitUntil, type Served } from './helpers.ts';

const t = tempDir('sb-http-');
const blob = join(t.dir, 'blob.bin');
const folder = join(t.dir, 'folder');
const longRel = `${'deep-directory-name/'.repeat(6)}file with spaces & #hash.txt`;
const outside = join(t.dir, 'outside.txt');
const swap = join(t.dir, 'swap');
const inplace = join(t.dir, 'inplace.bin');
const bootDir = join(t.dir, 'winpe');
let blobSha: string;
let blobSize: number;
let s: Served;
let url: string;

before(async () => {
  blobSize = 40 * (1 << 20) + 123;
  blobSha = makeFile(blob, blobSize);
  mkdirSync(join(folder, longRel, '..'), { recursive: true });
  writeFileSync(join(folder, longRel), 'deep');
  writeFileSync(join(folder, 'boot.ipxe'), '#!ipxe\n');
  writeFileSync(outside, 'root:x:0:0:outside the package');
  mkdirSync(join(swap, 'sub'), { recursive: true });
  writeFileSync(join(swap, 'file.txt'), 'inside file');
  writeFileSync(join(swap, 'sub', 'outside.txt'), 'inside sub');
  makeFile(inplace, 3 << 20, 7);
  // A whole-second mtime, so the test can put it back exactly (utimes takes no nanoseconds).
  utimesSync(inplace, 1_700_000_000, 1_700_000_000);
  mkdirSync(join(bootDir, 'Boot'), { recursive: true });
  mkdirSync(join(bootDir, 'sources'), { recursive: true });
  writeFileSync(join(bootDir, 'bootmgr.efi'), Buffer.alloc(4096, 0x4d));
  writeFileSync(join(bootDir, 'Boot', 'BCD'), 'bcd store');
  makeFile(join(bootDir, 'sources', 'boot.wim'), (2 << 20) + 17, 9);
  s = await serve([
    { id: 'blob', kind: 'file', path: blob },
    { id: 'f', kind: 'folder', path: folder },
    { id: 'swap', kind: 'folder', path: swap },
    { id: 'inplace', kind: 'file', path: inplace },
    { id: 'winpe', kind: 'boot', path: bootDir },
    { id: 'wimboot', kind: 'boot', path: join(bootDir, 'sources', 'boot.wim') },
  ]);
  url = `${s.base}/content/blob/blob.bin`;
});
after(async () => {
  await s.close();
  t.cleanup();
});

function headers(raw: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of raw.split(/\r?\n/).slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
  }
  return out;
}

async function curl(args: string[]): Promise<{ code: number | null; status: number; head: Record<string, string>; body: Buffer }> {
  const hfile = join(t.dir, `h-${Math.random()}`);
  const bfile = join(t.dir, `b-${Math.random()}`);
  const r = await run('curl', ['-s', '-D', hfile, '-o', bfile, ...args]);
  const head = readFileSync(hfile, 'latin1');
  const body = existsSync(bfile) ? readFileSync(bfile) : Buffer.alloc(0);
  return { code: r.code, status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1]), head: headers(head), body };
}

test('HEAD: length, validators and digest, no body', async () => {
  const raw = await rawRequest(s.base, '/content/blob/blob.bin', '', 'HEAD');
  assert.equal(raw.body.length, 0);
  const r = await curl(['-I', url]);
  assert.equal(r.status, 200);
  assert.equal(r.head['content-length'], String(blobSize));
  assert.equal(r.head['accept-ranges'], 'bytes');
  assert.equal(r.head.etag, `"sha256-${blobSha}"`);
  assert.equal(r.head['x-content-sha256'], blobSha);
  assert.equal(r.head['repr-digest'], `sha-256=:${Buffer.from(blobSha, 'hex').toString('base64')}:`);
  assert.equal(r.head['last-modified'], statSync(blob).mtime.toUTCString());
});

test('GET whole file and ranges with curl; 416 when unsatisfiable', async () => {
  const whole = join(t.dir, 'whole.bin');
  const w = await run('curl', ['-sf', '-o', whole, url]);
  assert.equal(w.code, 0);
  assert.equal(sha256File(whole), blobSha);
  const data = readFileSync(blob);
  for (const [spec, start, end] of [
    ['0-99', 0, 99],
    ['-100', blobSize - 100, blobSize - 1],
    [`${blobSize - 5}-`, blobSize - 5, blobSize - 1],
    ['1048575-3145728', 1048575, 3145728],
    [`100-${blobSize + 1000}`, 100, blobSize - 1],
  ] as const) {
    const r = await curl(['-r', spec, url]);
    assert.equal(r.status, 206, spec);
    assert.equal(r.head['content-range'], `bytes ${start}-${end}/${blobSize}`, spec);
    assert.ok(r.body.equals(data.subarray(start, end + 1)), spec);
    assert.equal(r.head['x-content-sha256'], blobSha, 'digest is of the whole representation');
  }
  const bad = await curl(['-r', `${blobSize}-`, url]);
  assert.equal(bad.status, 416);
  assert.equal(bad.head['content-range'], `bytes */${blobSize}`);
  assert.equal(bad.body.length, 0);
  // Disjoint ranges: the whole file, as RFC 9110 allows.
  const multi = await curl(['-r', '0-9,100-109', url]);
  assert.equal(multi.status, 200);
  assert.equal(multi.body.length, blobSize);
});

test('If-None-Match, If-Modified-Since and If-Range', async () => {
  const etag = `"sha256-${blobSha}"`;
  const lm = statSync(blob).mtime.toUTCString();
  assert.equal((await curl(['-H', `If-None-Match: ${etag}`, url])).status, 304);
  assert.equal((await curl(['-H', `If-None-Match: "x", W/${etag}`, url])).status, 304);
  const miss = await curl(['-H', 'If-None-Match: "sha256-0000"', '-r', '0-0', url]);
  assert.equal(miss.status, 206);
  const nm = await curl(['-H', `If-Modified-Since: ${lm}`, url]);
  assert.equal(nm.status, 304);
  assert.equal(nm.head.etag, etag);
  assert.equal(nm.body.length, 0);
  assert.equal((await curl(['-H', `If-Range: ${etag}`, '-r', '10-19', url])).status, 206);
  assert.equal((await curl(['-H', `If-Range: ${lm}`, '-r', '10-19', url])).status, 206);
  const stale = await curl(['-H', 'If-Range: "sha256-old"', '-r', '10-19', url]);
  assert.equal(stale.status, 200);
  assert.equal(stale.body.length, blobSize);
  assert.equal((await curl(['-H', `If-Range: W/${etag}`, '-r', '10-19', '-I', url])).status, 200);
});

test('folder files by path, long and encoded names; package index', async () => {
  const enc = longRel.split('/').map(encodeURIComponent).join('/');
  const r = await curl([`${s.base}/content/f/${enc}`]);
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'deep');
  const ipxe = await curl([`${s.base}/content/f/BOOT.IPXE`]);
  assert.equal(ipxe.status, 200, 'case-insensitive fallback');
  assert.match(ipxe.head['content-type'] ?? '', /^text\/plain/);
  const idx = JSON.parse((await curl([`${s.base}/content/f/`])).body.toString()) as { files: Array<{ path: string; url: string; sha256: string; size: number }> };
  assert.deepEqual(idx.files.map((f) => f.path).sort(), ['boot.ipxe', longRel].sort());
  assert.ok(idx.files.every((f) => f.url.startsWith('/content/f/') && f.sha256.length === 64));
  const list = JSON.parse((await curl([`${s.base}/content/`])).body.toString()) as { packages: Array<{ id: string }> };
  assert.deepEqual(list.packages.map((p) => p.id), ['blob', 'f', 'swap', 'inplace', 'winpe', 'wimboot']);
  assert.equal((await curl([`${s.base}/content/blob/other.bin`])).status, 404);
  assert.equal((await curl([`${s.base}/content/nope/x`])).status, 404);
});

test('traversal attempts are refused and never reach a file outside the package', async () => {
  const targets: Array<[string, number]> = [
    ['/content/f/../outside.txt', 400],
    ['/content/f/../../../../etc/passwd', 400],
    ['/content/f/%2e%2e/outside.txt', 400],
    ['/content/f/%2E%2E%2Foutside.txt', 400],
    ['/content/f/..%2foutside.txt', 400],
    ['/content/f/..%5coutside.txt', 400],
    ['/content/f/..\\outside.txt', 400],
    ['/content/f/sub%00.txt', 400],
    ['/content/f//etc/passwd', 400],
    [`/content/f/${encodeURIComponent(outside)}`, 400],
    ['/content/f/etc/passwd', 404],
    ['/content/f/./boot.ipxe', 400],
    ['/content/..%2f..%2fetc/passwd', 404],
  ];
  for (const [target, status] of targets) {
    const r = await rawRequest(s.base, target);
    // Node's HTTP parser itself rejects some raw bytes with 400 before routing; either way not 200.
    assert.equal(r.status, status, target);
    assert.ok(!r.body.toString().includes('root:x'), target);
  }
  const c = await run('curl', ['-s', '--path-as-is', `${s.base}/content/f/../outside.txt`]);
  assert.ok(!c.stdout.includes('root:x'));
});

test('boot packages: a WinPE folder and a single boot file, served with ranges and their hashes', async () => {
  const idx = JSON.parse((await curl([`${s.base}/content/winpe/`])).body.toString()) as { kind: string; files: Array<{ path: string; url: string; sha256: string; size: number }> };
  assert.equal(idx.kind, 'boot');
  assert.deepEqual(idx.files.map((f) => f.path), ['Boot/BCD', 'bootmgr.efi', 'sources/boot.wim']);
  for (const f of idx.files) {
    const r = await curl([`${s.base}${f.url}`]);
    assert.equal(r.status, 200, f.path);
    assert.equal(r.head['x-content-sha256'], f.sha256, f.path);
    assert.equal(sha256File(join(bootDir, f.path)), f.sha256, f.path);
    assert.equal(r.body.length, f.size);
  }
  const wim = readFileSync(join(bootDir, 'sources', 'boot.wim'));
  const r = await curl(['-r', '1000-1048675', `${s.base}/content/wimboot/boot.wim`]);
  assert.equal(r.status, 206);
  assert.ok(r.body.equals(wim.subarray(1000, 1048676)));
  assert.equal(r.head['x-content-sha256'], s.catalogue.require('wimboot').sha256);
});

test('a symlink swapped in after the scan is not followed: not for the file, not for a directory on its path', async () => {
  const fileUrl = `${s.base}/content/swap/file.txt`;
  const subUrl = `${s.base}/content/swap/sub/outside.txt`;
  assert.equal((await curl([fileUrl])).body.toString(), 'inside file');
  assert.equal((await curl([subUrl])).body.toString(), 'inside sub');
  // The file itself becomes a symlink to a file outside the package (O_NOFOLLOW refuses it).
  unlinkSync(join(swap, 'file.txt'));
  symlinkSync(outside, join(swap, 'file.txt'));
  const a = await curl([fileUrl]);
  assert.equal(a.status, 404);
  assert.doesNotMatch(a.body.toString(), /root:x/);
  // A directory on the way becomes a symlink to a directory outside holding the same name.
  const elsewhere = join(t.dir, 'elsewhere');
  mkdirSync(elsewhere);
  writeFileSync(join(elsewhere, 'outside.txt'), 'root:x:0:0:outside via a swapped directory');
  rmSync(join(swap, 'sub'), { recursive: true });
  symlinkSync(elsewhere, join(swap, 'sub'));
  const b = await curl([subUrl]);
  assert.equal(b.status, 404);
  assert.doesNotMatch(b.body.toString(), /root:x/);
  // The re-check those requests started drops both files from the package.
  await waitUntil(() => s.catalogue.get('swap') === undefined || s.catalogue.lookup('swap', 'file.txt') === undefined, 5000, 're-check');
});

test('rewritten in place with the same size and the old mtime put back (rsync --inplace, cp -p): new bytes, never the old hash', async () => {
  const u = `${s.base}/content/inplace/inplace.bin`;
  const oldSha = s.catalogue.require('inplace').sha256;
  const first = await curl([u]);
  assert.equal(first.head['x-content-sha256'], oldSha);
  const before = statSync(inplace);
  // ctime has a clock tick of granularity: let one pass so the rewrite gets a new one.
  await new Promise((r) => setTimeout(r, 20));
  const fresh = Buffer.alloc(before.size, 0x5a);
  const fd = openSync(inplace, 'r+');
  writeSync(fd, fresh, 0, fresh.length, 0);
  closeSync(fd);
  utimesSync(inplace, 1_700_000_000, 1_700_000_000);
  const after = statSync(inplace, { bigint: true });
  assert.equal(after.mtimeNs, 1_700_000_000_000_000_000n, 'mtime put back');
  assert.equal(s.catalogue.require('inplace').files[0]!.mtimeNs, after.mtimeNs, 'same mtime as when it was hashed');
  assert.equal(Number(after.size), before.size);
  assert.equal(Number(after.ino), before.ino);
  const second = await curl([u]);
  assert.equal(second.status, 200);
  assert.ok(second.body.equals(fresh), 'the new bytes, not cached chunks of the old version');
  assert.notEqual(second.head['x-content-sha256'], oldSha);
  assert.notEqual(second.head.etag, first.head.etag);
  const newSha = sha256File(inplace);
  await waitUntil(() => s.catalogue.get('inplace')?.sha256 === newSha, 10_000, 're-hash');
  assert.equal((await curl(['-I', u])).head['x-content-sha256'], newSha);
  // A resume with the old validator gets the whole new file, not a range spliced onto old bytes.
  const stale = await curl(['-H', `If-Range: ${first.head.etag}`, '-r', '0-9', u]);
  assert.equal(stale.status, 200);
});

/** Starts a throttled download and kills it (SIGKILL: no chance to save anything) once `bytes` have landed and `extraMs` passed. */
async function startAndKill(cmd: string, args: string[], out: string, bytes = 2 << 20, extraMs = 0): Promise<number> {
  const p = spawn(cmd, args, { stdio: 'ignore' });
  const size = (): number => {
    try {
      return statSync(out).size;
    } catch {
      return 0;
    }
  };
  await waitUntil(() => size() > bytes, 20_000, `${cmd} to write ${bytes} bytes`);
  if (extraMs) await new Promise((r) => setTimeout(r, extraMs));
  p.kill('SIGKILL');
  const [code, signal] = (await new Promise((r) => p.once('close', (c, s) => r([c, s])))) as [number | null, string | null];
  assert.equal(signal, 'SIGKILL', `${cmd} was still running when killed (exit ${code})`);
  return size();
}

const partials = (): number => Number(/swarmboot_content_requests_total\{route="content",method="GET",status="206"\} (\d+)/.exec(s.metrics.render())?.[1] ?? 0);
const bytesSent = (): number => Number(/swarmboot_content_bytes_sent_total\{route="content",package="blob"\} (\d+)/.exec(s.metrics.render())?.[1] ?? 0);

test('curl: killed mid-download, resumed with -C -, hash matches', async () => {
  const out = join(t.dir, 'curl-resume.bin');
  const partial = await startAndKill('curl', ['-s', '--limit-rate', '4M', '-o', out, url], out);
  assert.ok(partial > 0 && partial < blobSize, `partial ${partial}`);
  const before = partials();
  const r = await run('curl', ['-sf', '-C', '-', '-o', out, url]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(partials(), before + 1, 'resumed with a range request');
  assert.equal(sha256File(out), blobSha);
});

test('aria2c: segmented download over 4 connections, and killed (SIGKILL) then resumed with -c', async () => {
  const dir = join(t.dir, 'aria');
  mkdirSync(dir);
  const common = ['--no-conf', '--console-log-level=error', '--summary-interval=0', '--file-allocation=none', '--allow-overwrite=false', '-d', dir];
  const seg = await run('aria2c', [...common, '-x4', '-s4', '-k1M', '-o', 'seg.bin', url], { timeoutMs: 60_000 });
  assert.equal(seg.code, 0, seg.stdout + seg.stderr);
  assert.equal(sha256File(join(dir, 'seg.bin')), blobSha);

  // Killed outright (SIGKILL, as a crashed agent or a power cut would). aria2c writes its control
  // file (resume.bin.aria2) when the download starts and records progress in it only every
  // --auto-save-interval seconds (default 60): killed before a save, its control file says "nothing
  // done" and `-c` fetches the whole file again (checked below: still hash-correct); with a save
  // before the kill it resumes with a range request from the pieces the save recorded.
  const out = join(dir, 'resume.bin');
  const partial = await startAndKill('aria2c', [...common, '--auto-save-interval=1', '--max-download-limit=4M', '-o', 'resume.bin', url], out, 4 << 20, 1500);
  assert.ok(partial < blobSize, `partial ${partial}`);
  assert.ok(existsSync(`${out}.aria2`), 'aria2c left its control file');
  const before = partials();
  const sent0 = bytesSent();
  const r = await run('aria2c', [...common, '-c', '-o', 'resume.bin', url], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.ok(partials() > before, 'resumed with a range request');
  const resumedBytes = bytesSent() - sent0;
  assert.ok(resumedBytes < blobSize - (1 << 20), `the resume fetched ${resumedBytes} of ${blobSize} bytes: the saved progress was used`);
  assert.equal(sha256File(out), blobSha);
  assert.ok(!existsSync(`${out}.aria2`), 'control file removed once complete');

  // Default auto-save interval: killed after a couple of seconds, the resume starts over, and the
  // result is still exactly the file.
  const out2 = join(dir, 'restart.bin');
  const partial2 = await startAndKill('aria2c', [...common, '--max-download-limit=4M', '-o', 'restart.bin', url], out2, 4 << 20);
  assert.ok(partial2 < blobSize, `partial ${partial2}`);
  const r2 = await run('aria2c', [...common, '-c', '-o', 'restart.bin', url], { timeoutMs: 60_000 });
  assert.equal(r2.code, 0, r2.stdout + r2.stderr);
  assert.equal(sha256File(out2), blobSha);
});

test('slow clients hold at most one buffer each and are cut off when stalled', async () => {
  const slow = await serve([{ id: 'blob', kind: 'file', path: blob }], { stallMs: 1500 });
  const held = (): number => Number(/swarmboot_content_buffer_bytes\{state="held"\} (\d+)/.exec(slow.metrics.render())?.[1]);
  const busy = (): number => Number(/swarmboot_content_buffer_bytes\{state="busy"\} (\d+)/.exec(slow.metrics.render())?.[1]);
  const active = (): number => Number(/swarmboot_content_transfers_active (\d+)/.exec(slow.metrics.render())?.[1]);
  const socks: Socket[] = [];
  try {
    const port = Number(new URL(slow.base).port);
    for (let i = 0; i < 8; i++) {
      const sock = connect({ port, host: '127.0.0.1' });
      // A client that asks and then never reads: only the kernel buffers fill.
      sock.pause();
      sock.on('error', () => undefined);
      sock.write('GET /content/blob/blob.bin HTTP/1.1\r\nHost: x\r\n\r\n');
      socks.push(sock);
    }
    await waitUntil(() => active() === 8, 5000, '8 transfers');
    await new Promise((r) => setTimeout(r, 500));
    // The 8 share the file's first chunks; at most one chunk busy per stalled client, and the
    // cache window (16 MiB, the sender's default) bounds the rest, plus up to 4 spare buffers.
    assert.ok(busy() <= 8 << 20, `busy ${busy()}`);
    assert.ok(held() <= (8 + 16 + 4) << 20, `held ${held()}`);
    const sent = Number(/swarmboot_content_bytes_sent_total\{route="content",package="blob"\} (\d+)/.exec(slow.metrics.render())?.[1]);
    assert.ok(sent < 8 * 16 * (1 << 20), `sent ${sent}: nothing runs ahead of the socket buffers`);
    await waitUntil(() => active() === 0, 6000, 'stalled transfers to be dropped');
    assert.match(slow.metrics.render(), /swarmboot_content_transfers_total\{route="content",outcome="stalled"\} 8/);
    await waitUntil(() => busy() === 0, 2000, 'write callbacks of the dropped transfers to release their chunks');
  } finally {
    for (const s of socks) s.destroy();
    await slow.close();
  }
});

test('bandwidth limits: per client, and one bucket shared by a subnet', async () => {
  const small = join(t.dir, 'small.bin');
  makeFile(small, 6 << 20);
  const lim = await serve([{ id: 's', kind: 'file', path: small }], {
    limits: { perClientBytesPerSec: 8 << 20, subnets: [{ cidr: '127.0.0.0/24', bytesPerSec: 4 << 20 }] },
  });
  try {
    const u = `${lim.base}/content/s/small.bin`;
    const timed = async (iface: string): Promise<number> => {
      const r = await run('curl', ['-sf', '--interface', iface, '-o', '/dev/null', '-w', '%{time_total}', u]);
      assert.equal(r.code, 0, r.stderr);
      return Number(r.stdout);
    };
    // 127.0.1.1 is outside the /24: only the 8 MiB/s client bucket (2 MiB burst): ~0.5 s.
    const one = await timed('127.0.1.1');
    assert.ok(one > 0.35 && one < 2, `per-client ${one}s`);
    // Two clients inside 127.0.0.0/24 share 4 MiB/s: 12 MiB take ~2.75 s together.
    const t0 = performance.now();
    const [a, b] = await Promise.all([timed('127.0.0.2'), timed('127.0.0.3')]);
    const both = (performance.now() - t0) / 1000;
    assert.ok(both > 2.2 && both < 6, `subnet pair ${both}s (${a}, ${b})`);
  } finally {
    await lim.close();
  }
});
