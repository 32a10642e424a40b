/**
 * The native receive path (server/native-udp.ts, native/udp_batch.c recvStart): a dgram socket's datagrams taken
 * over with recvmmsg must arrive whole, in order, with their sender's address and port, and the socket must go back
 * to a clean state when closed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { formatAddress, loadNativeUdp, UdpReceiver } from '../server/native-udp.ts';

const haveCompiler = ['cc', 'gcc', 'clang'].some((c) => spawnSync(c, ['--version']).status === 0);
const skip = !haveCompiler && 'no C compiler';

async function bound(type: 'udp4' | 'udp6', address: string): Promise<dgram.Socket> {
  const s = dgram.createSocket(type);
  await new Promise<void>((r) => s.bind(0, address, r));
  return s;
}

interface Got {
  len: number;
  address: string;
  port: number;
  first: number;
}

async function addon() {
  const n = await loadNativeUdp();
  assert.ok(n.addon, n.detail);
  return n.addon;
}

test('datagrams arrive whole and in order, in batches, with their source (IPv4)', { skip }, async () => {
  const a = await addon();
  const rx = await bound('udp4', '127.0.0.1');
  const tx = await bound('udp4', '127.0.0.1');
  const got: Got[] = [];
  const batches: number[] = [];
  const r = UdpReceiver.start(a, rx, {
    slot: 600,
    max: 16,
    onPackets: (n) => {
      batches.push(n);
      for (let i = 0; i < n; i++) got.push({ len: r!.length(i), address: r!.address(i), port: r!.port(i), first: r!.ring[i * 600]! });
    },
  });
  assert.ok(r, 'receiver started');
  try {
    const N = 200;
    // Sent in one synchronous burst: they queue in the socket and come out many per recvmmsg.
    for (let i = 0; i < N; i++) tx.send(Buffer.alloc(1 + (i % 600), i & 255), rx.address().port, '127.0.0.1');
    const end = Date.now() + 5000;
    while (got.length < N && Date.now() < end) await new Promise((res) => setTimeout(res, 5));
    assert.equal(got.length, N);
    for (let i = 0; i < N; i++) {
      assert.deepEqual(got[i], { len: 1 + (i % 600), address: '127.0.0.1', port: tx.address().port, first: i & 255 }, `datagram ${i}`);
    }
    assert.ok(Math.max(...batches) > 1, `batches: ${batches.join(',')}`);
    assert.ok(Math.max(...batches) <= 16);
  } finally {
    rx.close();
    tx.close();
  }
  assert.equal(r!.active, false, 'closing the socket stopped the receiver first');
});

test('a datagram longer than a slot is reported truncated (-1), the next one is whole', { skip }, async () => {
  const a = await addon();
  const rx = await bound('udp4', '127.0.0.1');
  const tx = await bound('udp4', '127.0.0.1');
  const lens: number[] = [];
  const r = UdpReceiver.start(a, rx, { slot: 64, max: 4, onPackets: (n) => { for (let i = 0; i < n; i++) lens.push(r!.length(i)); } });
  try {
    tx.send(Buffer.alloc(65), rx.address().port, '127.0.0.1');
    tx.send(Buffer.alloc(64), rx.address().port, '127.0.0.1');
    const end = Date.now() + 2000;
    while (lens.length < 2 && Date.now() < end) await new Promise((res) => setTimeout(res, 5));
    assert.deepEqual(lens, [-1, 64]);
  } finally {
    rx.close();
    tx.close();
  }
});

test('IPv6 sources are spelled as dgram spells them; replies go back with sendTo', { skip }, async () => {
  const a = await addon();
  let rx: dgram.Socket;
  try {
    rx = await bound('udp6', '::1');
  } catch {
    return; // no IPv6 loopback here
  }
  const tx = await bound('udp6', '::1');
  const got: Array<{ address: string; port: number }> = [];
  const r = UdpReceiver.start(a, rx, { slot: 64, max: 4, onPackets: (n) => { for (let i = 0; i < n; i++) got.push({ address: r!.address(i), port: r!.port(i) }); } });
  try {
    const reply = new Promise<{ m: Buffer; from: dgram.RemoteInfo }>((res) => tx.once('message', (m, from) => res({ m, from })));
    tx.send(Buffer.from('ping'), rx.address().port, '::1');
    const end = Date.now() + 2000;
    while (got.length < 1 && Date.now() < end) await new Promise((res) => setTimeout(res, 5));
    assert.deepEqual(got, [{ address: '::1', port: tx.address().port }]);
    assert.equal(r!.sendTo(Buffer.from('pong'), got[0]!.address, got[0]!.port), 4);
    const { m, from } = await reply;
    assert.equal(m.toString(), 'pong');
    assert.equal(from.port, rx.address().port, 'sent from the received-on socket');
  } finally {
    rx.close();
    tx.close();
  }
});

test('wantWritable calls back once the socket has room; sendTo refuses a name and a stopped receiver', { skip }, async () => {
  const a = await addon();
  const rx = await bound('udp4', '127.0.0.1');
  let writable = 0;
  const r = UdpReceiver.start(a, rx, { slot: 64, max: 4, onPackets: () => {}, onWritable: () => writable++ });
  try {
    r!.wantWritable();
    r!.wantWritable(); // asking twice is one callback
    const end = Date.now() + 2000;
    while (writable < 1 && Date.now() < end) await new Promise((res) => setTimeout(res, 5));
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(writable, 1);
    assert.equal(r!.sendTo(Buffer.from('x'), 'localhost', 9), -22, 'numeric addresses only (EINVAL)');
  } finally {
    rx.close();
  }
  assert.ok(r!.sendTo(Buffer.from('x'), '127.0.0.1', 9) < 0, 'stopped: nothing is sent on a closing socket');
});

test('after close, the same fd number serves a new dgram socket normally', { skip }, async () => {
  const a = await addon();
  for (let round = 0; round < 20; round++) {
    const rx = await bound('udp4', '127.0.0.1');
    const r = UdpReceiver.start(a, rx, { slot: 64, max: 4, onPackets: () => {} });
    assert.ok(r);
    rx.close();
    // A plain dgram socket now, very likely on the fd just freed: libuv must be able to watch it.
    const plain = await bound('udp4', '127.0.0.1');
    const tx = await bound('udp4', '127.0.0.1');
    const got = new Promise<string>((res) => plain.once('message', (m) => res(m.toString())));
    tx.send(Buffer.from(`r${round}`), plain.address().port, '127.0.0.1');
    assert.equal(await got, `r${round}`);
    plain.close();
    tx.close();
  }
});

test('a socket that is not bound (no fd yet) is left to dgram', { skip }, async () => {
  const a = await addon();
  const s = dgram.createSocket('udp4');
  assert.equal(UdpReceiver.start(a, s, { slot: 64, max: 4, onPackets: () => {} }), null);
  s.close();
});

test('formatAddress follows RFC 5952 and dgram for IPv6, dotted quads for IPv4', () => {
  const m = (family: number, w: number[], scope = 0): Int32Array => Int32Array.from([0, 0, family, ...w.map((x) => x | 0), scope]);
  assert.equal(formatAddress(m(4, [0x0a000001, 0, 0, 0]), 0), '10.0.0.1');
  assert.equal(formatAddress(m(4, [0xffffffff, 0, 0, 0]), 0), '255.255.255.255');
  assert.equal(formatAddress(m(6, [0, 0, 0, 1]), 0), '::1');
  assert.equal(formatAddress(m(6, [0, 0, 0, 0]), 0), '::');
  assert.equal(formatAddress(m(6, [0, 0, 0xffff, 0x7f000001]), 0), '::ffff:127.0.0.1');
  assert.equal(formatAddress(m(6, [0xfe800000, 0, 0x02000000, 0x00000001], 3), 0), 'fe80::200:0:0:1%3');
  assert.equal(formatAddress(m(6, [0x20010db8, 0, 0x00010000, 0x00000001]), 0), '2001:db8::1:0:0:1');
  assert.equal(formatAddress(m(6, [0x20010db8, 0x00010001, 0x00010001, 0x00010001]), 0), '2001:db8:1:1:1:1:1:1');
});

test('an exception thrown by the callback reaches uncaughtException, like one thrown by a dgram listener', { skip }, async () => {
  const { execFileSync } = await import('node:child_process');
  const path = await import('node:path');
  const mod = path.resolve(import.meta.dirname, '../server/native-udp.ts');
  const script = `
    import dgram from 'node:dgram';
    import { loadNativeUdp, UdpReceiver } from ${JSON.stringify(mod)};
    const { addon } = await loadNativeUdp();
    const rx = dgram.createSocket('udp4');
    await new Promise((r) => rx.bind(0, '127.0.0.1', r));
    UdpReceiver.start(addon, rx, { slot: 64, max: 4, onPackets: () => { throw new Error('boom in callback'); } });
    process.on('uncaughtException', (e) => { console.log('caught:', e.message); rx.close(); });
    const tx = dgram.createSocket('udp4');
    tx.send('x', rx.address().port, '127.0.0.1', () => tx.close());
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
  assert.match(out, /caught: boom in callback/);
});

test('sockets ready together are served in one call into JavaScript; one stopped meanwhile gets nothing more', { skip }, async () => {
  const a = await addon();
  const tx = await bound('udp4', '127.0.0.1');
  const sockets = await Promise.all([0, 1, 2, 3].map(() => bound('udp4', '127.0.0.1')));
  const seen: string[] = [];
  const receivers: Array<UdpReceiver | null> = [];
  let stopped = -1;
  sockets.forEach((s, k) => {
    receivers.push(
      UdpReceiver.start(a, s, {
        slot: 64,
        max: 4,
        onPackets: () => {
          if (seen.length === 0) {
            // Microtasks run when the call into JavaScript returns: with one call per socket, this would come
            // right after the first receiver's turn instead of after all of them.
            queueMicrotask(() => seen.push('microtask'));
            stopped = (k + 1) % sockets.length;
            receivers[stopped]!.stop();
          }
          seen.push(`rx${k}`);
        },
      }),
    );
  });
  try {
    assert.ok(receivers.every((r) => r !== null));
    for (const s of sockets) tx.send('x', s.address().port, '127.0.0.1');
    const end = Date.now() + 5000;
    while (!seen.includes('microtask') && Date.now() < end) await new Promise((res) => setTimeout(res, 5));
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(seen.length, 4, seen.join(' '));
    assert.equal(seen[3], 'microtask', `all three before the microtask: ${seen.join(' ')}`);
    assert.ok(!seen.includes(`rx${stopped}`), `rx${stopped} was stopped before its turn: ${seen.join(' ')}`);
  } finally {
    for (const s of sockets) s.close();
    tx.close();
  }
});
