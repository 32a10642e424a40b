/**
 * The batched DATA send (server/tftp/batch-send.ts, native/udp_batch.c): a window in one GSO or sendmmsg syscall
 * must put exactly the datagrams on the wire that one dgram send per block did, and fall back cleanly.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TftpOptions, TftpServer } from '../../server/tftp/server.ts';
import { loadBatchSend, PeerSender } from '../../server/tftp/batch-send.ts';
import { tftpGet } from './client.ts';
import { curlSha256, withTftp } from './harness.ts';

let root = '';
const files: Record<string, Buffer> = {};
const haveCompiler = ['cc', 'gcc', 'clang'].some((c) => spawnSync(c, ['--version']).status === 0);

before(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'sbtftp-batch-'));
  // Sizes around the block and window edges at blksize 1456: empty, one short block, one full block (then an
  // empty one), exactly a 64-block window, one byte more, and several windows that wrap the ring of slots.
  for (const size of [0, 1000, 1456, 1456 * 64, 1456 * 64 + 1, 3 * 1024 * 1024 + 17]) {
    files[`f${size}.bin`] = randomBytes(size);
    writeFileSync(path.join(root, `f${size}.bin`), files[`f${size}.bin`]!);
  }
});

after(() => rmSync(root, { recursive: true, force: true }));

const withServer = (extra: Partial<TftpOptions>, fn: (s: TftpServer, port: number) => Promise<void>): Promise<void> => withTftp(root, extra, fn);

test('the addon is built and used where a C compiler exists; batchSend: false keeps dgram', { skip: !haveCompiler && 'no C compiler' }, async () => {
  const b = await loadBatchSend();
  assert.notEqual(b.path, 'dgram', b.detail);
  await withServer({}, async (s) => assert.equal(s.stats().sendPath, b.path));
  await withServer({ batchSend: false }, async (s) => assert.equal(s.stats().sendPath, 'dgram'));
});

for (const batchSend of [true, false]) {
  test(`${batchSend ? 'batched' : 'per-datagram'} sends: every file byte-identical, one DATA per block, at windowsize 1, 16 and 64`, async () => {
    await withServer({ batchSend }, async (s, port) => {
      for (const ws of [1, 16, 64]) {
        for (const [name, data] of Object.entries(files)) {
          const r = await tftpGet({ port, file: name, options: [['blksize', '1456'], ['windowsize', String(ws)]] });
          assert.deepEqual(r.data, data, `${name} ws${ws}`);
          assert.equal(r.packets, Math.floor(data.length / 1456) + 1, `${name} ws${ws}: no duplicates on a clean loopback`);
        }
      }
      assert.equal(s.stats().retransmits, 0);
    });
  });
}

test('batched: blocks of 65464 bytes (one datagram per send: a GSO send holds 64 KiB) still arrive', async () => {
  await withServer({ maxBlksize: 65464 }, async (_s, port) => {
    const name = `f${3 * 1024 * 1024 + 17}.bin`;
    // Window 2: the test client's default receive buffer holds no more 64 KiB datagrams than that.
    const r = await tftpGet({ port, file: name, options: [['blksize', '65464'], ['windowsize', '2']] });
    assert.deepEqual(r.data, files[name]);
  });
});

test('batched: lost DATA inside a window is resent and the file arrives intact', async () => {
  await withServer({ timeoutMs: 200, minTimeoutMs: 10 }, async (s, port) => {
    const name = `f${3 * 1024 * 1024 + 17}.bin`;
    const r = await tftpGet({ port, file: name, options: [['blksize', '1456'], ['windowsize', '64']], dropData: (n) => n % 97 === 5 });
    assert.deepEqual(r.data, files[name]);
    assert.ok(r.packets > Math.floor(files[name]!.length / 1456) + 1, 'the blocks after each loss came again');
    for (let i = 0; i < 100 && s.stats().activeTransfers > 0; i++) await new Promise((res) => setTimeout(res, 10));
    assert.ok(s.stats().retransmits > 0);
  });
});

test('native receive: ACKs through the addon, and a window the send buffer cut short resumes when it has room', { skip: !haveCompiler && 'no C compiler' }, async () => {
  const b = await loadBatchSend();
  const forPeer = b.forPeer;
  let cut = 0;
  let firstRefused = 0;
  let native = 0;
  // Every third window, only its first half fits (as with EAGAIN from a full send buffer), and every fourth window's
  // first block (sent on its own, ahead of the rest) does not fit at all: the rest must follow once the socket
  // reports room, with no block sent twice and none skipped.
  b.forPeer = (...args) => {
    const p = forPeer(...args);
    if (!p) return p;
    const send = p.send.bind(p);
    let calls = 0;
    let singles = 0;
    p.send = (ring, off, len, seg) => {
      if (len === seg && ++singles % 4 === 0) {
        firstRefused++;
        return 0;
      }
      if (++calls % 3 === 0 && len >= 2 * seg) {
        cut++;
        return send(ring, off, Math.floor(len / seg / 2) * seg, seg);
      }
      return send(ring, off, len, seg);
    };
    // The windows must go out from JavaScript for the cuts above to apply: no autopilot (it sends from the addon).
    p.autopilot = () => false;
    const receive = p.receive.bind(p);
    p.receive = (...r) => {
      const ok = receive(...r);
      if (ok) native++;
      return ok;
    };
    return p;
  };
  try {
    await withServer({}, async (s, port) => {
      const name = `f${3 * 1024 * 1024 + 17}.bin`;
      const r = await tftpGet({ port, file: name, options: [['blksize', '1456'], ['windowsize', '16']] });
      assert.deepEqual(r.data, files[name]);
      assert.equal(r.packets, Math.floor(files[name]!.length / 1456) + 1, 'each block exactly once');
      for (let i = 0; i < 100 && s.stats().activeTransfers > 0; i++) await new Promise((res) => setTimeout(res, 10));
      assert.equal(s.stats().transfers.ok, 1);
    });
    assert.equal(native, 1, 'the transfer received through the addon');
    assert.ok(cut > 10, `${cut} windows cut short`);
    assert.ok(firstRefused > 10, `${firstRefused} first blocks refused`);
  } finally {
    b.forPeer = forPeer;
  }
});

test('the addon answers the ACKs that close a clean window itself; the counts and the end stay JavaScript\'s', { skip: !haveCompiler && 'no C compiler' }, async () => {
  const name = `f${3 * 1024 * 1024 + 17}.bin`;
  const data = files[name]!;
  const blocks = Math.floor(data.length / 1456) + 1;
  const settle = async (s: TftpServer): Promise<void> => {
    for (let i = 0; i < 200 && s.stats().activeTransfers > 0; i++) await new Promise((res) => setTimeout(res, 10));
  };
  await withServer({}, async (s, port) => {
    for (const ws of [1, 16]) {
      const before = s.stats().received;
      const r = await tftpGet({ port, file: name, options: [['blksize', '1456'], ['windowsize', String(ws)]] });
      assert.deepEqual(r.data, data, `ws${ws}`);
      assert.equal(r.packets, blocks, `ws${ws}: one DATA per block`);
      await settle(s);
      const after = s.stats().received;
      const acks = after.transfer - before.transfer;
      const inAddon = after.answeredInAddon - before.answeredInAddon;
      assert.equal(acks, r.acksSent, `ws${ws}: every ACK counted once, wherever it was answered`);
      // ACK 0 (to the OACK) and each refill of the ring go through JavaScript, and so does the last ACK.
      // At windowsize 16 the ring holds 7 windows past the one in flight: JavaScript refills it every 8th ACK or so.
      assert.ok(inAddon >= 0.8 * acks, `ws${ws}: ${inAddon} of ${acks} ACKs answered in the addon`);
      assert.ok(inAddon < acks, `ws${ws}: the last ACK, which ends the transfer, is JavaScript's`);
    }
    assert.equal(s.stats().transfers.ok, 2);
    assert.equal(s.stats().retransmits, 0);
    assert.equal(s.stats().bytes, 2 * data.length, 'acknowledged bytes of both transfers, those the addon saw included');
  });
  // Without the native path, nothing is answered there.
  await withServer({ batchSend: false }, async (s, port) => {
    const r = await tftpGet({ port, file: name, options: [['blksize', '1456'], ['windowsize', '16']] });
    assert.deepEqual(r.data, data);
    await settle(s);
    assert.equal(s.stats().received.answeredInAddon, 0);
  });
});

test('ACKs the addon answered still count as progress: a client that stops after them is timed out on time', { skip: !haveCompiler && 'no C compiler' }, async () => {
  await withServer({ timeoutMs: 100, minTimeoutMs: 10, giveUpMs: 600 }, async (s, port) => {
    const name = `f${3 * 1024 * 1024 + 17}.bin`;
    // The client acknowledges 1,000 blocks in lock-step (most of them answered in the addon), then goes silent.
    const r = await tftpGet({ port, file: name, options: [['blksize', '1456']], dropAck: (_n, block) => block > 1000, timeoutMs: 2000, retries: 0 }).catch((e: Error) => e);
    assert.ok(r instanceof Error || r.data.length < files[name]!.length, 'the client did not get the file');
    const t0 = Date.now();
    while (s.stats().activeTransfers > 0 && Date.now() - t0 < 5000) await new Promise((res) => setTimeout(res, 10));
    assert.equal(s.stats().activeTransfers, 0, 'given up');
    assert.equal(s.stats().transfers.timeout, 1);
    assert.ok(s.stats().received.answeredInAddon > 500, `${s.stats().received.answeredInAddon} answered in the addon`);
    assert.equal(s.stats().bytes, 1000 * 1456, 'progress up to the last ACK');
  });
});

interface FakeCall {
  how: 'gso' | 'mmsg';
  len: number;
}

function fakeAddon(gsoResult: (len: number) => number, calls: FakeCall[]) {
  return {
    sockaddr: () => Buffer.alloc(16),
    sendGso: (_fd: number, _sa: Buffer, _ring: Buffer, _off: number, len: number) => {
      calls.push({ how: 'gso', len });
      return gsoResult(len);
    },
    sendMmsg: (_fd: number, _sa: Buffer, _ring: Buffer, _off: number, len: number) => {
      calls.push({ how: 'mmsg', len });
      return len;
    },
    sendTo: () => -22,
    recvDispatch: () => {},
    recvStart: () => ({}),
    recvStop: () => {},
    recvWantWritable: () => {},
    recvAutopilot: () => 0,
    preadNowait: () => -95,
    recvSpin: () => {},
    spinStats: (): [number, number, number, number] => [0, 0, 0, 0],
    sendBatching: (): [number, number, number, number] => [0, 0, 0, -1],
    batchStats: (): [number, number, number, number] => [0, 0, 0, -1],
  };
}

test('a route that refuses GSO (EIO) moves that peer to sendmmsg for good; EAGAIN does not', () => {
  const handle = { fd: 3, getSendQueueCount: () => 0 };
  const calls: FakeCall[] = [];
  const refused = new PeerSender(fakeAddon(() => -5, calls), { handle }, Buffer.alloc(16), true);
  assert.equal(refused.send(Buffer.alloc(100), 0, 100, 10), 100);
  assert.equal(refused.send(Buffer.alloc(100), 0, 100, 10), 100);
  assert.deepEqual(calls.map((c) => c.how), ['gso', 'mmsg', 'mmsg']);

  calls.length = 0;
  const busy = new PeerSender(fakeAddon(() => -11, calls), { handle }, Buffer.alloc(16), true);
  assert.equal(busy.send(Buffer.alloc(100), 0, 100, 10), 0, 'EAGAIN: the caller queues the window on dgram');
  assert.equal(busy.send(Buffer.alloc(100), 0, 100, 10), 0);
  assert.deepEqual(calls.map((c) => c.how), ['gso', 'gso']);
});

test('nothing is sent past datagrams dgram still has queued, nor on a closed socket', () => {
  const calls: FakeCall[] = [];
  const state: { handle: { fd: number; getSendQueueCount(): number } | null } = { handle: { fd: 3, getSendQueueCount: () => 2 } };
  const p = new PeerSender(fakeAddon((len) => len, calls), state, Buffer.alloc(16), true);
  assert.equal(p.send(Buffer.alloc(100), 0, 100, 10), 0);
  state.handle = null;
  assert.equal(p.send(Buffer.alloc(100), 0, 100, 10), 0);
  assert.equal(calls.length, 0);
});

for (const gso of [true, false]) {
  test(`the real addon on a real socket (${gso ? 'GSO' : 'sendmmsg'}): a ring that wraps is sent as whole datagrams, in order`, { skip: !haveCompiler && 'no C compiler' }, async () => {
    const b = await loadBatchSend();
    const rx = dgram.createSocket('udp4');
    const tx = dgram.createSocket('udp4');
    await new Promise<void>((r) => rx.bind(0, '127.0.0.1', r));
    await new Promise<void>((r) => tx.bind(0, '127.0.0.1', r));
    try {
      const got: Buffer[] = [];
      const all = new Promise<void>((resolve) =>
        rx.on('message', (m) => {
          got.push(m);
          if (got.length === 4) resolve();
        }),
      );
      const p = b.forPeer(tx, '127.0.0.1', rx.address().port, gso)!;
      assert.ok(p);
      // A ring of 4 slots of 6 bytes; send slots 2, 3, 0 and a short (3-byte) slot 1.
      const ring = Buffer.from('AAAAAABBBBBBCCCCCCDDDDDD');
      assert.equal(p.send(ring, 12, 21, 6), 21);
      await all;
      assert.deepEqual(got.map((m) => m.toString()), ['CCCCCC', 'DDDDDD', 'AAAAAA', 'BBB']);
    } finally {
      rx.close();
      tx.close();
    }
  });
}

test('IPv6: the addon answers a real client (curl) over ::1 too, and the file arrives intact', { skip: !haveCompiler && 'no C compiler' }, async () => {
  const { createHash } = await import('node:crypto');
  const name = `f${3 * 1024 * 1024 + 17}.bin`;
  await withTftp(root, { host: '::1' }, async (s, port) => {
    const sha = await curlSha256(`tftp://[::1]:${port}/${name}`);
    assert.equal(sha, createHash('sha256').update(files[name]!).digest('hex'));
    for (let i = 0; i < 100 && s.stats().activeTransfers > 0; i++) await new Promise((res) => setTimeout(res, 10));
    assert.equal(s.stats().transfers.ok, 1);
    // Lock-step (curl has no windowsize): 2,162 ACKs, nearly all answered in the addon, whose peer check is IPv6's.
    assert.ok(s.stats().received.answeredInAddon > 0.8 * s.stats().received.transfer, JSON.stringify(s.stats().received));
  });
});
