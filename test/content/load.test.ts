/** 20 concurrent curl downloads of a 1 GiB file, each hashed by openssl: all must be correct. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { makeFile, run, serve, tempDir, type Served } from './helpers.ts';

const t = tempDir('sb-load-');
const SIZE = 1 << 30;
let sha: string;
let s: Served;

before(async () => {
  sha = makeFile(join(t.dir, 'big.bin'), SIZE);
  s = await serve([{ id: 'big', kind: 'file', path: join(t.dir, 'big.bin') }]);
});
after(async () => {
  await s.close();
  t.cleanup();
});

test('20 concurrent 1 GiB downloads are all hash-correct, with bounded buffers', { timeout: 240_000 }, async () => {
  const url = `${s.base}/content/big/big.bin`;
  let maxHeld = 0;
  const held = setInterval(() => {
    const v = Number(/swarmboot_content_buffer_bytes\{state="held"\} (\d+)/.exec(s.metrics.render())?.[1]);
    maxHeld = Math.max(maxHeld, v);
  }, 50);
  const started = performance.now();
  try {
    const results = await Promise.all(
      Array.from({ length: 20 }, () => run('bash', ['-o', 'pipefail', '-c', `curl -sf '${url}' | openssl dgst -sha256 -r`], { timeoutMs: 230_000 })),
    );
    for (const [i, r] of results.entries()) {
      assert.equal(r.code, 0, `download ${i}: ${r.stderr}`);
      assert.equal(r.stdout.split(' ')[0], sha, `download ${i}`);
    }
  } finally {
    clearInterval(held);
  }
  const secs = (performance.now() - started) / 1000;
  const rate = (20 * SIZE) / secs / 1e6;
  // Two buffers per transfer at most (one being written, one read ahead), plus the 16 MiB window
  // of idle chunks kept for clients a little behind, plus up to 4 spare buffers.
  assert.ok(maxHeld <= (20 * 2 + 16 + 4) << 20, `buffers held peaked at ${maxHeld}`);
  assert.match(s.metrics.render(), /swarmboot_content_transfers_total\{route="content",outcome="complete"\} 20/);
  const txt = s.metrics.render();
  const read = Number(/swarmboot_content_read_bytes_total (\d+)/.exec(txt)?.[1]);
  const sent = Number(/swarmboot_content_bytes_sent_total\{route="content",package="big"\} (\d+)/.exec(txt)?.[1]);
  assert.equal(sent, 20 * SIZE);
  console.log(
    `# 20 x 1 GiB in ${secs.toFixed(1)} s (${rate.toFixed(0)} MB/s aggregate, buffers peak ${(maxHeld / 2 ** 20).toFixed(0)} MiB, ` +
      `read ${(read / sent).toFixed(3)} of the bytes sent: clients shared chunks)`,
  );
});
