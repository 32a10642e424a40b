/**
 * When the server resends and when it gives up, measured from the client's side: the adaptive timer (a lost DATA
 * on loopback comes back after tens of milliseconds once round trips are measured, not after the initial
 * timeout; consecutive timeouts back off, past the adaptive ceiling, and the client's next ACK brings the timer
 * back down), the give-up time, a client that speaks only after its own long timer, and the duplicate-ACK
 * resend, which must not wait for any timer at all.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { TftpOptions, TftpServer } from '../../server/tftp/server.ts';
import { decode, encodeAck, encodeRequest, OP_DATA, OP_ERROR, OP_OACK, OP_RRQ } from '../../server/tftp/codec.ts';
import { tftpGet } from './client.ts';
import { withTftp } from './harness.ts';

let dir = '';
let data: Buffer;

before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sbtftp-resend-'));
  data = randomBytes(512 * 400 + 100);
  writeFileSync(path.join(dir, 'f.bin'), data);
});

after(() => rmSync(dir, { recursive: true, force: true }));

const withServer = (extra: Partial<TftpOptions>, fn: (s: TftpServer, port: number) => Promise<void>): Promise<void> => withTftp(dir, extra, fn);

/**
 * A lock-step download (512-byte blocks, no options) whose client never resends an ACK on its own, so only the
 * server's timer can recover a lost DATA. `lose(block, copy)` says whether to lose the copy-th arrival of a block.
 * Returns the arrival times (ms) of every copy of each block that was lost at least once.
 */
async function lockstep(port: number, lose: (block: number, copy: number) => boolean): Promise<Map<number, number[]>> {
  const copies = new Map<number, number[]>();
  const lost = new Set<number>();
  const r = await tftpGet({
    port,
    file: 'f.bin',
    timeoutMs: 10_000,
    retries: 1,
    dropData: (_n, block) => {
      const at = performance.now();
      const list = copies.get(block) ?? [];
      list.push(at);
      copies.set(block, list);
      const drop = lose(block, list.length - 1);
      if (drop) lost.add(block);
      return drop;
    },
  });
  assert.deepEqual(r.data, data);
  return new Map([...copies].filter(([b]) => lost.has(b)));
}

const gaps = (times: number[]): number[] => times.slice(1).map((t, i) => t - times[i]!);
const show = (xs: number[]): string => xs.map((x) => x.toFixed(0)).join(', ');

test('a lost DATA is resent after the measured round trip (tens of ms), not after the 1 s initial timeout', async (t) => {
  // Defaults: 1000 ms before any round trip is measured (and as the ceiling), 20 ms floor.
  await withServer({}, async (_s, port) => {
    // Block 1 goes out before any round trip is known: its resend waits for the initial timeout. Block 200 is
    // lost after 199 measured round trips of well under a millisecond: its resend comes at the 20 ms floor.
    const times = await lockstep(port, (block, copy) => (block === 1 || block === 200) && copy === 0);
    const first = gaps(times.get(1)!)[0]!;
    const later = gaps(times.get(200)!)[0]!;
    t.diagnostic(`resend after ${first.toFixed(0)} ms before any round trip, ${later.toFixed(0)} ms after 199 of them`);
    assert.ok(first >= 900 && first < 2000, `first resend after ${first} ms; the initial timeout is 1000 ms`);
    // A fixed timer would wait the same 1000 ms here.
    assert.ok(later < 300, `resend after ${later} ms: the timer did not adapt to the loopback round trip`);
    assert.ok(later >= 15, `resend after ${later} ms: below the 20 ms floor`);
  });
});

test('consecutive timeouts back off exponentially, past the adaptive ceiling; the client\'s next ACK brings the timer down', async (t) => {
  // Adaptive timer within 50–300 ms; backoff up to a quarter of giveUpMs, 600 ms.
  await withServer({ timeoutMs: 300, minTimeoutMs: 50, giveUpMs: 2400 }, async (_s, port) => {
    // Block 100: the first six copies are lost, so six timeouts in a row: 50, 100, 200, 400, then 600 (ceiling) twice.
    // Block 300, lost once much later: the timer must be back at its floor by then.
    const times = await lockstep(port, (block, copy) => (block === 100 && copy < 6) || (block === 300 && copy === 0));
    const g = gaps(times.get(100)!);
    const after = gaps(times.get(300)!)[0]!;
    t.diagnostic(`intervals between copies of block 100: ${show(g)} ms; block 300 resent after ${after.toFixed(0)} ms`);
    assert.equal(g.length, 6);
    assert.ok(g[0]! < 150, `first resend after ${g[0]} ms, expected about 50`);
    for (let i = 1; i < 4; i++) {
      assert.ok(g[i]! > g[i - 1]! * 1.4, `interval ${i} (${g[i]} ms) did not grow from ${g[i - 1]} ms: ${show(g)}`);
    }
    for (const i of [4, 5]) assert.ok(g[i]! >= 540 && g[i]! < 1000, `interval ${i} is ${g[i]} ms; the backoff ceiling is 600: ${show(g)}`);
    assert.ok(after < 200, `after recovery a lost block waited ${after} ms: the backed-off timer stuck`);
  });
});

test('a silent client is given up after giveUpMs, with resends spaced ever wider, and told so', async (t) => {
  await withServer({ timeoutMs: 100, minTimeoutMs: 10, giveUpMs: 1000 }, async (s, port) => {
    const { sock, got } = await rawClient();
    const at: number[] = [];
    let tid = -1;
    sock.on('message', (_m, rinfo) => {
      tid = rinfo.port;
      at.push(performance.now());
    });
    try {
      sock.send(encodeRequest(OP_RRQ, 'f.bin', 'octet'), port, '127.0.0.1');
      for (let b = 1; b <= 20; b++) {
        while (got.length < b) await new Promise((r) => setTimeout(r, 1));
        if (b < 20) sock.send(encodeAck(b), tid, '127.0.0.1');
      }
      // ACK 19 was the last word: from here on the server hears nothing. Under load the 10 ms timer may have
      // resent block 19 before ACK 19 arrived: such a spare copy is not one of block 20's.
      const first20 = got.findIndex((p) => p.block === 20);
      at.splice(19, first20 - 19);
      got.splice(19, first20 - 19);
      const silentFrom = at[19]!;
      const end = performance.now() + 3000;
      while (got.at(-1)?.op !== OP_ERROR && performance.now() < end) await new Promise((r) => setTimeout(r, 5));
      const copies = at.slice(19, -1);
      const gotError = got.at(-1)?.op === OP_ERROR;
      const errorAfter = at.at(-1)! - silentFrom;
      t.diagnostic(`${copies.length} copies of block 20, intervals ${show(gaps(copies))} ms; ERROR after ${errorAfter.toFixed(0)} ms`);
      assert.ok(gotError, 'no ERROR: the transfer was not given up');
      assert.ok(errorAfter >= 950 && errorAfter < 1500, `given up after ${errorAfter} ms, giveUpMs is 1000`);
      assert.ok(got.slice(19, -1).every((p) => p.block === 20));
      assert.ok(copies.length >= 4 && copies.length <= 12, `${copies.length} copies`);
      // Beyond the 100 ms adaptive ceiling: up to 250 ms (a quarter of giveUpMs).
      assert.ok(Math.max(...gaps(copies)) >= 200, `widest interval ${Math.max(...gaps(copies))} ms`);
    } finally {
      sock.close();
    }
    assert.equal(s.stats().transfers.timeout, 1);
    assert.equal(s.stats().activeTransfers, 0);
  });
});

test('an OACK nobody acknowledges (a tsize probe abandoned without ERROR 8) is given up after 5 initial timeouts', async () => {
  await withServer({ timeoutMs: 100, minTimeoutMs: 10, giveUpMs: 10_000 }, async (s, port) => {
    const { sock, got } = await rawClient();
    try {
      const t0 = performance.now();
      sock.send(encodeRequest(OP_RRQ, 'f.bin', 'octet', [['tsize', '0']]), port, '127.0.0.1');
      while (s.stats().activeTransfers + s.stats().pendingRequests > 0 || got.length === 0) {
        if (performance.now() - t0 > 3000) assert.fail(`still active after 3 s: ${JSON.stringify(s.stats().transfers)}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      const ms = performance.now() - t0;
      assert.ok(ms >= 450 && ms < 1000, `given up after ${ms} ms, expected 500`);
      assert.equal(got[0]!.op, OP_OACK);
      assert.ok(got.slice(1, -1).every((p) => p.op === OP_OACK), 'only OACKs before the ERROR');
      assert.equal(s.stats().transfers.timeout, 1);
    } finally {
      sock.close();
    }
  });
});

test('a client that repeats its ACK only after its own timer (atftp) survives losing both that ACK and its extra ACK', async (t) => {
  // The client's timer is 5× the server's timeout, as atftp's 5 s is to our default 1 s. While the server resends
  // faster than that, every copy restarts the client's timer and the client stays silent: only a resend interval
  // longer than the client's timer lets it speak.
  await withServer({ timeoutMs: 100, minTimeoutMs: 10, giveUpMs: 4000 }, async (s, port) => {
    let lostAcks = 0;
    const t0 = performance.now();
    const r = await tftpGet({
      port,
      file: 'f.bin',
      timeoutMs: 500,
      retries: 3,
      atftpStyle: true,
      dropAck: (_n, block) => block === 50 && lostAcks++ < 2,
    });
    const ms = performance.now() - t0;
    t.diagnostic(`transfer done in ${ms.toFixed(0)} ms after losing ACK 50 twice`);
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.deepEqual(r.data, data);
    assert.equal(r.acksDropped, 2);
    assert.equal(s.stats().transfers.timeout, undefined);
  });
});

/** A raw client socket that collects DATA packets by 16-bit block number. */
async function rawClient(): Promise<{ sock: dgram.Socket; got: Array<{ op: number; block: number }>; wait: (n: number, ms: number) => Promise<void> }> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const got: Array<{ op: number; block: number }> = [];
  sock.on('message', (m) => {
    const p = decode(m);
    if (p?.op === OP_DATA) got.push({ op: p.op, block: p.block });
    else if (p) got.push({ op: p.op, block: -1 });
  });
  const wait = async (n: number, ms: number): Promise<void> => {
    const end = performance.now() + ms;
    while (got.length < n && performance.now() < end) await new Promise((r) => setTimeout(r, 2));
  };
  return { sock, got, wait };
}

test('a duplicate ACK makes the server resend at once (no timer), once per window', async () => {
  // A 5 s timer: nothing in this test may come from it.
  await withServer({ timeoutMs: 5000, minTimeoutMs: 5000 }, async (s, port) => {
    const { sock, got, wait } = await rawClient();
    let tid = -1;
    sock.on('message', (_m, rinfo) => (tid = rinfo.port));
    try {
      // Lock-step: DATA 1, ACK 1 → DATA 2, then ACK 1 again (DATA 2 "lost") → DATA 2 again, right away.
      sock.send(encodeRequest(OP_RRQ, 'f.bin', 'octet'), port, '127.0.0.1');
      await wait(1, 1000);
      assert.deepEqual(got, [{ op: OP_DATA, block: 1 }]);
      sock.send(encodeAck(1), tid, '127.0.0.1');
      await wait(2, 1000);
      const t0 = performance.now();
      sock.send(encodeAck(1), tid, '127.0.0.1');
      await wait(3, 1000);
      const ms = performance.now() - t0;
      assert.deepEqual(got.map((p) => p.block), [1, 2, 2]);
      assert.ok(ms < 500, `resend took ${ms} ms`);
      // A second duplicate of the same ACK gets nothing more: one duplicate-driven resend per window.
      sock.send(encodeAck(1), tid, '127.0.0.1');
      await wait(4, 300);
      assert.equal(got.length, 3);
      // The transfer then goes on normally.
      sock.send(encodeAck(2), tid, '127.0.0.1');
      await wait(4, 1000);
      assert.equal(got[3]!.block, 3);
    } finally {
      sock.close();
    }
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(s.stats().activeTransfers, 1);
  });
});

test('windowed: a duplicate ACK of the last full window resends the whole next window at once', async () => {
  await withServer({ timeoutMs: 5000, minTimeoutMs: 5000 }, async (_s, port) => {
    const { sock, got, wait } = await rawClient();
    let tid = -1;
    sock.on('message', (_m, rinfo) => (tid = rinfo.port));
    try {
      sock.send(encodeRequest(OP_RRQ, 'f.bin', 'octet', [['blksize', '512'], ['windowsize', '4']]), port, '127.0.0.1');
      await wait(1, 1000);
      assert.equal(got[0]!.op, OP_OACK);
      sock.send(encodeAck(0), tid, '127.0.0.1');
      await wait(5, 1000);
      sock.send(encodeAck(4), tid, '127.0.0.1');
      await wait(9, 1000);
      assert.deepEqual(got.slice(1).map((p) => p.block), [1, 2, 3, 4, 5, 6, 7, 8]);
      // Window 5–8 "lost" entirely: the client repeats ACK 4.
      const t0 = performance.now();
      sock.send(encodeAck(4), tid, '127.0.0.1');
      await wait(13, 1000);
      const ms = performance.now() - t0;
      assert.deepEqual(got.slice(9).map((p) => p.block), [5, 6, 7, 8]);
      assert.ok(ms < 500, `resend took ${ms} ms`);
    } finally {
      sock.close();
    }
  });
});
