import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Opt } from '../../server/dhcp/options.ts';
import { DhcpConfigError, resolveTopology } from '../../server/dhcp/networks.ts';
import { LeaseStore } from '../../server/dhcp/leases.ts';
import { parseIp } from '../../server/dhcp/ip.ts';
import { silentLogger } from '../../server/log.ts';
import { Registry } from '../../server/metrics.ts';
import type { DhcpOptions } from '../../server/dhcp/types.ts';
import { clientBuf, MsgType, type ClientOpts } from './packets.ts';
import { harness, iface, oneLink, type Harness } from './harness.ts';
import { testDecider } from './decider.ts';

const pool = { subnet: '10.66.0.0/24', rangeStart: '10.66.0.100', rangeEnd: '10.66.0.102', router: '10.66.0.1', dns: ['10.66.0.1'], domain: 'lab', leaseSeconds: 600 };
const A = '52:54:00:00:00:0a';
const B = '52:54:00:00:00:0b';
const C = '52:54:00:00:00:0c';
const type = (t: Harness, o: ClientOpts) => {
  const r = t.send(clientBuf(o));
  const p = r.replies[0];
  return { r, p, t: p?.options.get(Opt.MESSAGE_TYPE)?.[0] };
};

function dora(t: Harness, mac: string, extra: Partial<ClientOpts> = {}): string {
  const offer = type(t, { type: MsgType.DISCOVER, mac, ...extra });
  assert.equal(offer.t, MsgType.OFFER, `offer for ${mac}: ${offer.r.reason}`);
  const ack = type(t, { type: MsgType.REQUEST, mac, serverId: '10.66.0.1', requestedIp: offer.p!.yiaddr, ...extra });
  assert.equal(ack.t, MsgType.ACK, `ack for ${mac}`);
  return ack.p!.yiaddr;
}

test('DISCOVER/OFFER/REQUEST/ACK with lease options, lease bound in the database', () => {
  const t = harness({ mode: 'full', pools: [pool] });
  const offer = type(t, { type: MsgType.DISCOVER, mac: A });
  assert.equal(offer.p!.yiaddr, '10.66.0.100');
  assert.deepEqual(offer.r.out[0]!.to, { kind: 'broadcast', link: t.topo.links[0] });
  assert.equal(t.store!.get(0x0a420064)!.state, 'offered');
  const ack = type(t, { type: MsgType.REQUEST, mac: A, serverId: '10.66.0.1', requestedIp: '10.66.0.100' });
  const o = ack.p!.options;
  assert.equal(ack.t, MsgType.ACK);
  assert.equal(o.get(Opt.LEASE_TIME)!.readUInt32BE(0), 600);
  assert.equal(o.get(Opt.RENEWAL_T1)!.readUInt32BE(0), 300);
  assert.equal(o.get(Opt.REBINDING_T2)!.readUInt32BE(0), 525);
  assert.equal(o.get(Opt.SUBNET_MASK)!.join('.'), '255.255.255.0');
  assert.equal(o.get(Opt.ROUTER)!.join('.'), '10.66.0.1');
  assert.equal(o.get(Opt.DNS)!.join('.'), '10.66.0.1');
  assert.equal(o.get(Opt.DOMAIN)!.toString(), 'lab');
  assert.equal(o.get(Opt.SERVER_ID)!.join('.'), '10.66.0.1');
  assert.equal(o.has(Opt.VENDOR_CLASS), false, 'no PXE options for a non-PXE client');
  const row = t.opts.db!.prepare('SELECT * FROM dhcp_leases').get() as Record<string, unknown>;
  assert.equal(row.ip, '10.66.0.100');
  assert.equal(row.mac, A);
  assert.equal(row.state, 'bound');
  assert.equal(row.expires_at, t.clock.now + 600_000);
});

test('PXE clients get an address and their boot file in the same OFFER/ACK', () => {
  const t = harness({ mode: 'full', pools: [pool] });
  const offer = type(t, { type: MsgType.DISCOVER, mac: A, arch: 7 });
  assert.equal(offer.p!.yiaddr, '10.66.0.100');
  assert.equal(offer.p!.file, 'ipxe.efi');
  assert.equal(offer.p!.siaddr, '10.66.0.1');
  assert.equal(offer.p!.options.get(Opt.VENDOR_CLASS)!.toString(), 'PXEClient');
  const ack = type(t, { type: MsgType.REQUEST, mac: A, arch: 7, ipxe: true, serverId: '10.66.0.1', requestedIp: '10.66.0.100' });
  assert.equal(ack.p!.options.get(Opt.BOOTFILE)!.toString(), `http://10.66.0.1:8080/boot/${A}.ipxe`);
});

test('never one address for two clients; an exhausted pool offers nothing', () => {
  const t = harness({ mode: 'full', pools: [pool] });
  const ips = [A, B, C].map((m) => dora(t, m));
  assert.equal(new Set(ips).size, 3);
  const d = type(t, { type: MsgType.DISCOVER, mac: '52:54:00:00:00:0d' });
  assert.equal(d.r.reason, 'no_address');
  // Asking for someone else's address: NAK, and the owner keeps it.
  const steal = type(t, { type: MsgType.REQUEST, mac: '52:54:00:00:00:0d', requestedIp: ips[0] });
  assert.equal(steal.t, MsgType.NAK);
  assert.equal(t.store!.get(0x0a420064)!.mac, A);
  // The same client asking again keeps its address.
  assert.equal(dora(t, B), ips[1]);
});

test('reservations: the machine always gets its address and hostname; nobody else does', () => {
  const t = harness({ mode: 'full', pools: [pool], reservations: [{ mac: '52-54-00-00-00-0C', ip: '10.66.0.101', hostname: 'node-c' }] });
  assert.equal(dora(t, A), '10.66.0.100');
  assert.equal(dora(t, B), '10.66.0.102', 'B skips the reserved .101');
  const offer = type(t, { type: MsgType.DISCOVER, mac: C });
  assert.equal(offer.p!.yiaddr, '10.66.0.101');
  assert.equal(offer.p!.options.get(Opt.HOSTNAME)!.toString(), 'node-c');
  assert.equal(type(t, { type: MsgType.REQUEST, mac: C, requestedIp: '10.66.0.100' }).t, MsgType.NAK);
  assert.equal(type(t, { type: MsgType.REQUEST, mac: A, requestedIp: '10.66.0.101' }).t, MsgType.NAK);
});

test('choosing another server releases our offer silently', () => {
  const t = harness({ mode: 'full', pools: [pool] });
  type(t, { type: MsgType.DISCOVER, mac: A });
  const r = type(t, { type: MsgType.REQUEST, mac: A, serverId: '10.66.0.250', requestedIp: '10.66.0.200' });
  assert.equal(r.r.out.length, 0);
  assert.equal(r.r.reason, 'other_server');
  assert.equal(t.store!.get(0x0a420064)!.state, 'released');
});

test('INIT-REBOOT, RENEWING and REBINDING', () => {
  const t = harness({ mode: 'full', pools: [pool] });
  const ip = dora(t, A);
  t.clock.now += 300_000;
  const reboot = type(t, { type: MsgType.REQUEST, mac: A, requestedIp: ip });
  assert.equal(reboot.t, MsgType.ACK);
  assert.equal(type(t, { type: MsgType.REQUEST, mac: A, requestedIp: '192.168.1.5' }).t, MsgType.NAK, 'wrong network');
  const renew = type(t, { type: MsgType.REQUEST, mac: A, ciaddr: ip, broadcast: false });
  assert.equal(renew.t, MsgType.ACK);
  assert.deepEqual(renew.r.out[0]!.to, { kind: 'client', address: ip });
  assert.equal(renew.p!.ciaddr, ip);
  assert.equal(t.store!.get(0x0a420064)!.expiresAt, t.clock.now + 600_000, 'renewal extends the lease');
  // An expired lease nobody else took is still its owner's.
  t.clock.now += 3_600_000;
  assert.equal(type(t, { type: MsgType.REQUEST, mac: A, ciaddr: ip }).t, MsgType.ACK);
  // A claim on an address in range we have no record of: granted (authoritative), unless not authoritative.
  assert.equal(type(t, { type: MsgType.REQUEST, mac: B, requestedIp: '10.66.0.102' }).t, MsgType.ACK);
  const shy = harness({ mode: 'full', pools: [pool], authoritative: false });
  assert.equal(type(shy, { type: MsgType.REQUEST, mac: B, requestedIp: '10.66.0.102' }).r.reason, 'unknown_client');
  assert.equal(type(t, { type: MsgType.REQUEST, mac: C, requestedIp: '10.66.0.50' }).t, MsgType.NAK, 'outside the range');
});

test('RELEASE frees the address; DECLINE quarantines it', () => {
  const t = harness({ mode: 'full', pools: [{ ...pool, rangeEnd: '10.66.0.101' }], declineHoldSeconds: 600 });
  const a = dora(t, A);
  const b = dora(t, B);
  assert.equal(type(t, { type: MsgType.DISCOVER, mac: C }).r.reason, 'no_address');
  const rel = t.send(clientBuf({ type: MsgType.RELEASE, mac: A, ciaddr: a, serverId: '10.66.0.1' }));
  assert.equal(rel.result, 'handled');
  assert.equal(t.store!.get(0x0a420064)!.state, 'released');
  assert.equal(dora(t, C), a, 'released address goes to the next client');
  // C finds the address in use (ARP) and declines it: nobody gets it for a while.
  t.send(clientBuf({ type: MsgType.DECLINE, mac: C, requestedIp: a, serverId: '10.66.0.1' }));
  assert.equal(t.store!.get(0x0a420064)!.state, 'declined');
  assert.equal(type(t, { type: MsgType.DISCOVER, mac: C }).r.reason, 'no_address');
  t.clock.now += 601_000;
  assert.equal(type(t, { type: MsgType.DISCOVER, mac: C }).p!.yiaddr, a);
  // Releasing someone else's lease does nothing.
  assert.equal(t.send(clientBuf({ type: MsgType.RELEASE, mac: A, ciaddr: b })).reason, 'unknown_lease');
  assert.equal(t.store!.get(0x0a420065)!.state, 'bound');
});

test('INFORM gets configuration without an address or lease time', () => {
  const t = harness({ mode: 'full', pools: [pool] });
  const r = t.send(clientBuf({ type: MsgType.INFORM, mac: A, ciaddr: '10.66.0.7', arch: 0 }), 'dhcp', { address: '10.66.0.7', port: 68 });
  const p = r.replies[0]!;
  assert.equal(p.options.get(Opt.MESSAGE_TYPE)![0], MsgType.ACK);
  assert.equal(p.yiaddr, '0.0.0.0');
  assert.equal(p.options.has(Opt.LEASE_TIME), false);
  assert.equal(p.file, 'undionly.kpxe');
  assert.deepEqual(r.out[0]!.to, { kind: 'source', address: '10.66.0.7', port: 68 });
});

test('relays: the subnet comes from giaddr, the answer goes to the relay', () => {
  const remote = { subnet: '10.77.0.0/24', rangeStart: '10.77.0.50', rangeEnd: '10.77.0.60', router: '10.77.0.1' };
  const t = harness({ mode: 'full', pools: [pool, remote] });
  const offer = type(t, { type: MsgType.DISCOVER, mac: A, giaddr: '10.77.0.1', arch: 0 });
  assert.equal(offer.p!.yiaddr, '10.77.0.50');
  assert.equal(offer.p!.options.get(Opt.ROUTER)!.join('.'), '10.77.0.1');
  assert.equal(offer.p!.file, 'undionly.kpxe');
  assert.deepEqual(offer.r.out[0]!.to, { kind: 'relay', address: '10.77.0.1' });
  const nak = type(t, { type: MsgType.REQUEST, mac: A, giaddr: '10.77.0.1', requestedIp: '10.66.0.100' });
  assert.equal(nak.t, MsgType.NAK);
  assert.ok(nak.p!.flags & 0x8000, 'NAK via relay asks for broadcast');
  assert.equal(type(t, { type: MsgType.DISCOVER, mac: A, giaddr: '10.99.0.1' }).r.reason, 'no_pool');
});

test('leases survive a restart (new store on the same database file)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sbdhcp-'));
  try {
    const file = path.join(dir, 'state.db');
    const db1 = new DatabaseSync(file);
    db1.exec('PRAGMA journal_mode=WAL');
    const t1 = harness({ mode: 'full', pools: [pool], db: db1 });
    const ip = dora(t1, A);
    db1.close();
    const db2 = new DatabaseSync(file);
    const t2 = harness({ mode: 'full', pools: [pool], db: db2 });
    t2.clock.now = t1.clock.now + 1000;
    // Another machine asks first. An authoritative server ACKs any free address it has no record
    // of, so A's own renewal proves nothing until the lease is known to be held: only B can.
    const offerB = type(t2, { type: MsgType.DISCOVER, mac: B });
    assert.equal(offerB.t, MsgType.OFFER);
    assert.notEqual(offerB.p!.yiaddr, ip, 'B is not offered the address A holds');
    const claimB = type(t2, { type: MsgType.REQUEST, mac: B, requestedIp: ip });
    assert.equal(claimB.t, MsgType.NAK, 'B cannot claim it either (INIT-REBOOT)');
    assert.equal(t2.store!.get(0x0a420064)!.mac, A);
    // Then A renews and keeps it.
    assert.equal(type(t2, { type: MsgType.REQUEST, mac: A, ciaddr: ip }).t, MsgType.ACK, 'renewal after restart');
    assert.equal(type(t2, { type: MsgType.DISCOVER, mac: A }).p!.yiaddr, ip, 'same address after restart');
    db2.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('offers live in memory only; once every address was used, the one free the longest is reused', () => {
  const t = harness({ mode: 'full', pools: [{ ...pool, rangeEnd: '10.66.0.103' }] });
  const t0 = t.clock.now;
  const macs = ['52:54:00:00:01:01', '52:54:00:00:01:02', '52:54:00:00:01:03', '52:54:00:00:01:04'];
  const ips = macs.map((m, i) => { t.clock.now = t0 + i * 1000; return dora(t, m); });
  assert.deepEqual(ips, ['10.66.0.100', '10.66.0.101', '10.66.0.102', '10.66.0.103']);
  const E = '52:54:00:00:01:0e';
  assert.equal(type(t, { type: MsgType.DISCOVER, mac: E }).r.reason, 'no_address');
  // The second machine leaves: its address is the only free one.
  t.clock.now = t0 + 10_000;
  t.send(clientBuf({ type: MsgType.RELEASE, mac: macs[1]!, ciaddr: ips[1], serverId: '10.66.0.1' }));
  t.clock.now = t0 + 20_000;
  assert.equal(type(t, { type: MsgType.DISCOVER, mac: E }).p!.yiaddr, '10.66.0.101');
  const rows = () => t.opts.db!.prepare('SELECT ip, mac, state FROM dhcp_leases ORDER BY ip').all().map((r) => `${r.ip} ${r.state}`);
  assert.deepEqual(rows(), ['10.66.0.100 bound', '10.66.0.101 released', '10.66.0.102 bound', '10.66.0.103 bound'], 'the offer is not written');
  assert.equal(type(t, { type: MsgType.DISCOVER, mac: C }).r.reason, 'no_address', 'E\'s offer is held');
  // Everything has expired: E's offer (at +80 s) first, then the leases in the order they were taken.
  t.clock.now = t0 + 700_000;
  const next = ['52:54:00:00:02:01', '52:54:00:00:02:02', '52:54:00:00:02:03'].map((m) => type(t, { type: MsgType.DISCOVER, mac: m }).p!.yiaddr);
  assert.deepEqual(next, ['10.66.0.101', '10.66.0.100', '10.66.0.102']);
});

test('allocation stays fast in a large pool: 70,000 distinct machines in a /16', () => {
  const big = { subnet: '10.66.0.0/16', rangeStart: '10.66.0.10', rangeEnd: '10.66.255.250' };
  const t = harness({ mode: 'full', pools: [big], offerHoldSeconds: 5, rateLimit: { burst: 1e9, perSecond: 1e9 } }, { br0: [iface('10.66.0.1', '255.255.0.0')] });
  const seen = new Set<string>();
  const t0 = performance.now();
  for (let i = 0; i < 70_000; i++) {
    if (i === 65_000) t.clock.now += 6000; // the first offers have lapsed: the pool wraps around
    const mac = `02:00:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
    const r = t.send(clientBuf({ type: MsgType.DISCOVER, mac, xid: i }));
    assert.equal(r.result, 'replied', `machine ${i}: ${r.reason}`);
    seen.add(r.replies[0]!.yiaddr);
  }
  const ms = performance.now() - t0;
  assert.equal(seen.size, 255 * 256 + 250 - 10 + 1, 'every address of the range, then the lapsed offers again');
  // A scan per DISCOVER would take minutes here; this is seconds even on a loaded machine.
  assert.ok(ms < 30_000, `${ms.toFixed(0)} ms`);
});

test('a storm of one-off MACs: unanswered offers are forgotten once they lapse, their addresses reused, memory bounded', () => {
  // A /20: 4,000-odd addresses for 15 waves of 2,000 machines that DISCOVER once and never REQUEST.
  const pool = { subnet: '10.66.0.0/20', rangeStart: '10.66.0.10', rangeEnd: '10.66.15.250' };
  const t = harness({ mode: 'full', pools: [pool], offerHoldSeconds: 5, rateLimit: { burst: 1e9, perSecond: 1e9 } }, { br0: [iface('10.66.0.1', '255.255.240.0')] });
  const everUsed = new Set<string>();
  let n = 0;
  for (let wave = 0; wave < 15; wave++) {
    const live = new Set<string>();
    for (let i = 0; i < 2000; i++, n++) {
      const mac = `02:01:00:${((n >> 16) & 255).toString(16).padStart(2, '0')}:${((n >> 8) & 255).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`;
      const r = t.send(clientBuf({ type: MsgType.DISCOVER, mac, xid: n }));
      assert.equal(r.result, 'replied', `wave ${wave} machine ${i}: ${r.reason}`);
      const ip = r.replies[0]!.yiaddr;
      assert.ok(!live.has(ip), `${ip} offered twice while both offers are held`);
      live.add(ip);
      everUsed.add(ip);
    }
    // The table holds this wave's offers and what is left of the last one, never the whole pool's history.
    assert.ok(t.store!.all().length <= 4000, `wave ${wave}: ${t.store!.all().length} leases in memory`);
    t.clock.now += 6000; // this wave's offers lapse unanswered
  }
  assert.equal(everUsed.size, 16 * 256 - 10 - 5, 'every address of the range served, no more');
  // A machine that does answer keeps its address as before: offer, then REQUEST binds it, and pruning leaves it.
  const r = t.send(clientBuf({ type: MsgType.DISCOVER, mac: A, xid: 1 }));
  const ip = r.replies[0]!.yiaddr;
  t.send(clientBuf({ type: MsgType.REQUEST, mac: A, xid: 1, requestedIp: ip, serverId: '10.66.0.1' }));
  t.clock.now += 6000;
  for (let i = 0; i < 100; i++) t.send(clientBuf({ type: MsgType.DISCOVER, mac: `02:02:00:00:00:${i.toString(16).padStart(2, '0')}`, xid: i }));
  const l = t.store!.get(parseIp(ip)!);
  assert.equal(l?.state, 'bound');
  assert.equal(l?.mac, A);
});

test('the database refuses two clients on one address even if memory were wrong', () => {
  const db = new DatabaseSync(':memory:');
  new LeaseStore(db);
  db.prepare("INSERT INTO dhcp_leases VALUES ('10.66.0.100', ?, 'bound', 1, NULL, 1)").run(A);
  assert.throws(() => db.prepare("INSERT INTO dhcp_leases VALUES ('10.66.0.100', ?, 'bound', 1, NULL, 1)").run(B), /UNIQUE/);
  new LeaseStore(db); // idempotent schema
});

test('the leases gauge and configuration errors', () => {
  const base: DhcpOptions = { mode: 'full', decide: testDecider, logger: silentLogger(), metrics: new Registry(), db: new DatabaseSync(':memory:') };
  const two = { ...oneLink, eth1: [iface('10.88.0.1')] };
  const err = (o: Partial<DhcpOptions>, ifaces: Parameters<typeof resolveTopology>[1] = oneLink) => {
    try { resolveTopology({ ...base, ...o }, ifaces); } catch (e) { assert.ok(e instanceof DhcpConfigError); return e.message; }
    assert.fail('accepted');
  };
  assert.match(err({ pools: [pool, { subnet: '10.88.0.0/24', rangeStart: '10.88.0.10', rangeEnd: '10.88.0.20' }] }, two), /more than one interface.*relay/);
  assert.match(err({ pools: [pool], db: undefined }), /database/);
  assert.match(err({ pools: [] }), /at least one pool/);
  assert.match(err({ pools: [{ ...pool, rangeEnd: '10.67.0.5' }] }), /not inside/);
  assert.match(err({ pools: [pool, { ...pool, subnet: '10.66.0.0/16', rangeStart: '10.66.1.1', rangeEnd: '10.66.1.9' }] }), /overlap/);
  assert.match(err({ pools: [pool], reservations: [{ mac: A, ip: '10.99.0.1' }] }), /no pool/);
  assert.match(err({ pools: [pool], reservations: [{ mac: A, ip: '10.66.0.5' }, { mac: B, ip: '10.66.0.5' }] }), /both/);
  assert.match(err({ pools: [pool], reservations: [{ mac: 'zz', ip: '10.66.0.5' }] }), /not a MAC/);
  assert.match(err({ pools: [pool], interfaces: ['eth9'] }), /does not exist/);
  assert.match(err({ pools: [pool], interfaces: ['br0', 'eth1'] }, two), /eth1.*no pool/);
  // One attached pool plus relay-only pools on a two-interface host is fine.
  resolveTopology({ ...base, pools: [pool, { subnet: '10.77.0.0/24', rangeStart: '10.77.0.10', rangeEnd: '10.77.0.20' }] }, two);

  const t = harness({ mode: 'full', pools: [pool] });
  dora(t, A);
  type(t, { type: MsgType.DISCOVER, mac: B });
  assert.deepEqual(t.store!.counts(t.clock.now), { offered: 1, bound: 1, released: 0, declined: 0, expired: 0 });
});

test('serverAddress is option 54 only on its own subnet: a pool on another interface names that interface', () => {
  const two = { ...oneLink, eth1: [iface('10.88.0.1')] };
  const remote = { subnet: '10.77.0.0/24', rangeStart: '10.77.0.50', rangeEnd: '10.77.0.60' };
  const t = harness({ mode: 'full', pools: [{ subnet: '10.88.0.0/24', rangeStart: '10.88.0.100', rangeEnd: '10.88.0.102' }, remote], serverAddress: '10.66.0.9' }, two);
  const offer = type(t, { type: MsgType.DISCOVER, mac: A, arch: 0 });
  assert.equal(offer.p!.yiaddr, '10.88.0.100');
  assert.equal(offer.p!.options.get(Opt.SERVER_ID)!.join('.'), '10.88.0.1');
  assert.equal(offer.p!.siaddr, '10.88.0.1');
  assert.equal(type(t, { type: MsgType.REQUEST, mac: A, serverId: '10.88.0.1', requestedIp: '10.88.0.100' }).t, MsgType.ACK);
  const relayed = type(t, { type: MsgType.DISCOVER, mac: B, giaddr: '10.77.0.1', arch: 0 });
  assert.equal(relayed.p!.options.get(Opt.SERVER_ID)!.join('.'), '10.66.0.9', 'routed clients get the configured address');
});

test('full mode answers the 4011 boot server exchange like ProxyDHCP', () => {
  const t = harness({ mode: 'full', pools: [pool] });
  const r = t.send(clientBuf({ type: MsgType.REQUEST, mac: A, arch: 0, ciaddr: '10.66.0.100' }), 'pxe', { address: '10.66.0.100', port: 68 });
  assert.equal(r.replies[0]!.file, 'undionly.kpxe');
  assert.equal(r.replies[0]!.yiaddr, '0.0.0.0');
  assert.equal(t.store!.all().length, 0, 'no lease touched');
});
