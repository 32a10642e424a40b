import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { BlockCache, type BlockReader } from '../../server/tftp/cache.ts';

let dir = '';
let file = '';
let content: Buffer;
const CHUNK = 4096;

before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sbtftp-cache-'));
  file = path.join(dir, 'f.bin');
  content = randomBytes(CHUNK * 40 + 123);
  writeFileSync(file, content);
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function readAll(r: BlockReader, step: number): Promise<Buffer> {
  const out = Buffer.alloc(r.size);
  for (let off = 0; off < r.size; off += step) {
    const len = Math.min(step, r.size - off);
    r.want(off, off + len);
    while (!r.copy(off, len, out, off)) {
      await new Promise<void>((res, rej) => r.onReady((e) => (e ? rej(e) : res())));
    }
  }
  return out;
}

test('reads are byte-exact across chunk boundaries', async () => {
  const c = new BlockCache({ chunkSize: CHUNK, budgetBytes: CHUNK * 4 });
  const r = c.open(file, statSync(file));
  assert.deepEqual(await readAll(r, 1000), content);
  r.close();
  assert.equal(c.stats().openFds, 0);
});

test('concurrent readers of one file share chunks: each is read from disk once', async () => {
  const c = new BlockCache({ chunkSize: CHUNK, budgetBytes: CHUNK * 100 });
  const readers = Array.from({ length: 5 }, () => c.open(file, statSync(file)));
  const outs = await Promise.all(readers.map((r) => readAll(r, 1456)));
  for (const o of outs) assert.deepEqual(o, content);
  assert.equal(c.stats().diskReads, 41);
  for (const r of readers) r.close();
  const s = c.stats();
  assert.equal(s.openFds, 0);
  assert.equal(s.pinnedChunks, 0);
});

test('unpinned chunks stay within the byte budget; pinned ones are bounded by readers', async () => {
  const budget = CHUNK * 3;
  const c = new BlockCache({ chunkSize: CHUNK, budgetBytes: budget, readaheadChunks: 1 });
  const r = c.open(file, statSync(file));
  let maxBytes = 0;
  const out = Buffer.alloc(r.size);
  for (let off = 0; off < r.size; off += 1456) {
    const len = Math.min(1456, r.size - off);
    r.want(off, off + len);
    while (!r.copy(off, len, out, off)) await new Promise<void>((res) => r.onReady(() => res()));
    maxBytes = Math.max(maxBytes, c.stats().bytes);
    // This reader pins at most the chunk it is in, the next one and the read-ahead.
    assert.ok(c.stats().pinnedChunks <= 3);
  }
  assert.deepEqual(out, content);
  r.close();
  assert.ok(c.stats().bytes <= budget, `cache holds ${c.stats().bytes} > ${budget}`);
  assert.ok(maxBytes <= budget + 3 * CHUNK);
  c.clear();
  assert.equal(c.stats().bytes, 0);
  assert.equal(c.stats().files, 0);
});

test('a replaced file is never served from the old cache entry', async () => {
  const c = new BlockCache({ chunkSize: CHUNK });
  const f = path.join(dir, 'g.bin');
  writeFileSync(f, 'old contents');
  const r1 = c.open(f, statSync(f));
  assert.equal((await readAll(r1, 100)).toString(), 'old contents');
  r1.close();
  rmSync(f);
  writeFileSync(f, 'new contents!');
  const r2 = c.open(f, statSync(f));
  assert.equal((await readAll(r2, 100)).toString(), 'new contents!');
  r2.close();
});

test('with the addon, chunks in the page cache are read at once; EAGAIN and short reads finish on a thread', { skip: !['cc', 'gcc', 'clang'].some((c) => spawnSync(c, ['--version']).status === 0) && 'no C compiler' }, async () => {
  const { loadNativeUdp } = await import('../../server/native-udp.ts');
  const { addon } = await loadNativeUdp();
  assert.ok(addon);
  // The real call on a file just written (in the page cache): every chunk inline, and the bytes right.
  const c = new BlockCache({ chunkSize: CHUNK, budgetBytes: CHUNK * 100 });
  c.readNow = addon.preadNowait;
  const r = c.open(file, statSync(file));
  assert.deepEqual(await readAll(r, 1456), content);
  r.close();
  assert.equal(c.stats().diskReads, 41);
  assert.equal(c.stats().inlineReads, 41, 'every chunk read on the loop, none through the thread pool');

  // Not in memory (EAGAIN) every other chunk, and half a chunk at a time otherwise: the thread pool reads the rest.
  const c2 = new BlockCache({ chunkSize: CHUNK, budgetBytes: CHUNK * 100 });
  let calls = 0;
  c2.readNow = (fd, buf, off, len, pos) => (++calls % 2 === 0 ? -11 : addon.preadNowait(fd, buf, off, Math.ceil(len / 2), pos));
  const r2 = c2.open(file, statSync(file));
  assert.deepEqual(await readAll(r2, 1456), content);
  r2.close();
  assert.ok(calls > 30);
  assert.equal(c2.stats().inlineReads, 0, 'a short read is not counted as inline');
  assert.notEqual(c2.readNow, null, 'EAGAIN keeps the inline path for the next chunk');

  // A kernel that cannot (EOPNOTSUPP): the inline path is dropped for good, the file still arrives.
  const c3 = new BlockCache({ chunkSize: CHUNK, budgetBytes: CHUNK * 100 });
  c3.readNow = () => -95;
  const r3 = c3.open(file, statSync(file));
  assert.deepEqual(await readAll(r3, 1456), content);
  r3.close();
  assert.equal(c3.readNow, null);
});
