import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChunkCache } from '../../server/http/content-chunks.ts';
import { tempDir } from './helpers.ts';

test('chunk cache: one read per chunk for concurrent readers, LRU window, short reads not cached', async () => {
  const t = tempDir('sb-chunks-');
  const path = join(t.dir, 'f.bin');
  const C = 64 << 10;
  const data = Buffer.alloc(10 * C + 100);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  writeFileSync(path, data);
  const fd = openSync(path, 'r');
  let reads = 0;
  const cache = new ChunkCache(C, 3 * C, () => reads++);
  try {
    const key = 'k1';
    const [a, b] = await Promise.all([cache.acquire(key, fd, data.length, 0), cache.acquire(key, fd, data.length, 0)]);
    assert.equal(reads, 1, 'two readers, one read');
    assert.ok(!(a instanceof Error) && !(b instanceof Error));
    assert.equal(a, b);
    assert.ok(a.buf.subarray(0, a.n).equals(data.subarray(0, C)));
    assert.equal(cache.busyChunks(), 1);
    cache.release(key, 0);
    cache.release(key, 0);
    assert.equal(cache.busyChunks(), 0);
    // Still cached: a late reader costs nothing.
    await cache.acquire(key, fd, data.length, 0);
    cache.release(key, 0);
    assert.equal(reads, 1);
    const last = await cache.acquire(key, fd, data.length, 10);
    assert.ok(!(last instanceof Error));
    assert.equal(last.n, 100);
    cache.release(key, 10);
    // Fill past the 3-chunk window: chunk 0 (least recently used) is evicted and read again.
    for (const i of [1, 2, 3]) {
      await cache.acquire(key, fd, data.length, i);
      cache.release(key, i);
    }
    assert.ok(cache.heldBytes() <= (3 + 4) * C, `held ${cache.heldBytes()}`);
    const before = reads;
    await cache.acquire(key, fd, data.length, 0);
    cache.release(key, 0);
    assert.equal(reads, before + 1);
    // Another file version (new key) never sees these chunks; a file that shrank gives an error.
    const w = openSync(path, 'r+');
    ftruncateSync(w, C);
    closeSync(w);
    const short = await cache.acquire('k2', fd, data.length, 5);
    assert.ok(short instanceof Error && /short read/.test(short.message));
    assert.equal(cache.busyChunks(), 0);
  } finally {
    closeSync(fd);
    t.cleanup();
  }
});
