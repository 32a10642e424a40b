/**
 * 100,000 random and mutated datagrams: half at the main port, half at live transfer ports (from the
 * transfer's own client TID and from strangers). The server must not crash or hang, must keep serving a
 * real download byte-identically meanwhile, and must end with no transfer, socket or file handle left.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startTftp } from '../../server/tftp/server.ts';
import { silentLogger } from '../../server/log.ts';
import { encodeAck, encodeData, encodeError, encodeOack, encodeRequest, OP_RRQ, OP_WRQ } from '../../server/tftp/codec.ts';
import { openFds, tftpGet } from './client.ts';

const TOTAL = 100_000;
const SEED = Number(process.env.TFTP_FUZZ_SEED ?? Date.now() % 1e9);

let base = '';
let root = '';
let big: Buffer;

before(() => {
  base = mkdtempSync(path.join(os.tmpdir(), 'sbtftp-fuzz-'));
  root = path.join(base, 'root');
  mkdirSync(path.join(root, 'boot'), { recursive: true });
  writeFileSync(path.join(root, 'a.bin'), randomBytes(200_000));
  writeFileSync(path.join(root, 'boot', 'bcd'), randomBytes(10_000));
  big = randomBytes(4 * 1024 * 1024);
  writeFileSync(path.join(root, 'big.bin'), big);
});
after(() => rmSync(base, { recursive: true, force: true }));

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test(`fuzz: ${TOTAL} random and mutated packets at the main and transfer ports (seed ${SEED})`, { timeout: 240_000 }, async () => {
  const rnd = prng(SEED);
  const int = (n: number): number => Math.floor(rnd() * n);
  const bytes = (n: number): Buffer => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = int(256);
    return b;
  };
  const seeds: Buffer[] = [
    encodeRequest(OP_RRQ, 'a.bin', 'octet', [['blksize', '1456'], ['tsize', '0'], ['windowsize', '8']]),
    encodeRequest(OP_RRQ, '\\Boot\\BCD', 'octet', [['tsize', '0'], ['msftwindow', '31416']]),
    encodeRequest(OP_RRQ, 'a.bin', 'netascii'),
    encodeRequest(OP_RRQ, '../../etc/passwd', 'octet'),
    encodeRequest(OP_WRQ, 'up.bin', 'octet', [['blksize', '512']]),
    encodeAck(1),
    encodeAck(0, 8),
    encodeData(1, Buffer.alloc(512)),
    encodeError(8, 'probe'),
    encodeOack([['blksize', '1456']]),
  ];
  const mutate = (src: Buffer): Buffer => {
    let b = Buffer.from(src);
    const n = 1 + int(4);
    for (let i = 0; i < n; i++) {
      switch (int(7)) {
        case 0:
          if (b.length) b[int(b.length)] = int(256);
          break;
        case 1:
          if (b.length) {
            const at = int(b.length);
            b[at] = b[at]! ^ (1 << int(8));
          }
          break;
        case 2:
          b = b.subarray(0, int(b.length + 1));
          break;
        case 3: {
          const at = int(b.length + 1);
          b = Buffer.concat([b.subarray(0, at), bytes(1 + int(8)), b.subarray(at)]);
          break;
        }
        case 4:
          if (b.length) {
            const at = int(b.length);
            b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + int(4))]);
          }
          break;
        case 5:
          b = Buffer.concat([b, Buffer.from([0]), bytes(int(40)), Buffer.from([0])]);
          break;
        default:
          if (b.length >= 2) b[1] = int(8);
      }
    }
    return b;
  };
  const packet = (): Buffer => {
    const r = rnd();
    if (r < 0.25) return bytes(int(r < 0.05 ? 4 : 700));
    return mutate(seeds[int(seeds.length)]!);
  };

  const fdsBefore = openFds();
  const srv = await startTftp({ root, host: '127.0.0.1', port: 0, logger: silentLogger(), timeoutMs: 200, minTimeoutMs: 20, giveUpMs: 600, maxTransfers: 100 });
  const port = srv.address().port;
  const fdsServing = openFds();
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();

  const socks: dgram.Socket[] = [];
  try {
    for (let i = 0; i < 16; i++) {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
      s.on('message', () => {});
      s.on('error', () => {});
      socks.push(s);
    }
    // A real download runs through the whole storm and must come out intact.
    const legit = tftpGet({ port, file: 'big.bin', options: [['blksize', '1456'], ['windowsize', '8']], timeoutMs: 500, retries: 40 });

    const pause = (): Promise<void> => new Promise((r) => setImmediate(r));
    let sent = 0;
    // Half at the main port, paced so that the kernel does not drop most of them before the server reads them.
    while (sent < TOTAL / 2) {
      for (let i = 0; i < 20; i++, sent++) socks[int(socks.length)]!.send(packet(), port, '127.0.0.1');
      await pause();
    }
    const sentTransfer0 = srv.stats().received.transfer;
    // Half at transfer ports: each round opens a transfer from a fresh client socket, learns its TID, then
    // aims mutated packets at it: a few from the transfer's own client, most from strangers.
    let opened = 0;
    while (sent < TOTAL) {
      const owner = dgram.createSocket('udp4');
      await new Promise<void>((r) => owner.bind(0, '127.0.0.1', r));
      owner.on('error', () => {});
      let tid = -1;
      owner.on('message', (_m, rinfo) => {
        if (tid < 0 && rinfo.port !== port) tid = rinfo.port;
      });
      owner.send(seeds[int(2)]!, port, '127.0.0.1');
      const t0 = Date.now();
      while (tid < 0 && Date.now() - t0 < 1000) await new Promise((r) => setTimeout(r, 1));
      if (tid >= 0) {
        opened++;
        for (let k = 0; k < 25 && sent < TOTAL; k++) {
          for (let i = 0; i < 20; i++, sent++) {
            // The owner's garbage may legitimately end the transfer, so it comes in the last bursts only.
            const from = k >= 20 && int(4) === 0 ? owner : socks[int(socks.length)]!;
            from.send(packet(), tid, '127.0.0.1');
          }
          await pause();
        }
      }
      await new Promise<void>((r) => owner.close(r));
    }
    assert.ok(opened > 10, `only ${opened} transfers opened`);
    await new Promise((r) => setTimeout(r, 100));
    const rx = srv.stats().received;
    // Most of the storm must actually have reached the server, or this test proves little.
    assert.ok(rx.main > TOTAL * 0.45, `main port read only ${rx.main} packets`);
    assert.ok(rx.transfer - sentTransfer0 > TOTAL * 0.4, `transfer ports read only ${rx.transfer - sentTransfer0} packets`);

    const got = await legit;
    assert.equal(got.error, undefined);
    assert.ok(got.data.equals(big), 'legit download corrupted during the fuzz');

    // Still answering normally.
    const after = await tftpGet({ port, file: 'a.bin', options: [['blksize', '1456']] });
    assert.equal(after.data.length, 200_000);

    // Everything the fuzz started times out and is freed.
    const end = Date.now() + 15_000;
    while (srv.stats().activeTransfers + srv.stats().pendingRequests > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    const st = srv.stats();
    console.log(`fuzz: ${opened} transfers opened at the transfer-port phase; server stats ${JSON.stringify({ received: st.received, transfers: st.transfers, dropped: st.droppedPackets })}`);
    assert.equal(st.activeTransfers, 0, JSON.stringify(st));
    assert.equal(st.pendingRequests, 0);
    assert.equal(st.cache.openFds, 0);
    assert.equal(st.cache.pinnedChunks, 0);
    assert.ok((st.droppedPackets.malformed ?? 0) > 1000, JSON.stringify(st.droppedPackets));
    assert.ok((st.droppedPackets.foreign_tid ?? 0) > 1000, JSON.stringify(st.droppedPackets));
    for (const s of socks) s.close();
    socks.length = 0;
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(openFds(), fdsServing, 'sockets or files leaked while serving');
    // No handler ever blocked the loop for long (a hang would show here or as the test timeout).
    assert.ok(delay.max / 1e6 < 2000, `event loop blocked ${delay.max / 1e6} ms`);
  } finally {
    delay.disable();
    for (const s of socks) s.close();
    await srv.close();
  }
  assert.equal(openFds(), fdsBefore, 'file descriptors leaked after close');
});
