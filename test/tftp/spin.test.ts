/**
 * The spin (tftp.spinUs, native/udp_batch.c disp_spin): right before the event loop would sleep, it polls the
 * transfer sockets for a few dozen microseconds and answers the ACKs that come meanwhile. It must catch ACKs from a
 * real client, stay off when set to 0, back off when ACKs come further apart than its window, and never hold up
 * the rest of the loop (timers, other sockets). And the batched sends (ioUring, batch_queue): lock-step answers of
 * one loop iteration go out in one io_uring_enter, and one that fails is sent again.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TftpOptions, TftpServer, TftpStats } from '../../server/tftp/server.ts';
import { encodeAck, encodeRequest, OP_RRQ } from '../../server/tftp/codec.ts';
import { Registry } from '../../server/metrics.ts';
import { tftpGet } from './client.ts';
import { curlSha256, withTftp } from './harness.ts';

const haveCompiler = ['cc', 'gcc', 'clang'].some((c) => spawnSync(c, ['--version']).status === 0);
const haveCurl = spawnSync('curl', ['--version']).status === 0;
const skip = (!haveCompiler && 'no C compiler: no addon, no spin') || (!haveCurl && 'curl missing');

let root = '';
const big = randomBytes(20 * 1024 * 1024 + 5);
const small = randomBytes(300 * 512 + 7);

before(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'sbtftp-spin-'));
  writeFileSync(path.join(root, 'big.bin'), big);
  writeFileSync(path.join(root, 'small.bin'), small);
});

after(() => rmSync(root, { recursive: true, force: true }));

const withServer = (extra: Partial<TftpOptions>, fn: (s: TftpServer, port: number) => Promise<void>): Promise<void> => withTftp(root, extra, fn);
const curlSha = (port: number, file: string): Promise<string> => curlSha256(`tftp://127.0.0.1:${port}/${file}`);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const delta = (a: TftpStats['spin'], b: TftpStats['spin']): TftpStats['spin'] => ({
  us: b.us,
  spins: b.spins - a.spins,
  misses: b.misses - a.misses,
  caught: b.caught - a.caught,
  ms: b.ms - a.ms,
});

test('curl in lock-step: the spin answers ACKs, the file arrives intact, and timers and other sockets keep their pace', { skip }, async () => {
  const metrics = new Registry();
  await withServer({ spinUs: 50, metrics }, async (s, port) => {
    // Meanwhile: a 1 ms timer and a UDP echo on this same loop, pinged every millisecond from another process'
    // worth of distance (its own socket). Neither may wait long while the spin runs.
    let lateMax = 0;
    let at = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      lateMax = Math.max(lateMax, now - at - 1);
      at = now;
    }, 1);
    const echo = dgram.createSocket('udp4');
    await new Promise<void>((r) => echo.bind(0, '127.0.0.1', r));
    echo.on('message', (m, rinfo) => echo.send(m, rinfo.port, rinfo.address));
    const pinger = dgram.createSocket('udp4');
    await new Promise<void>((r) => pinger.bind(0, '127.0.0.1', r));
    let rttMax = 0;
    let pings = 0;
    pinger.on('message', (m) => {
      rttMax = Math.max(rttMax, performance.now() - m.readDoubleLE(0));
      pings++;
    });
    const ping = setInterval(() => {
      const b = Buffer.alloc(8);
      b.writeDoubleLE(performance.now(), 0);
      pinger.send(b, echo.address().port, '127.0.0.1');
    }, 1);
    const before = s.stats().spin;
    try {
      assert.equal(await curlSha(port, 'big.bin'), sha(big));
    } finally {
      clearInterval(timer);
      clearInterval(ping);
    }
    await new Promise((r) => setTimeout(r, 20));
    echo.close();
    pinger.close();
    const d = delta(before, s.stats().spin);
    const acks = Math.floor(big.length / 1456) + 1;
    console.log(`spin: ${JSON.stringify(d)} over ${acks} ACKs; timer late by ${lateMax.toFixed(1)} ms at most, echo round trip ${rttMax.toFixed(1)} ms at most (${pings} pings)`);
    assert.equal(d.us, 50);
    assert.ok(d.spins > 0 && d.caught > 0, `the spin caught nothing: ${JSON.stringify(d)}`);
    assert.ok(d.caught <= acks, `caught ${d.caught} datagrams, more than the ${acks} ACKs sent`);
    assert.ok(pings > 10, `only ${pings} pings came back`);
    // A spin that ignored the loop would hold it for the whole transfer (about a second here).
    assert.ok(lateMax < 100, `a 1 ms timer ran ${lateMax.toFixed(1)} ms late`);
    assert.ok(rttMax < 100, `an echo on the same loop took ${rttMax.toFixed(1)} ms`);
    assert.equal(s.stats().retransmits, 0);
    // The time spent spinning is in the metrics too (what the spin costs, for an admin to see).
    const seconds = Number(/^swarmboot_tftp_spin_seconds(?:\{\})? (\S+)$/m.exec(metrics.render())?.[1]);
    assert.ok(seconds > 0 && seconds === s.stats().spin.ms / 1000, `swarmboot_tftp_spin_seconds ${seconds}, stats ${JSON.stringify(s.stats().spin)}`);
  });
});

test('spinUs: 0 never spins', { skip }, async () => {
  await withServer({ spinUs: 0 }, async (s, port) => {
    const before = s.stats().spin;
    assert.equal(await curlSha(port, 'big.bin'), sha(big));
    const d = delta(before, s.stats().spin);
    assert.deepEqual({ us: d.us, spins: d.spins, caught: d.caught }, { us: 0, spins: 0, caught: 0 });
  });
});

test('a client slower than the spin window: spins that catch nothing make the next ones sit out', { skip: !haveCompiler && 'no C compiler' }, async () => {
  await withServer({ spinUs: 50 }, async (s, port) => {
    // Lock-step at 512-byte blocks, each ACK 2 ms after its DATA: every spin would miss.
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
    const before = s.stats().spin;
    const got: Buffer[] = [];
    let acks = 0;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`stalled after ${got.length} blocks`)), 20_000);
      sock.on('message', (m, rinfo) => {
        if (m.readUInt16BE(0) !== 3) return reject(new Error(`opcode ${m.readUInt16BE(0)}: ${m.subarray(4).toString()}`));
        const block = m.readUInt16BE(2);
        if (block !== got.length + 1) return;
        got.push(Buffer.from(m.subarray(4)));
        setTimeout(() => {
          sock.send(encodeAck(block), rinfo.port, rinfo.address);
          acks++;
          if (m.length < 516) {
            clearTimeout(t);
            resolve();
          }
        }, 2);
      });
      sock.send(encodeRequest(OP_RRQ, 'small.bin', 'octet', []), port, '127.0.0.1');
    });
    sock.close();
    assert.ok(Buffer.concat(got).equals(small));
    const d = delta(before, s.stats().spin);
    console.log(`slow client: ${JSON.stringify(d)} over ${acks} ACKs`);
    // Without the back-off each ACK would start a spin (about 300); with it: 1, 2, 4 … 256 iterations sat out.
    assert.ok(d.spins <= 30, `${d.spins} spins for ${acks} ACKs 2 ms apart`);
    assert.equal(d.caught, 0, JSON.stringify(d));
    assert.equal(d.misses, d.spins);
  });
});

test('parallel lock-step answers go out in batches through io_uring; ioUring: false sends each at once', { skip: !haveCompiler && 'no C compiler' }, async () => {
  for (const ioUring of [true, false]) {
    await withServer({ ioUring }, async (s, port) => {
      const before = s.stats().sendBatch;
      // Eight clients on this same loop: one loop iteration brings several of their ACKs.
      const got = await Promise.all(Array.from({ length: 8 }, () => tftpGet({ port, file: 'small.bin' })));
      for (const g of got) assert.ok(g.data.equals(small));
      const after = s.stats().sendBatch;
      const sends = after.sends - before.sends;
      const calls = after.calls - before.calls;
      console.log(`ioUring ${ioUring}: ${JSON.stringify(after)}`);
      if (!ioUring) {
        assert.equal(after.path, 'direct');
        assert.equal(sends, 0);
      } else if (after.path === 'direct') {
        console.log('io_uring refused here (kernel or seccomp): answers went out one by one');
      } else {
        assert.ok(sends > 1000, `only ${sends} answers batched`);
        assert.ok(calls < sends, `${calls} io_uring_enter calls for ${sends} sends: nothing batched`);
        assert.equal(after.failed - before.failed, 0);
      }
      assert.equal(s.stats().retransmits, 0);
    });
  }
});

test('a batched send that fails is handed to JavaScript and sent again: curl still gets the file intact', { skip }, async () => {
  const { spawn } = await import('node:child_process');
  const srv = spawn(process.execPath, [path.join(import.meta.dirname, 'serve.ts'), root, '127.0.0.1', '0'], {
    env: { ...process.env, SWARMBOOT_TEST_BATCH_FAIL_EVERY: '50' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  srv.stdout.on('data', (d: Buffer) => (out += d.toString()));
  try {
    const t0 = Date.now();
    while (!/READY (\d+)/.test(out) && Date.now() - t0 < 15_000) await new Promise((r) => setTimeout(r, 20));
    const port = Number(/READY (\d+)/.exec(out)?.[1]);
    assert.ok(port > 0, `server did not start: ${out}`);
    assert.equal(await curlSha(port, 'big.bin'), sha(big));
  } finally {
    const exited = new Promise((r) => srv.once('exit', r));
    srv.kill('SIGTERM');
    await exited;
  }
  const stats = JSON.parse(/STATS (.*)/.exec(out)?.[1] ?? '{}') as TftpStats;
  console.log(`failing sends: ${JSON.stringify(stats.sendBatch)}, ${stats.retransmits} DATA resent`);
  if (stats.sendBatch.path === 'direct') return; // io_uring refused here: nothing was batched, nothing failed
  assert.ok(stats.sendBatch.failed > 10, JSON.stringify(stats.sendBatch));
  assert.equal(stats.transfers.ok, 1);
});
