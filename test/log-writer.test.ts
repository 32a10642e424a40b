import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { constants, openSync, readFileSync, closeSync } from 'node:fs';
import { pbkdf2 } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { pino } from 'pino';
import { tempDir, NODE, ROOT } from './helpers.ts';
import { LineWriter } from '../server/log-writer.ts';
import { createLogger } from '../server/log.ts';

const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean);

test('log lines are batched, kept in order, and all written by flush(cb)', async (t) => {
  const { dir, cleanup } = tempDir('sbt-log-');
  t.after(cleanup);
  const file = join(dir, 'a.log');
  const w = LineWriter.toFile(file, { flushBytes: 4096, flushMs: 10_000 });
  const log = pino({ level: 'info', base: { pid: 1 } }, w);
  for (let i = 0; i < 5000; i++) log.info({ i, s: 'é"\n' }, `line ${i}`);
  await new Promise<void>((r, j) => log.flush((e) => (e ? j(e) : r())));
  const got = lines(file).map((l) => JSON.parse(l));
  assert.equal(got.length, 5000);
  assert.deepEqual(got.map((g) => g.i), [...Array(5000).keys()], 'in order, none lost or repeated');
  assert.equal(got[42].s, 'é"\n', 'multi-byte and escaped strings survive');
  // A line after a quiet spell goes out at once; one right behind it waits up to flushMs, then goes
  // out by itself even with nothing after it.
  const w2 = LineWriter.toFile(join(dir, 'b.log'), { flushMs: 300 });
  w2.write('{"one":1}\n');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(readFileSync(join(dir, 'b.log'), 'utf8'), '{"one":1}\n', 'the first line is not held back');
  w2.write('{"two":2}\n');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(readFileSync(join(dir, 'b.log'), 'utf8'), '{"one":1}\n', 'a line right behind it waits for the batch');
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(readFileSync(join(dir, 'b.log'), 'utf8'), '{"one":1}\n{"two":2}\n');
  w.end();
  w2.end();
});

test('a log consumer that stops reading costs bounded memory: lines past the cap are dropped and counted', async (t) => {
  // A FIFO nobody reads, opened read-write and non-blocking (the daemon's stdout to a stalled reader):
  // 64 KiB of kernel buffer, then every write gets EAGAIN. A socketpair's capacity would depend on
  // how the writes happen to be sized (its buffer counts per-packet overhead), a FIFO's does not.
  const { dir, cleanup } = tempDir('sbt-log2-');
  t.after(cleanup);
  const fifo = join(dir, 'stalled');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
  const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
  const w = new LineWriter(fd, { flushBytes: 1024, flushMs: 5, maxBufferedBytes: 256 * 1024 });
  try {
    const line = `${JSON.stringify({ msg: 'x'.repeat(200) })}\n`;
    // A busy thread pool (a loaded machine): the first write's callback lands late, after drops
    // began. Every drop still counts, and what waits stays under the cap.
    const busy = Array.from({ length: 4 }, () => new Promise((r) => pbkdf2('x', 'y', 200_000, 32, 'sha256', r)));
    for (let i = 0; i < 20_000; i++) {
      w.write(line);
      if (i % 500 === 0) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(busy);
    for (let i = 0; i < 50; i++) await new Promise((r) => setTimeout(r, 2));
    // Kept at most: the FIFO's 64 KiB and the 256 KiB cap (the buffer in flight included), about
    // 1,500 lines of 214 bytes, however the thread pool's write callbacks interleave with the loop.
    assert.ok(w.droppedLines > 15_000, `dropped ${w.droppedLines}`);
    assert.ok(w.droppedLines < 20_000, 'what fit was kept');
  } finally {
    w.end();
  }
});

test('a daemon logger writes every line before the process exits, and a closed stdout never crashes it', (t) => {
  const { dir, cleanup } = tempDir('sbt-log3-');
  t.after(cleanup);
  const file = join(dir, 'exit.log');
  const script = `import { createLogger } from ${JSON.stringify(join(ROOT, 'server/log.ts'))};
const log = createLogger({ level: 'info', file: ${JSON.stringify(file)} });
for (let i = 0; i < 3000; i++) log.info({ i }, 'before exit');
process.exit(3);`;
  const r = spawnSync(NODE, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 3, r.stderr);
  assert.equal(lines(file).length, 3000, 'nothing buffered was lost at exit');

  // stdout closed under the daemon (journald restarted, `| head`): EPIPE, and the daemon lives on.
  const out = join(dir, 'pipe.txt');
  const fdOut = openSync(out, 'w');
  const script2 = `import { createLogger } from ${JSON.stringify(join(ROOT, 'server/log.ts'))};
const log = createLogger({ level: 'info', pretty: false });
let n = 0;
const t = setInterval(() => { for (let i = 0; i < 200; i++) log.info({ n: n++ }, 'tick'); }, 5);
setTimeout(() => { clearInterval(t); process.stderr.write('alive ' + n + '\\n'); process.exit(0); }, 600);`;
  const r2 = spawnSync('bash', ['-c', `"${NODE}" --input-type=module -e '${script2.replace(/'/g, "'\\''")}' | head -c 100 > /dev/null`], { encoding: 'utf8', stdio: ['ignore', fdOut, 'pipe'] });
  closeSync(fdOut);
  assert.match(r2.stderr, /alive \d+/, r2.stderr);
  assert.doesNotMatch(r2.stderr, /EPIPE|Error/);
  assert.ok(createLogger, 'module loads');
});
