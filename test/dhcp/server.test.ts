/** startDhcp on loopback with ephemeral ports: the socket paths that need no broadcast (relay, 4011), and bind errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { silentLogger } from '../../server/log.ts';
import { Registry } from '../../server/metrics.ts';
import { startDhcp } from '../../server/dhcp/server.ts';
import { decodePacket, type DhcpPacket } from '../../server/dhcp/codec.ts';
import { Opt } from '../../server/dhcp/options.ts';
import { clientBuf, MsgType } from './packets.ts';
import { testDecider } from './decider.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const NODE = path.join(ROOT, 'node_modules/.bin/node');

async function udp(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return s;
}

function next(s: dgram.Socket, ms = 2000): Promise<{ p: DhcpPacket; from: dgram.RemoteInfo }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { s.off('message', on); reject(new Error('no reply')); }, ms);
    const on = (b: Buffer, from: dgram.RemoteInfo) => { clearTimeout(t); resolve({ p: decodePacket(b), from }); };
    s.once('message', on);
  });
}

for (const nativeUdp of [true, false]) test(`relayed DISCOVER and the 4011 exchange over real sockets (loopback), ${nativeUdp ? 'native receive' : 'dgram'}`, async () => {
  const relay = await udp();
  const client = await udp();
  const metrics = new Registry();
  const srv = await startDhcp({
    mode: 'proxy', interfaces: ['lo'], ports: { server: 0, pxe: 0, relay: relay.address().port, client: client.address().port },
    decide: testDecider, logger: silentLogger(), metrics, nativeUdp,
  });
  try {
    assert.equal(srv.io.path, nativeUdp ? 'native' : 'dgram', srv.io.detail);
    assert.ok(srv.ports.server > 0 && srv.ports.pxe! > 0);
    relay.send(clientBuf({ type: MsgType.DISCOVER, mac: '52:54:00:00:01:01', arch: 0, giaddr: '127.0.0.1' }), srv.ports.server, '127.0.0.1');
    const offer = await next(relay);
    assert.equal(offer.from.port, srv.ports.server, 'answered from the DHCP port');
    assert.equal(offer.p.file, 'undionly.kpxe');
    assert.equal(offer.p.siaddr, '127.0.0.1');

    client.send(clientBuf({ type: MsgType.REQUEST, mac: '52:54:00:00:01:01', arch: 7, ciaddr: '127.0.0.1' }), srv.ports.pxe!, '127.0.0.1');
    const ack = await next(client);
    assert.equal(ack.from.port, srv.ports.pxe, 'answered from the 4011 port (iPXE checks)');
    assert.equal(ack.p.options.get(Opt.MESSAGE_TYPE)![0], MsgType.ACK);
    assert.equal(ack.p.file, 'ipxe.efi');

    client.send(Buffer.from('garbage'), srv.ports.server, '127.0.0.1');
    client.send(clientBuf({ type: MsgType.DISCOVER, mac: '52:54:00:00:01:02', vendorClass: 'MSFT 5.0', giaddr: '127.0.0.1' }), srv.ports.server, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(metrics.counter('swarmboot_dhcp_dropped_total', '').get({ reason: 'malformed_truncated' }), 1);
    assert.equal(metrics.counter('swarmboot_dhcp_dropped_total', '').get({ reason: 'not_pxe' }), 1);
    assert.equal(metrics.counter('swarmboot_dhcp_replies_total', '').get({ type: 'OFFER' }), 1);
    assert.equal(metrics.counter('swarmboot_dhcp_replies_total', '').get({ type: 'ACK' }), 1);

    // A datagram past the codec's 4096 bytes is refused as too large (natively: longer than a receive slot).
    client.send(Buffer.alloc(5000, 1), srv.ports.server, '127.0.0.1');
    // A burst: many datagrams per recvmmsg batch, each answered once, in order of arrival.
    const N = 2000;
    const got = new Set<number>();
    const all = new Promise<void>((resolve) => {
      relay.on('message', (b) => {
        got.add(decodePacket(b).xid);
        if (got.size === N) resolve();
      });
    });
    for (let i = 0; i < N; i++) {
      const mac = `52:54:00:01:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
      relay.send(clientBuf({ type: MsgType.DISCOVER, mac, xid: 0x1000 + i, arch: 0, giaddr: '127.0.0.1' }), srv.ports.server, '127.0.0.1');
      // Bursts of 100 back to back (several recvmmsg batches), then wait for their answers: the relay socket's
      // own receive buffer is not what is tested here.
      if (i % 100 === 99) {
        const until = Date.now() + 5000;
        while (got.size < i + 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 2));
      }
    }
    await Promise.race([all, new Promise((_, j) => setTimeout(() => j(new Error(`${got.size} of ${N} answered; server: ${metrics.render().split("\n").filter((l) => l.includes("dhcp_") && !l.startsWith("#")).join("; ")}`)), 10_000))]);
    assert.equal(metrics.counter('swarmboot_dhcp_dropped_total', '').get({ reason: 'malformed_too_large' }), 1);
    assert.equal(metrics.counter('swarmboot_dhcp_replies_total', '').get({ type: 'OFFER' }), 1 + N);
  } finally {
    await srv.close();
    relay.close();
    client.close();
  }
});

test('full mode over a relay on loopback: DORA, leases gauge', async () => {
  const relay = await udp();
  const metrics = new Registry();
  const srv = await startDhcp({
    mode: 'full', interfaces: ['lo'], ports: { server: 0, pxe: false, relay: relay.address().port },
    pools: [{ subnet: '127.0.0.0/8', rangeStart: '127.0.9.10', rangeEnd: '127.0.9.20' }],
    db: new DatabaseSync(':memory:'), decide: testDecider, logger: silentLogger(), metrics,
  });
  try {
    const mac = '52:54:00:00:02:01';
    relay.send(clientBuf({ type: MsgType.DISCOVER, mac, giaddr: '127.0.0.1' }), srv.ports.server, '127.0.0.1');
    const offer = await next(relay);
    assert.equal(offer.p.yiaddr, '127.0.9.10');
    relay.send(clientBuf({ type: MsgType.REQUEST, mac, giaddr: '127.0.0.1', serverId: '127.0.0.1', requestedIp: offer.p.yiaddr }), srv.ports.server, '127.0.0.1');
    const ack = await next(relay);
    assert.equal(ack.p.options.get(Opt.MESSAGE_TYPE)![0], MsgType.ACK);
    assert.match(metrics.render(), /swarmboot_dhcp_leases\{state="bound"\} 1/);
  } finally {
    await srv.close();
    relay.close();
  }
});

test('a server address on no served subnet is warned about at start, and each link advertises its own', async () => {
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, new Writable({ write(chunk, _e, cb) { for (const l of String(chunk).split('\n')) if (l) logs.push(JSON.parse(l)); cb(); } }));
  const client = await udp();
  const srv = await startDhcp({
    mode: 'proxy', interfaces: ['lo'], serverAddress: '10.1.2.3', ports: { server: 0, pxe: 0, client: client.address().port },
    decide: testDecider, logger, metrics: new Registry(),
  });
  try {
    const warn = logs.find((l) => l.level === 40 && l.interface === 'lo');
    assert.ok(warn, JSON.stringify(logs));
    assert.equal(warn.advertised, '127.0.0.1');
    assert.match(String(warn.msg), /10\.1\.2\.3 is not on lo's subnet: clients there are told 127\.0\.0\.1 instead/);
    client.send(clientBuf({ type: MsgType.REQUEST, mac: '52:54:00:00:01:03', arch: 0, ciaddr: '127.0.0.1' }), srv.ports.pxe!, '127.0.0.1');
    const ack = await next(client);
    assert.equal(ack.p.siaddr, '127.0.0.1');
    assert.equal(ack.p.options.get(Opt.SERVER_ID)!.join('.'), '127.0.0.1');
  } finally {
    await srv.close();
    client.close();
  }
});

test('a port already taken is refused with the port, the cause and the fix', async () => {
  const taken = await udp();
  const port = taken.address().port;
  try {
    await assert.rejects(
      startDhcp({ mode: 'proxy', interfaces: ['lo'], ports: { server: port, pxe: false }, decide: testDecider, logger: silentLogger(), metrics: new Registry() }),
      (e: Error) => e.message.includes(`:${port}`) && /already in use/.test(e.message) && /another DHCP server/.test(e.message),
    );
    // The 4011 port too.
    await assert.rejects(
      startDhcp({ mode: 'proxy', interfaces: ['lo'], ports: { server: 0, pxe: port }, decide: testDecider, logger: silentLogger(), metrics: new Registry() }),
      (e: Error) => e.message.includes(`:${port} (PXE boot server discovery)`),
    );
  } finally {
    taken.close();
  }
});

test('port 67 without privileges is refused with how to grant them', { timeout: 30_000, skip: process.getuid?.() !== 0 ? 'needs root to drop privileges in a throwaway namespace' : false }, async () => {
  // A throwaway network namespace (unshare -n) and an unprivileged user: nothing touches the host's port 67.
  const cfg = JSON.stringify({ mode: 'proxy', interfaces: ['lo'] });
  const out = await new Promise<string>((resolve) => {
    execFile('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$0" "$1" "$2"', NODE, path.join(ROOT, 'test/dhcp/runner.ts'), cfg],
      { timeout: 20_000 }, (_e, stdout, stderr) => resolve(stdout + stderr));
  });
  assert.match(out, /ERROR cannot listen on UDP 0\.0\.0\.0:67 \(DHCP\): permission denied.*root or CAP_NET_BIND_SERVICE/);
});

test('native sends: replies that find the send buffer full wait for room and go out in order', async () => {
  const { UdpReceiver } = await import('../../server/native-udp.ts');
  const relay = await udp();
  const metrics = new Registry();
  const srv = await startDhcp({
    mode: 'proxy', interfaces: ['lo'], ports: { server: 0, pxe: false, relay: relay.address().port }, decide: testDecider, logger: silentLogger(), metrics,
  });
  if (srv.io.path !== 'native') {
    await srv.close();
    relay.close();
    return; // no addon here: dgram queues by itself
  }
  const sendTo = UdpReceiver.prototype.sendTo;
  let calls = 0;
  let refused = 0;
  // Every fourth send finds the buffer full (EAGAIN), as a burst into a slow link would.
  UdpReceiver.prototype.sendTo = function (this: unknown, ...a: Parameters<typeof sendTo>) {
    if (++calls % 4 === 0) {
      refused++;
      return -11;
    }
    return sendTo.apply(this, a);
  };
  try {
    const xids: number[] = [];
    const N = 300;
    const all = new Promise<void>((resolve) => relay.on('message', (b) => { xids.push(decodePacket(b).xid); if (xids.length === N) resolve(); }));
    for (let i = 0; i < N; i++) {
      relay.send(clientBuf({ type: MsgType.DISCOVER, mac: `52:54:00:02:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, xid: i, arch: 0, giaddr: '127.0.0.1' }), srv.ports.server, '127.0.0.1');
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
    }
    await Promise.race([all, new Promise((_, j) => setTimeout(() => j(new Error(`${xids.length} of ${N} answered`)), 5000))]);
    assert.deepEqual(xids, Array.from({ length: N }, (_, i) => i), 'every reply once, in order');
    assert.ok(refused > 50);
    assert.equal(metrics.counter('swarmboot_dhcp_replies_total', '').get({ type: 'OFFER' }), N);
  } finally {
    UdpReceiver.prototype.sendTo = sendTo;
    await srv.close();
    relay.close();
  }
});
