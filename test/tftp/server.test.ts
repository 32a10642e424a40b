import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import os from 'node:os';
import path from 'node:path';
import { startTftp, type TftpOptions, type TftpServer } from '../../server/tftp/server.ts';
import { silentLogger } from '../../server/log.ts';
import { Registry } from '../../server/metrics.ts';
import { decode, encodeAck, encodeRequest, OP_DATA, OP_ERROR, OP_RRQ, OP_WRQ } from '../../server/tftp/codec.ts';
import { exchange, openFds, tftpGet } from './client.ts';

let base = '';
let root = '';
const files: Record<string, Buffer> = {};

before(() => {
  base = mkdtempSync(path.join(os.tmpdir(), 'sbtftp-srv-'));
  root = path.join(base, 'root');
  mkdirSync(path.join(root, 'boot'), { recursive: true });
  const put = (name: string, data: Buffer): void => {
    files[name] = data;
    writeFileSync(path.join(root, name), data);
  };
  put('small.bin', randomBytes(3000));
  put('exact512.bin', randomBytes(1024)); // a multiple of 512: ends with an empty DATA
  put('empty.bin', Buffer.alloc(0));
  put('medium.bin', randomBytes(2 * 1024 * 1024 + 17));
  put('boot/bcd', randomBytes(5000));
  put('text.txt', Buffer.from('line one\nline two\r\n'));
  // 70,000 blocks at blksize 16: the block counter wraps past 65535 to 0.
  put('rollover.bin', randomBytes(16 * 70000 + 5));
  writeFileSync(path.join(base, 'secret'), 'secret');
  symlinkSync(path.join(base, 'secret'), path.join(root, 'escape'));
});

after(() => rmSync(base, { recursive: true, force: true }));

async function withServer(extra: Partial<TftpOptions>, fn: (s: TftpServer, port: number, metrics: Registry) => Promise<void>): Promise<void> {
  const metrics = new Registry();
  const s = await startTftp({ root, host: '127.0.0.1', port: 0, logger: silentLogger(), metrics, ...extra });
  try {
    await fn(s, s.address().port, metrics);
  } finally {
    await s.close();
  }
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('plain RFC 1350 transfer, 512-byte blocks, files ending on a block boundary and empty files', async () => {
  await withServer({}, async (s, port) => {
    for (const name of ['small.bin', 'exact512.bin', 'empty.bin']) {
      const r = await tftpGet({ port, file: name });
      assert.equal(r.oack, null);
      assert.deepEqual(r.data, files[name], name);
    }
    // exact512: 2 full blocks + 1 empty one.
    const r = await tftpGet({ port, file: 'exact512.bin' });
    assert.equal(r.packets, 3);
    await until(() => s.stats().activeTransfers === 0);
    assert.equal(s.stats().transfers.ok, 4);
  });
});

test('OACK with blksize, tsize, timeout and windowsize; unknown options ignored', async () => {
  await withServer({}, async (_s, port) => {
    const r = await tftpGet({
      port,
      file: 'medium.bin',
      options: [
        ['blksize', '1456'],
        ['tsize', '0'],
        ['x-unknown', 'whatever'],
        ['timeout', '2'],
        ['windowsize', '16'],
      ],
    });
    assert.deepEqual([...r.oack!], [
      ['blksize', '1456'],
      ['tsize', String(files['medium.bin']!.length)],
      ['timeout', '2'],
      ['windowsize', '16'],
    ]);
    assert.deepEqual(r.data, files['medium.bin']);
  });
});

test('blksize 0/7 fall back to 512, 65465 is clamped to the maximum; windowsize 0/65536 mean lock-step', async () => {
  await withServer({ maxBlksize: 1456 }, async (_s, port) => {
    for (const v of ['0', '7']) {
      const r = await tftpGet({ port, file: 'small.bin', options: [['blksize', v], ['tsize', '0']] });
      assert.equal(r.oack?.has('blksize'), false, v);
      assert.deepEqual(r.data, files['small.bin']);
      assert.equal(r.packets, Math.ceil(3000 / 512));
    }
    const big = await tftpGet({ port, file: 'medium.bin', options: [['blksize', '65465']] });
    assert.equal(big.oack?.get('blksize'), '1456');
    assert.deepEqual(big.data, files['medium.bin']);
    for (const v of ['0', '65536']) {
      const r = await tftpGet({ port, file: 'small.bin', options: [['windowsize', v], ['blksize', '512']] });
      assert.equal(r.oack?.has('windowsize'), false, v);
      assert.deepEqual(r.data, files['small.bin']);
    }
    const clamped = await tftpGet({ port, file: 'small.bin', options: [['windowsize', '65535']] });
    assert.equal(clamped.oack?.get('windowsize'), '64');
  });
});

test('block numbers roll over past 65535 (to 0) and the file stays byte-identical', async () => {
  await withServer({}, async (_s, port) => {
    const r = await tftpGet({ port, file: 'rollover.bin', options: [['blksize', '16'], ['windowsize', '64']] });
    assert.deepEqual(r.data, files['rollover.bin']);
    assert.ok(r.packets >= 70001);
  });
});

test('Microsoft variable window: msftwindow 31416 → 27182, each ACK byte sets the next window exactly', async () => {
  // A long timer so that nothing but the ACK byte decides how many blocks come per window.
  await withServer({ timeoutMs: 3000, minTimeoutMs: 2000 }, async (_s, port) => {
    const plan = [4, 8, 1, 16, 32, 3, 64, 2];
    const r = await tftpGet({
      port,
      file: 'medium.bin',
      options: [
        ['blksize', '1456'],
        ['tsize', '0'],
        ['windowsize', '4'],
        ['msftwindow', '31416'],
      ],
      msftWindow: (i) => plan[i % plan.length]!,
    });
    assert.equal(r.oack?.get('msftwindow'), '27182');
    assert.deepEqual(r.data, files['medium.bin']);
    // windows[i] = DATA received after the ACK carrying plan[i]; the last window is cut by the file end.
    const full = r.windows.slice(0, -1);
    assert.ok(full.length > 50, `only ${full.length} windows`);
    full.forEach((n, i) => assert.equal(n, plan[i % plan.length], `window ${i}`));
  });
});

test('msftwindow with another value is not granted', async () => {
  await withServer({}, async (_s, port) => {
    const r = await tftpGet({ port, file: 'small.bin', options: [['msftwindow', '12345'], ['tsize', '0']] });
    assert.equal(r.oack?.has('msftwindow'), false);
    assert.deepEqual(r.data, files['small.bin']);
  });
});

test('tsize probe answered by ERROR 8 counts as a probe, not a failure', async () => {
  await withServer({}, async (s, port, metrics) => {
    const r = await tftpGet({ port, file: '\\Boot\\BCD', options: [['tsize', '0'], ['blksize', '1456']], errorAfterOack: 8 });
    assert.equal(r.oack?.get('tsize'), '5000');
    await until(() => s.stats().activeTransfers === 0);
    assert.equal(s.stats().transfers.probe, 1);
    assert.equal(s.stats().transfers.client_error, undefined);
    const text = metrics.render();
    assert.match(text, /swarmboot_tftp_probes_total 1/);
    assert.match(text, /swarmboot_tftp_transfers_total\{outcome="probe"\} 1/);
    const full = await tftpGet({ port, file: '\\BOOT\\bcd', options: [['tsize', '0']] });
    assert.deepEqual(full.data, files['boot/bcd']);
  });
});

test('write requests get ERROR 2; a missing file ERROR 1; traversal never serves anything outside the root', async () => {
  await withServer({}, async (s, port) => {
    const w = await exchange(port, encodeRequest(OP_WRQ, 'upload.bin', 'octet'));
    const wp = w && decode(w.msg);
    assert.ok(wp && wp.op === OP_ERROR && wp.code === 2);
    const nf = await tftpGet({ port, file: 'nope.bin' });
    assert.equal(nf.error?.code, 1);
    for (const name of ['../secret', '..\\secret', 'boot/../../secret', '/etc/passwd', 'C:\\Windows\\win.ini', 'escape', '\\..\\..\\..\\etc\\passwd']) {
      const r = await tftpGet({ port, file: name });
      assert.ok(r.error, name);
      assert.ok(r.error.code === 1 || r.error.code === 2, `${name}: ${r.error.code}`);
      assert.equal(r.data.length, 0);
    }
    assert.ok(s.stats().transfers.denied! >= 5);
  });
});

test('a NUL inside the filename field never reaches a path: the request is refused and nothing is sent', async () => {
  await withServer({}, async (s, port) => {
    // On the wire a NUL ends the filename field, so the bytes after it land in the mode field; a C server that
    // looked only at the name would serve "small.bin". Each of these must come back as an ERROR (never OACK or
    // DATA), and neither the file before the NUL nor the one after it may be served.
    const spliced = ['small.bin\0../secret', 'escape\0.bin', 'boot\0/bcd', 'small.bin\0octet.bin'];
    for (const name of spliced) {
      const sock = dgram.createSocket('udp4');
      await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
      const got: Buffer[] = [];
      sock.on('message', (m) => got.push(m));
      sock.send(Buffer.concat([Buffer.from([0, OP_RRQ]), Buffer.from(`${name}\0octet\0`, 'latin1')]), port, '127.0.0.1');
      // Long enough for a transfer to have started (and resent its first DATA) had the request been accepted.
      await new Promise((r) => setTimeout(r, 300));
      sock.close();
      assert.equal(got.length, 1, `${JSON.stringify(name)}: ${got.length} replies`);
      const p = decode(got[0]!);
      assert.ok(p && p.op === OP_ERROR, `${JSON.stringify(name)}: not an ERROR`);
      // The part after the NUL is read as the transfer mode, which is not one TFTP knows: ERROR 4.
      assert.equal(p.code, 4, `${JSON.stringify(name)}: ${p.message}`);
    }
    // A NUL right after the name leaves an empty mode: not a request at all, dropped and counted, never answered.
    const empty = await exchange(port, Buffer.concat([Buffer.from([0, OP_RRQ]), Buffer.from('small.bin\0\0octet\0')]), 300);
    assert.equal(empty, null);
    assert.equal(s.stats().transfers.bad_request, spliced.length);
    assert.equal(s.stats().transfers.ok, undefined);
    assert.equal(s.stats().droppedPackets.malformed, 1);
    assert.equal(s.stats().received.transfer, 0, 'a transfer socket was opened');
  });
});

test('netascii is served converted; unknown modes are refused cleanly', async () => {
  await withServer({}, async (_s, port) => {
    const r = await tftpGet({ port, file: 'text.txt', mode: 'netascii' });
    assert.deepEqual(r.data, Buffer.from('line one\r\nline two\r\0\r\n', 'latin1'));
    const m = await tftpGet({ port, file: 'text.txt', mode: 'mail' });
    assert.equal(m.error?.code, 4);
  });
});

test('virtual files come first and obey the same path rules', async () => {
  const asked: string[] = [];
  const virtualFile = async (p: string, client: { address: string; port: number }): Promise<Buffer | null> => {
    asked.push(p);
    assert.equal(client.address, '127.0.0.1');
    return p.toLowerCase() === 'boot/bcd' ? Buffer.from(`per-machine ${client.address}`) : null;
  };
  await withServer({ virtualFile }, async (_s, port) => {
    const r = await tftpGet({ port, file: '\\Boot\\BCD', options: [['tsize', '0']] });
    assert.equal(r.data.toString(), 'per-machine 127.0.0.1');
    assert.equal(r.oack?.get('tsize'), String(r.data.length));
    const disk = await tftpGet({ port, file: 'small.bin' });
    assert.deepEqual(disk.data, files['small.bin']);
    const bad = await tftpGet({ port, file: '..\\boot\\bcd' });
    assert.equal(bad.error?.code, 2);
    assert.deepEqual(asked, ['Boot/BCD', 'small.bin']);
  });
});

test('a packet from another port gets ERROR 5 and the transfer carries on', async () => {
  await withServer({}, async (s, port) => {
    const intruder = dgram.createSocket('udp4');
    await new Promise<void>((r) => intruder.bind(0, '127.0.0.1', r));
    const replies: Buffer[] = [];
    const fromPorts: number[] = [];
    let serverTid = -1;
    intruder.on('message', (m, rinfo) => {
      replies.push(m);
      fromPorts.push(rinfo.port);
    });
    try {
    const r = await tftpGet({
      port,
      file: 'medium.bin',
      options: [['blksize', '1456'], ['windowsize', '4']],
      onServerPort: (tid) => {
        serverTid = tid;
        // Mid-transfer: a bogus ACK far ahead, a DATA and garbage, all from the wrong port.
        intruder.send(encodeAck(400), tid, '127.0.0.1');
        intruder.send(Buffer.from([0, OP_DATA, 0, 1, 1, 2, 3]), tid, '127.0.0.1');
        intruder.send(Buffer.from([0, 4]), tid, '127.0.0.1');
      },
    });
    assert.deepEqual(r.data, files['medium.bin']);
    await until(() => replies.length >= 3);
    for (const m of replies) {
      const p = decode(m);
      assert.ok(p && p.op === OP_ERROR && p.code === 5);
    }
    // The ERROR comes from the transfer's own port, as RFC 1350 has it (not from another socket of the server).
    assert.deepEqual(fromPorts, [serverTid, serverTid, serverTid]);
    assert.equal(s.stats().droppedPackets.foreign_tid, 3);
    await until(() => s.stats().transfers.ok === 1);
    } finally {
      intruder.close();
    }
  });
});

test('a packet from another address (same port) gets ERROR 5 and the transfer carries on', async () => {
  await withServer({}, async (s, port) => {
    // 127.0.0.2 is loopback too on Linux: an intruder there can bind the very port the client uses, so only the
    // address tells them apart.
    const intruder = dgram.createSocket('udp4');
    const replies: Array<{ m: Buffer; port: number }> = [];
    intruder.on('message', (m, rinfo) => replies.push({ m, port: rinfo.port }));
    let serverTid = -1;
    let bound: Promise<void> = Promise.resolve();
    try {
      const r = await tftpGet({
        port,
        file: 'medium.bin',
        options: [['blksize', '1456'], ['windowsize', '4']],
        onServerPort: (tid, localPort) => {
          serverTid = tid;
          bound = new Promise<void>((res, rej) => {
            intruder.once('error', rej);
            intruder.bind(localPort, '127.0.0.2', () => {
              // An ACK far ahead (it would end the transfer early if believed), an ERROR (it would abort it) and garbage.
              intruder.send(encodeAck(1000), tid, '127.0.0.1');
              intruder.send(Buffer.from([0, OP_ERROR, 0, 0, 0x78, 0]), tid, '127.0.0.1');
              intruder.send(Buffer.from([0, 4]), tid, '127.0.0.1');
              res();
            });
          });
        },
      });
      await bound;
      assert.deepEqual(r.data, files['medium.bin']);
      await until(() => replies.length >= 3);
      for (const { m, port: from } of replies) {
        const p = decode(m);
        assert.ok(p && p.op === OP_ERROR && p.code === 5);
        assert.equal(from, serverTid);
      }
      assert.equal(s.stats().droppedPackets.foreign_tid, 3);
      await until(() => s.stats().transfers.ok === 1);
      assert.equal(s.stats().transfers.client_error, undefined);
    } finally {
      intruder.close();
    }
  });
});

test('lost DATA packets and lost ACKs are recovered (go-back-N, duplicate ACK, timeout)', async () => {
  await withServer({ minTimeoutMs: 5 }, async (s, port, metrics) => {
    // The last ACK is never lost: this client does not linger to answer the resent last block, as real ones do.
    const mediumLast = Math.floor(files['medium.bin']!.length / 1456) + 1;
    let k = 0;
    const r = await tftpGet({
      port,
      file: 'medium.bin',
      options: [['blksize', '1456'], ['windowsize', '8']],
      // A lost ACK is recovered when this client's timer sends it again (the server's resent window is old news to
      // the client, which does not answer it): each costs these 100 ms.
      timeoutMs: 100,
      dropData: () => ++k % 37 === 0,
      // Every seventh ACK (n = 1, 8, 15 …), never the last one.
      dropAck: (n, block) => n % 7 === 1 && block !== (mediumLast & 0xffff),
    });
    assert.deepEqual(r.data, files['medium.bin']);
    assert.ok(r.acksDropped >= 20, `only ${r.acksDropped} ACKs lost`);
    let j = 0;
    const ls = await tftpGet({
      port,
      file: 'small.bin',
      timeoutMs: 200,
      dropData: () => ++j % 3 === 0,
      dropAck: (n, block) => n % 2 === 0 && block < 6,
    });
    assert.deepEqual(ls.data, files['small.bin']);
    assert.ok(ls.acksDropped >= 2);
    // Lock-step, losing the ACK of the OACK: the server must resend the OACK.
    const lo = await tftpGet({ port, file: 'small.bin', options: [['tsize', '0']], timeoutMs: 200, dropAck: (n) => n === 0 });
    assert.deepEqual(lo.data, files['small.bin']);
    assert.equal(lo.acksDropped, 1);
    await until(() => s.stats().activeTransfers === 0);
    assert.equal(s.stats().transfers.ok, 3);
    assert.ok(metrics.counter('swarmboot_tftp_retransmits_total', '').get() > 0);
    assert.ok(metrics.counter('swarmboot_tftp_bytes_total', '').get() >= files['medium.bin']!.length);
  });
});

test('a client that vanishes mid-transfer is timed out and everything is freed', async () => {
  await withServer({ timeoutMs: 100, minTimeoutMs: 20, giveUpMs: 300 }, async (s, port) => {
    await tftpGet({ port, file: 'medium.bin', options: [['blksize', '1456'], ['windowsize', '4']], vanishAfterBytes: 100000 });
    await tftpGet({ port, file: 'small.bin', vanishAfterBytes: 512 });
    await until(() => s.stats().activeTransfers === 0, 5000);
    assert.equal(s.stats().transfers.timeout, 2);
    const c = s.stats().cache;
    assert.equal(c.openFds, 0);
    assert.equal(c.pinnedChunks, 0);
  });
});

test('past maxTransfers a clear ERROR, and the slots free up again', async () => {
  await withServer({ maxTransfers: 2, timeoutMs: 100, giveUpMs: 250 }, async (s, port) => {
    const a = tftpGet({ port, file: 'medium.bin', vanishAfterBytes: 512 });
    const b = tftpGet({ port, file: 'medium.bin', vanishAfterBytes: 512 });
    await Promise.all([a, b]);
    assert.equal(s.stats().activeTransfers, 2);
    const c = await tftpGet({ port, file: 'small.bin' });
    assert.equal(c.error?.code, 0);
    assert.match(c.error!.message, /busy/);
    await until(() => s.stats().activeTransfers === 0);
    const d = await tftpGet({ port, file: 'small.bin' });
    assert.deepEqual(d.data, files['small.bin']);
    assert.equal(s.stats().transfers.busy, 1);
  });
});

test('bind failures say which port, why and how to fix it', async () => {
  await withServer({}, async (_s, port) => {
    await assert.rejects(startTftp({ root, host: '127.0.0.1', port, logger: silentLogger() }), (e: Error) => {
      assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.match(e.message, /EADDRINUSE/);
      assert.match(e.message, /another TFTP server|Another TFTP server/i);
      return true;
    });
  });
  if (process.getuid?.() !== 0) {
    await assert.rejects(startTftp({ root, host: '127.0.0.1', port: 69, logger: silentLogger() }), /CAP_NET_BIND_SERVICE/);
  }
  await assert.rejects(startTftp({ root: path.join(base, 'missing'), host: '127.0.0.1', port: 0, logger: silentLogger() }), /not usable/);
});

test('close() ends live transfers and releases every socket and file', async () => {
  const fds = openFds();
  const s = await startTftp({ root, host: '127.0.0.1', port: 0, logger: silentLogger() });
  const port = s.address().port;
  const p = tftpGet({ port, file: 'medium.bin', vanishAfterBytes: 2048 });
  await p;
  await until(() => s.stats().activeTransfers === 1);
  await s.close();
  assert.equal(s.stats().activeTransfers, 0);
  await until(() => openFds() <= fds, 2000);
});

