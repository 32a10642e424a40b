/**
 * A file that changes while curl downloads it behaves as documented at the top of
 * server/http/content.ts: replaced by rename → the transfer finishes with the old bytes; modified in
 * place → the transfer is cut short (curl exit 18) with only old bytes; afterwards the new file is
 * served under a new ETag and, once re-hashed, with its new SHA-256.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { openSync, readFileSync, renameSync, statSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { makeFile, run, serve, sha256File, tempDir, waitUntil, type Served } from './helpers.ts';

const t = tempDir('sb-change-');
const SIZE = 12 << 20;
let s: Served;

before(async () => {
  makeFile(join(t.dir, 'a.bin'), SIZE, 1);
  makeFile(join(t.dir, 'b.bin'), SIZE, 2);
  // Paced by the server (curl's --limit-rate is bursty and loopback buffers hold megabytes), so
  // the server's read position stays close to what curl has received.
  s = await serve(
    [
      { id: 'a', kind: 'file', path: join(t.dir, 'a.bin') },
      { id: 'b', kind: 'file', path: join(t.dir, 'b.bin') },
    ],
    { limits: { perClientBytesPerSec: 4 << 20 } },
  );
});
after(async () => {
  await s.close();
  t.cleanup();
});

async function head(url: string): Promise<Record<string, string>> {
  const r = await run('curl', ['-sI', url]);
  return Object.fromEntries(
    r.stdout
      .split('\r\n')
      .map((l) => /^([^:]+):\s*(.*)$/.exec(l))
      .filter((m) => m !== null)
      .map((m) => [m[1]!.toLowerCase(), m[2]!]),
  );
}

/** Starts a curl download; resolves once it has received `bytes`. */
async function slowDownload(url: string, out: string, bytes: number): Promise<{ done: Promise<number | null> }> {
  const p = spawn('curl', ['-s', '-o', out, url], { stdio: 'ignore' });
  const done = new Promise<number | null>((r) => p.once('close', (code) => r(code)));
  await waitUntil(() => {
    try {
      return statSync(out).size >= bytes;
    } catch {
      return false;
    }
  }, 20_000, 'download to start');
  // Wrapped: an async function returning a bare promise would make the caller wait for curl.
  return { done };
}

test('replaced by rename during a download: the transfer completes with the old version', async () => {
  const path = join(t.dir, 'a.bin');
  const url = `${s.base}/content/a/a.bin`;
  const oldSha = sha256File(path);
  const out = join(t.dir, 'a.out');
  const { done } = await slowDownload(url, out, 2 << 20);
  assert.ok(statSync(out).size < SIZE, 'still downloading when the file is replaced');
  const fresh = join(t.dir, 'a.new');
  const newSha = makeFile(fresh, SIZE + 4096, 3);
  renameSync(fresh, path);
  assert.equal(await done, 0);
  assert.equal(sha256File(out), oldSha);

  // First request after the change: the new file, under a stamp ETag and without a hash yet.
  const h1 = await head(url);
  assert.equal(h1['content-length'], String(SIZE + 4096));
  assert.match(h1.etag ?? '', /^"m-/);
  assert.equal(h1['x-content-sha256'], undefined);
  // The re-hash runs in the background; then the new hash is served and the catalogue knows it.
  await waitUntil(() => s.catalogue.get('a')?.sha256 === newSha, 10_000, 're-hash');
  const h2 = await head(url);
  assert.equal(h2.etag, `"sha256-${newSha}"`);
  assert.equal(h2['x-content-sha256'], newSha);
  const r = await run('curl', ['-sf', '-o', out, url]);
  assert.equal(r.code, 0);
  assert.equal(sha256File(out), newSha);
});

test('modified in place during a download: cut short with old bytes only; If-Range resume gets the whole new file', async () => {
  const path = join(t.dir, 'b.bin');
  const url = `${s.base}/content/b/b.bin`;
  const old = readFileSync(path);
  const oldEtag = `"sha256-${createHash('sha256').update(old).digest('hex')}"`;
  const out = join(t.dir, 'b.out');
  const { done } = await slowDownload(url, out, 2 << 20);
  // Loopback socket buffers let the server run megabytes ahead of curl: change the file just
  // ahead of what the server has read so far.
  const sent = Number(/swarmboot_content_bytes_sent_total\{route="content",package="b"\} (\d+)/.exec(s.metrics.render())?.[1]);
  assert.ok(sent + (3 << 20) < SIZE, `server already sent ${sent} bytes`);
  assert.ok(statSync(out).size < SIZE, 'still downloading when the file is modified');
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.alloc(1 << 20, 0xee), 0, 1 << 20, sent + (2 << 20));
  closeSync(fd);
  assert.equal(await done, 18, 'curl: transfer closed with outstanding read data remaining');
  const got = readFileSync(out);
  assert.ok(got.length < SIZE, `short body (${got.length})`);
  assert.ok(got.equals(old.subarray(0, got.length)), 'every byte received is from the old version');
  assert.match(s.metrics.render(), /swarmboot_content_transfers_total\{route="content",outcome="changed"\} 1/);

  // Resuming with the old validator: the server answers 200 with the whole new file, which curl
  // refuses to splice on (exit 33) instead of mixing versions.
  const resume = await run('curl', ['-s', '-C', '-', '-H', `If-Range: ${oldEtag}`, '-o', out, url]);
  assert.equal(resume.code, 33);
  const fresh = await run('curl', ['-sI', '-o', '/dev/null', '-w', '%{http_code}', '-H', `If-Range: ${oldEtag}`, '-r', '0-99', url]);
  assert.equal(fresh.stdout, '200');
  await waitUntil(() => s.catalogue.get('b')?.sha256 === sha256File(path), 10_000, 're-hash');
  assert.equal((await head(url))['x-content-sha256'], sha256File(path));
});
