import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Opt } from '../../server/dhcp/options.ts';
import { clientBuf, MsgType } from './packets.ts';
import { harness, iface, oneLink } from './harness.ts';

const MAC = '52:54:00:aa:bb:01';
const UUID = '00112233-4455-6677-8899-aabbccddeeff';

test('ProxyDHCP answers each firmware with its boot file and PXE options, never an address', () => {
  const t = harness({ mode: 'proxy' });
  const cases: Array<[number, string]> = [[0, 'undionly.kpxe'], [7, 'ipxe.efi'], [9, 'ipxe.efi'], [11, 'arm64/ipxe.efi']];
  for (const [arch, file] of cases) {
    const r = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch, uuid: UUID }));
    assert.equal(r.result, 'replied', `arch ${arch}`);
    assert.equal(r.out.length, 1);
    assert.ok(r.out[0]!.buf.length >= 300);
    assert.deepEqual(r.out[0]!.to, { kind: 'broadcast', link: t.topo.links[0] });
    const p = r.replies[0]!;
    assert.equal(p.op, 2);
    assert.equal(p.options.get(Opt.MESSAGE_TYPE)![0], MsgType.OFFER);
    assert.equal(p.yiaddr, '0.0.0.0');
    assert.equal(p.siaddr, '10.66.0.1');
    assert.equal(p.options.get(Opt.SERVER_ID)!.join('.'), '10.66.0.1');
    assert.equal(p.options.get(Opt.VENDOR_CLASS)!.toString(), 'PXEClient');
    assert.deepEqual([...p.options.get(Opt.VENDOR_SPECIFIC)!], [6, 1, 8, 255]);
    assert.equal(p.file, file);
    assert.equal(p.options.get(Opt.BOOTFILE)!.toString(), file);
    assert.equal(p.options.get(Opt.CLIENT_UUID)!.toString('hex'), '00' + UUID.replace(/-/g, ''));
    assert.equal(p.options.has(Opt.LEASE_TIME), false);
  }
});

test('UEFI HTTP boot (arch 16, HTTPClient) gets HTTPClient and a full URL', () => {
  const t = harness({ mode: 'proxy' });
  const r = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 16, vendorClass: 'HTTPClient:Arch:00016:UNDI:003016' }));
  const p = r.replies[0]!;
  assert.equal(p.options.get(Opt.VENDOR_CLASS)!.toString(), 'HTTPClient');
  assert.equal(p.options.get(Opt.BOOTFILE)!.toString(), 'http://10.66.0.1:8080/boot/ipxe-uefi-http-x64.efi');
  assert.equal(p.options.has(Opt.VENDOR_SPECIFIC), false);
  assert.equal(p.options.has(Opt.CLIENT_UUID), false, 'option 97 only echoed when sent');
});

test('the arch comes from option 60 when option 93 is missing', () => {
  const t = harness({ mode: 'proxy' });
  const r = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, vendorClass: 'PXEClient:Arch:00007:UNDI:003016' }));
  assert.equal(r.replies[0]!.file, 'ipxe.efi');
});

test('iPXE (user class or option 175) is sent its script URL, never iPXE again', () => {
  const t = harness({ mode: 'proxy' });
  const r = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 0, ipxe: true }));
  assert.equal(r.replies[0]!.options.get(Opt.BOOTFILE)!.toString(), `http://10.66.0.1:8080/boot/${MAC}.ipxe`);
});

test('non-PXE clients and server messages get nothing, counted as dropped', () => {
  const t = harness({ mode: 'proxy' });
  for (const vc of ['', 'MSFT 5.0', 'PXEClien', 'udhcp 1.36.1']) {
    const r = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, vendorClass: vc }));
    assert.equal(r.out.length, 0, vc);
    assert.equal(r.reason, 'not_pxe');
  }
  for (const type of [MsgType.RELEASE, MsgType.DECLINE, MsgType.INFORM]) {
    assert.equal(t.send(clientBuf({ type, mac: MAC, arch: 0 })).out.length, 0);
  }
  assert.equal(t.metrics.counter('swarmboot_dhcp_dropped_total', '').get({ reason: 'not_pxe' }), 4);
});

test('a REQUEST on port 67 is answered only when it names this server', () => {
  const t = harness({ mode: 'proxy' });
  assert.equal(t.send(clientBuf({ type: MsgType.REQUEST, mac: MAC, arch: 0, serverId: '10.66.0.2', requestedIp: '10.66.0.100' })).reason, 'other_server');
  const r = t.send(clientBuf({ type: MsgType.REQUEST, mac: MAC, arch: 0, serverId: '10.66.0.1' }));
  assert.equal(r.replies[0]!.options.get(Opt.MESSAGE_TYPE)![0], MsgType.ACK);
});

test('a REQUEST to port 4011 gets an ACK with the boot file, back to its sender, boot item echoed', () => {
  const t = harness({ mode: 'proxy' });
  const src = { address: '10.66.0.123', port: 68 };
  const r = t.send(clientBuf({ type: MsgType.REQUEST, mac: MAC, arch: 7, ciaddr: '10.66.0.123', bootItem: [0x8000, 0], uuid: UUID }), 'pxe', src);
  assert.deepEqual(r.out[0]!.to, { kind: 'source', ...src });
  const p = r.replies[0]!;
  assert.equal(p.options.get(Opt.MESSAGE_TYPE)![0], MsgType.ACK);
  assert.equal(p.ciaddr, '10.66.0.123');
  assert.equal(p.yiaddr, '0.0.0.0');
  assert.equal(p.file, 'ipxe.efi');
  assert.deepEqual([...p.options.get(Opt.VENDOR_SPECIFIC)!], [6, 1, 8, 71, 4, 0x80, 0, 0, 0, 255]);
  assert.equal(t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 7 }), 'pxe', src).reason, 'unexpected_type');
});

test('relayed requests are answered to the relay (giaddr)', () => {
  const t = harness({ mode: 'proxy' });
  const r = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 0, giaddr: '10.77.0.1' }), 'dhcp', { address: '10.77.0.1', port: 67 });
  assert.deepEqual(r.out[0]!.to, { kind: 'relay', address: '10.77.0.1' });
  assert.equal(r.replies[0]!.giaddr, '10.77.0.1');
});

test('multi-homed: an unplaceable broadcast is answered on every link, each with its own address', () => {
  const t = harness({ mode: 'proxy' }, { ...oneLink, eth1: [iface('192.168.5.1')] });
  const r = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 0 }));
  assert.equal(r.out.length, 2);
  assert.deepEqual(r.replies.map((p) => p.siaddr).sort(), ['10.66.0.1', '192.168.5.1']);
  assert.deepEqual(r.out.map((o) => o.to.kind === 'broadcast' && o.to.link.name).sort(), ['br0', 'eth1']);
  // A sender whose address places it on one link is answered there only.
  const one = t.send(clientBuf({ type: MsgType.INFORM, mac: MAC, arch: 0, ciaddr: '192.168.5.20', serverId: '192.168.5.1' }), 'dhcp', { address: '192.168.5.20', port: 68 });
  assert.equal(one.out.length, 0); // INFORM is not ProxyDHCP's
  const req = t.send(clientBuf({ type: MsgType.REQUEST, mac: MAC, arch: 0, ciaddr: '192.168.5.20', serverId: '192.168.5.1' }), 'dhcp', { address: '192.168.5.20', port: 68 });
  assert.equal(req.out.length, 1);
  assert.equal(req.replies[0]!.siaddr, '192.168.5.1');
});

test('serverAddress overrides the advertised address on its own subnet', () => {
  const t = harness({ mode: 'proxy', serverAddress: '10.66.0.9' });
  const p = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 0 })).replies[0]!;
  assert.equal(p.siaddr, '10.66.0.9');
  assert.equal(p.options.get(Opt.SERVER_ID)!.join('.'), '10.66.0.9');
});

test('multi-homed with serverAddress: each segment is told an address on its own subnet; relayed clients get serverAddress', () => {
  const t = harness({ mode: 'proxy', serverAddress: '10.66.0.9' }, { ...oneLink, eth1: [iface('192.168.5.1')] });
  const r = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 0, ipxe: true }));
  const bySegment = new Map(r.out.map((o, i) => [o.to.kind === 'broadcast' ? o.to.link.name : '?', r.replies[i]!]));
  assert.deepEqual([...bySegment.keys()].sort(), ['br0', 'eth1']);
  for (const [link, addr] of [['br0', '10.66.0.9'], ['eth1', '192.168.5.1']] as const) {
    const p = bySegment.get(link)!;
    assert.equal(p.siaddr, addr, link);
    assert.equal(p.options.get(Opt.SERVER_ID)!.join('.'), addr, link);
    assert.equal(p.options.get(Opt.BOOTFILE)!.toString(), `http://${addr}:8080/boot/${MAC}.ipxe`, `${link}: the script URL too`);
  }
  // The 4011 exchange from a client on eth1's subnet.
  const ack = t.send(clientBuf({ type: MsgType.REQUEST, mac: MAC, arch: 0, ciaddr: '192.168.5.20' }), 'pxe', { address: '192.168.5.20', port: 68 });
  assert.equal(ack.replies[0]!.siaddr, '192.168.5.1');
  // A relayed client reaches us through routers: the configured address.
  const relayed = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 0, giaddr: '10.77.0.1' }), 'dhcp', { address: '10.77.0.1', port: 67 });
  assert.equal(relayed.replies[0]!.siaddr, '10.66.0.9');
  // A REQUEST naming either address is ours.
  assert.equal(t.send(clientBuf({ type: MsgType.REQUEST, mac: MAC, arch: 0, serverId: '192.168.5.1' })).out.length, 2);
  assert.equal(t.send(clientBuf({ type: MsgType.REQUEST, mac: MAC, arch: 0, serverId: '10.66.0.9' })).out.length, 2);
});

test('the decider may refuse a machine; unknown architectures never crash', () => {
  const t = harness({ mode: 'proxy' }, oneLink, { capture: true });
  assert.equal(t.send(clientBuf({ type: MsgType.DISCOVER, mac: '02:00:00:00:00:ee', arch: 0 })).reason, 'decider_ignore');
  assert.equal(t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 0x1234 })).reason, 'decider_ignore');
  const warn = t.logs.find((l) => l.msg === 'unknown client architecture; boot policy decides');
  assert.equal(warn?.arch, 0x1234);
});

test('per-MAC rate limit: a looping client is cut off after its burst, others are not', () => {
  const t = harness({ mode: 'proxy', rateLimit: { burst: 5, perSecond: 1 } }, oneLink, { capture: true });
  const results = Array.from({ length: 8 }, () => t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 0 })).result);
  assert.deepEqual(results, ['replied', 'replied', 'replied', 'replied', 'replied', 'dropped', 'dropped', 'dropped']);
  assert.equal(t.send(clientBuf({ type: MsgType.DISCOVER, mac: '52:54:00:aa:bb:02', arch: 0 })).result, 'replied');
  assert.equal(t.logs.filter((l) => l.reason === 'rate_limited' && l.level === 40).length, 1, 'one warning per episode');
  t.clock.now += 2000;
  assert.equal(t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 0 })).result, 'replied');
});

test('each decision is logged once per transaction with MAC, firmware, answer and reason', () => {
  const t = harness({ mode: 'proxy' }, oneLink, { capture: true });
  const buf = clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 7, xid: 0x1234 });
  for (let i = 0; i < 3; i++) t.send(buf);
  const info = t.logs.filter((l) => l.level === 30 && l.mac === MAC);
  assert.equal(info.length, 1);
  assert.equal(info[0]!.component, 'dhcp');
  assert.equal(info[0]!.firmware, 'uefi-x64');
  assert.equal(info[0]!.answered, 'OFFER PXEClient ipxe.efi');
  assert.equal(info[0]!.why, 'UEFI x64: chainload iPXE');
  assert.equal(t.logs.filter((l) => l.level === 20 && l.mac === MAC).length, 2, 'retransmissions at debug');
});

test('a decider that throws costs one packet, not the daemon', () => {
  const t = harness({ mode: 'proxy', decide: () => { throw new Error('policy bug'); } }, oneLink, { capture: true });
  const r = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 0 }));
  assert.equal(r.result, 'dropped');
  assert.equal(r.reason, 'internal');
  assert.ok(t.logs.some((l) => l.level === 40 && String(l.err).includes('policy bug')));
});
