/**
 * Real peers on a private segment (network namespaces this test creates and deletes): busybox
 * udhcpc against full mode; dnsmasq as the site's DHCP server beside swarmboot's ProxyDHCP with a
 * firmware-like PXE client; dnsmasq as a DHCP relay (giaddr) in front of full mode. Addresses are
 * 10.66.0.0/24 and 10.77.0.0/24 inside the namespaces only; nothing is routed out.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Lab, missingPrereq, NODE, ROOT, waitFor } from './netns.ts';
import type { Summary } from './pxeclient.ts';

const skip = missingPrereq(['busybox', 'dnsmasq']);
const UUID = '4c4c4544-0042-3510-8052-b4c04f4d4d31';

function udhcpcScript(lab: Lab, name: string): { script: string; log: string } {
  const log = path.join(lab.tmp, `${name}.log`);
  const script = path.join(lab.tmp, `${name}.sh`);
  writeFileSync(script, `#!/bin/sh
echo "$1 ip=$ip mask=$mask router=$router serverid=$serverid lease=$lease" >> ${log}
case "$1" in
  deconfig) ip addr flush dev "$interface" ;;
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface" ;;
esac
exit 0
`);
  chmodSync(script, 0o755);
  writeFileSync(log, '');
  return { script, log };
}

const events = (log: string) => readFileSync(log, 'utf8').split('\n').filter(Boolean);

function leaseRow(dbFile: string, ip: string): { mac: string; state: string; expires_at: number } | undefined {
  const db = new DatabaseSync(dbFile, { readOnly: true });
  try {
    return db.prepare('SELECT mac, state, expires_at FROM dhcp_leases WHERE ip = ?').get(ip) as never;
  } finally {
    db.close();
  }
}

async function pxeClient(lab: Lab, ns: string, cfg: object): Promise<{ offers: Summary[]; ack?: Summary; proxyAck?: Summary; error?: string }> {
  const c = lab.spawn(ns, NODE, [path.join(ROOT, 'test/dhcp/pxeclient.ts'), JSON.stringify(cfg)]);
  const line = await c.line(/^\{/, 15_000);
  await c.exited;
  return JSON.parse(line);
}

describe('real peers in network namespaces', { skip, timeout: 180_000 }, () => {
  test('udhcpc against full mode: address, renew, restart keeps the lease, release frees it', async () => {
    const lab = new Lab();
    try {
      const srv = lab.addNs('srv');
      const cli = lab.addNs('cli');
      const cl2 = lab.addNs('cl2');
      lab.bridge(srv, '10.66.0.1/24');
      lab.link(srv, 'vcli', cli, 'eth0', { mac: '52:54:00:66:00:01' });
      lab.link(srv, 'vcl2', cl2, 'eth0', { mac: '52:54:00:66:00:02' });
      const dbFile = path.join(lab.tmp, 'state.db');
      // One address in the pool: two clients can never both have it.
      const cfg = { mode: 'full', interfaces: ['br0'], db: dbFile, pools: [{ subnet: '10.66.0.0/24', rangeStart: '10.66.0.100', rangeEnd: '10.66.0.100', router: '10.66.0.1', leaseSeconds: 600 }], logLevel: 'debug', logFile: path.join(lab.tmp, 'dhcp.log') };
      let daemon = await lab.dhcp(srv, cfg);

      const a = udhcpcScript(lab, 'a');
      const udhcpc = lab.spawn(cli, 'busybox', ['udhcpc', '-i', 'eth0', '-f', '-s', a.script, '-t', '5', '-T', '1', '-A', '1']);
      await waitFor('udhcpc bound', () => events(a.log).find((l) => l.startsWith('bound')));
      assert.match(events(a.log).find((l) => l.startsWith('bound'))!, /^bound ip=10\.66\.0\.100 mask=24 router=10\.66\.0\.1 serverid=10\.66\.0\.1 lease=600/);
      await waitFor('address configured', () => /inet 10\.66\.0\.100\/24/.test(lab.ip('-n', cli, '-4', 'addr', 'show', 'eth0')));
      const bound = leaseRow(dbFile, '10.66.0.100')!;
      assert.equal(bound.mac, '52:54:00:66:00:01');
      assert.equal(bound.state, 'bound');

      // Renew (unicast REQUEST with ciaddr).
      await new Promise((r) => setTimeout(r, 1100));
      udhcpc.proc.kill('SIGUSR1');
      await waitFor('renew', () => events(a.log).find((l) => l.startsWith('renew ip=10.66.0.100')));
      assert.ok(leaseRow(dbFile, '10.66.0.100')!.expires_at > bound.expires_at, 'renewal extended the lease');

      // A second machine finds the only address taken and gets nothing.
      const b = udhcpcScript(lab, 'b');
      const first = lab.spawn(cl2, 'busybox', ['udhcpc', '-i', 'eth0', '-f', '-n', '-q', '-s', b.script, '-t', '2', '-T', '1']);
      assert.equal(await first.exited, 1, 'no lease while the address is held');

      // Restart the daemon. B asks first: a server that had lost its leases would hand B the only
      // address (and then ACK A's renewal of it too, as authoritative servers do for addresses
      // they have no record of), so only B's attempt shows the lease survived.
      await daemon.stop();
      daemon = await lab.dhcp(srv, cfg);
      const second = lab.spawn(cl2, 'busybox', ['udhcpc', '-i', 'eth0', '-f', '-n', '-q', '-s', b.script, '-t', '2', '-T', '1']);
      assert.equal(await second.exited, 1, 'no lease for B after the restart: A still holds the address');
      assert.ok(!events(b.log).some((l) => l.startsWith('bound')), events(b.log).join('\n'));
      assert.equal(leaseRow(dbFile, '10.66.0.100')!.mac, '52:54:00:66:00:01');
      // Then A renews and keeps it.
      const renewsBefore = events(a.log).filter((l) => l.startsWith('renew')).length;
      udhcpc.proc.kill('SIGUSR1');
      await waitFor('renew after restart', () => events(a.log).filter((l) => l.startsWith('renew ip=10.66.0.100')).length > renewsBefore);
      assert.ok(!events(a.log).some((l) => l.startsWith('nak')));
      assert.equal(leaseRow(dbFile, '10.66.0.100')!.mac, '52:54:00:66:00:01');

      // Release: A lets go, and B gets the address.
      udhcpc.proc.kill('SIGUSR2');
      await waitFor('release recorded', () => leaseRow(dbFile, '10.66.0.100')?.state === 'released');
      const third = lab.spawn(cl2, 'busybox', ['udhcpc', '-i', 'eth0', '-f', '-n', '-q', '-s', b.script, '-t', '3', '-T', '1']);
      assert.equal(await third.exited, 0);
      assert.match(events(b.log).find((l) => l.startsWith('bound'))!, /ip=10\.66\.0\.100 /);
      assert.equal(leaseRow(dbFile, '10.66.0.100')!.mac, '52:54:00:66:00:02');
      await udhcpc.stop();
      await daemon.stop();
    } finally {
      await lab.cleanup();
    }
  });

  describe('dnsmasq hands out addresses, swarmboot ProxyDHCP the boot files', () => {
    let lab: Lab;
    let srv = '';
    let cli = '';
    let daemon: Awaited<ReturnType<Lab['dhcp']>> | undefined;
    before(async () => {
      lab = new Lab();
      srv = lab.addNs('srv');
      cli = lab.addNs('cli');
      const site = lab.addNs('dns');
      lab.bridge(srv, '10.66.0.1/24');
      lab.link(srv, 'vcli', cli, 'eth0');
      lab.link(srv, 'vdns', site, 'eth0', { cidr: '10.66.0.2/24' });
      lab.spawn(site, 'dnsmasq', ['-k', '--conf-file=/dev/null', '--port=0', '--user=root', '--interface=eth0', '--bind-interfaces', '--no-ping',
        '--dhcp-range=10.66.0.150,10.66.0.199,255.255.255.0,1h', `--dhcp-leasefile=${lab.tmp}/dnsmasq.leases`, `--pid-file=${lab.tmp}/dnsmasq.pid`,
        `--log-facility=${lab.tmp}/dnsmasq.log`, '--log-dhcp']);
      daemon = await lab.dhcp(srv, { mode: 'proxy', interfaces: ['br0'], logLevel: 'debug', logFile: path.join(lab.tmp, 'dhcp.log') });
      await waitFor('dnsmasq up', () => { try { return readFileSync(`${lab.tmp}/dnsmasq.log`, 'utf8').includes('DHCP, IP range'); } catch { return false; } });
    });
    after(async () => { await lab?.cleanup(); });

    const cases: Array<[number, string, string, string]> = [
      [0, 'PXEClient', 'undionly.kpxe', '52:54:00:77:00:00'],
      [7, 'PXEClient', 'ipxe.efi', '52:54:00:77:00:07'],
      [9, 'PXEClient', 'ipxe.efi', '52:54:00:77:00:09'],
      [11, 'PXEClient', 'arm64/ipxe.efi', '52:54:00:77:00:0b'],
      [16, 'HTTPClient', 'http://10.66.0.1:8080/boot/ipxe-uefi-http-x64.efi', '52:54:00:77:00:10'],
    ];
    for (const [arch, cls, file, mac] of cases) {
      test(`arch ${arch}: address from dnsmasq, ${file} from swarmboot, then the 4011 exchange`, async () => {
        const r = await pxeClient(lab, cli, { mac, arch, uuid: UUID, configure: true, pxe4011: true, vendorClass: `${cls}:Arch:${String(arch).padStart(5, '0')}:UNDI:003016` });
        assert.equal(r.error, undefined);
        const site = r.offers.find((o) => o.serverId === '10.66.0.2');
        const proxy = r.offers.find((o) => o.serverId === '10.66.0.1');
        assert.ok(site, `dnsmasq offered: ${JSON.stringify(r.offers)}`);
        assert.match(site.yiaddr, /^10\.66\.0\.1[5-9]\d$/);
        assert.ok(proxy, `swarmboot offered: ${JSON.stringify(r.offers)}`);
        assert.equal(proxy.fromPort, 67);
        assert.equal(proxy.yiaddr, '0.0.0.0', 'ProxyDHCP never offers an address');
        assert.equal(proxy.siaddr, '10.66.0.1');
        assert.equal(proxy.vendorClass, cls);
        assert.equal(proxy.bootfile, file);
        assert.equal(proxy.opt97, '00' + UUID.replace(/-/g, ''));
        if (cls === 'PXEClient') assert.equal(proxy.opt43, '060108ff');
        assert.equal(r.ack?.serverId, '10.66.0.2', 'the address is acknowledged by dnsmasq');
        assert.equal(r.ack?.yiaddr, site.yiaddr);
        assert.ok(r.proxyAck, 'swarmboot answered on 4011');
        assert.equal(r.proxyAck.from, '10.66.0.1');
        assert.equal(r.proxyAck.fromPort, 4011);
        assert.equal(r.proxyAck.type, 5);
        assert.equal(r.proxyAck.bootfile, file);
        assert.equal(r.proxyAck.yiaddr, '0.0.0.0');
      });
    }

    test('a non-PXE client gets its address from dnsmasq and nothing from swarmboot', async () => {
      const r = await pxeClient(lab, cli, { mac: '52:54:00:77:00:99', vendorClass: 'MSFT 5.0', configure: true });
      assert.ok(r.ack && r.ack.serverId === '10.66.0.2');
      assert.deepEqual(r.offers.map((o) => o.serverId), ['10.66.0.2']);
      // And a real DHCP client (udhcpc) likewise.
      const u = udhcpcScript(lab, 'nonpxe');
      const c = lab.spawn(cli, 'busybox', ['udhcpc', '-i', 'eth0', '-f', '-n', '-q', '-s', u.script, '-t', '3', '-T', '1']);
      assert.equal(await c.exited, 0);
      assert.match(events(u.log).find((l) => l.startsWith('bound'))!, /serverid=10\.66\.0\.2/);
      daemon!.proc.stdin!.write('metrics\n');
      const m = JSON.parse((await daemon!.line(/^METRICS /)).slice(8)) as string;
      assert.match(m, /swarmboot_dhcp_dropped_total\{reason="not_pxe"\} [1-9]/);
      const seen = readFileSync(path.join(lab.tmp, 'dhcp.log'), 'utf8').split('\n').filter((l) => l.includes('"mac":"52:54:00:77:00:99"'));
      assert.ok(seen.length >= 2, 'swarmboot saw the DISCOVER and the REQUEST');
      for (const l of seen) assert.match(l, /"answered":"nothing","why":"(no PXEClient|REQUEST for server 10\.66\.0\.2)/);
    });
  });

  test('relay path: dnsmasq as DHCP relay (giaddr) in front of full mode', async () => {
    const lab = new Lab();
    try {
      const srv = lab.addNs('srv');
      const rly = lab.addNs('rly');
      const rcl = lab.addNs('rcl');
      lab.bridge(srv, '10.66.0.1/24');
      lab.link(srv, 'vrly', rly, 'eth0', { cidr: '10.66.0.3/24' });
      // The relay's client-side network 10.77.0.0/24, reachable from the server through the relay.
      lab.link(rly, 'eth1', rcl, 'eth0', { bridged: false });
      lab.ip('-n', rly, 'addr', 'add', '10.77.0.1/24', 'dev', 'eth1');
      lab.ip('-n', srv, 'route', 'add', '10.77.0.0/24', 'via', '10.66.0.3');
      lab.spawn(rly, 'dnsmasq', ['-k', '--conf-file=/dev/null', '--port=0', '--user=root', '--dhcp-relay=10.77.0.1,10.66.0.1',
        `--pid-file=${lab.tmp}/relay.pid`, `--log-facility=${lab.tmp}/relay.log`, '--log-dhcp']);
      const dbFile = path.join(lab.tmp, 'state.db');
      await lab.dhcp(srv, {
        mode: 'full', db: dbFile, logFile: path.join(lab.tmp, 'dhcp.log'), interfaces: ['br0'],
        pools: [
          { subnet: '10.66.0.0/24', rangeStart: '10.66.0.100', rangeEnd: '10.66.0.110' },
          { subnet: '10.77.0.0/24', rangeStart: '10.77.0.50', rangeEnd: '10.77.0.60', router: '10.77.0.1' },
        ],
      });
      await waitFor('relay up', () => { try { return readFileSync(`${lab.tmp}/relay.log`, 'utf8').includes('relay'); } catch { return false; } });

      const u = udhcpcScript(lab, 'relayed');
      const c = lab.spawn(rcl, 'busybox', ['udhcpc', '-i', 'eth0', '-f', '-n', '-q', '-s', u.script, '-t', '4', '-T', '1']);
      assert.equal(await c.exited, 0, readFileSync(`${lab.tmp}/relay.log`, 'utf8'));
      assert.match(events(u.log).find((l) => l.startsWith('bound'))!, /^bound ip=10\.77\.0\.50 mask=24 router=10\.77\.0\.1 serverid=10\.66\.0\.1/);
      assert.equal(leaseRow(dbFile, '10.77.0.50')?.state, 'bound');

      // A PXE client behind the relay: address from the relayed pool and its boot file in one OFFER/ACK.
      const r = await pxeClient(lab, rcl, { mac: '52:54:00:78:00:07', arch: 7, uuid: UUID });
      assert.equal(r.offers.length, 1, JSON.stringify(r));
      assert.equal(r.offers[0]!.yiaddr, '10.77.0.51');
      assert.equal(r.offers[0]!.bootfile, 'ipxe.efi');
      assert.equal(r.offers[0]!.vendorClass, 'PXEClient');
      assert.equal(r.ack?.yiaddr, '10.77.0.51');
      assert.equal(r.ack?.serverId, '10.66.0.1');
      const log = readFileSync(path.join(lab.tmp, 'dhcp.log'), 'utf8');
      assert.match(log, /"relay":"10\.77\.0\.1"/);
    } finally {
      await lab.cleanup();
    }
  });

  test('multi-homed: ProxyDHCP answers each segment from its own address; full mode on two segments is refused', async () => {
    const lab = new Lab();
    try {
      const srv = lab.addNs('srv');
      const a = lab.addNs('cla');
      const b = lab.addNs('clb');
      lab.bridge(srv, '10.66.0.1/24', 'br0');
      lab.bridge(srv, '10.88.0.1/24', 'br1');
      lab.link(srv, 'va', a, 'eth0', { bridge: 'br0' });
      lab.link(srv, 'vb', b, 'eth0', { bridge: 'br1' });
      const proxy = await lab.dhcp(srv, { mode: 'proxy', interfaces: ['br0', 'br1'] });
      const [ra, rb] = await Promise.all([
        pxeClient(lab, a, { mac: '52:54:00:79:00:0a', arch: 7 }),
        pxeClient(lab, b, { mac: '52:54:00:79:00:0b', arch: 0 }),
      ]);
      // One offer each, from the right address: the broadcast left on the right interface only.
      assert.deepEqual(ra.offers.map((o) => [o.siaddr, o.serverId, o.bootfile]), [['10.66.0.1', '10.66.0.1', 'ipxe.efi']]);
      assert.deepEqual(rb.offers.map((o) => [o.siaddr, o.serverId, o.bootfile]), [['10.88.0.1', '10.88.0.1', 'undionly.kpxe']]);
      await proxy.stop();

      // With a server address (a second address on br0): br0's segment is told it, br1's its own address.
      lab.ip('-n', srv, 'addr', 'add', '10.66.0.9/24', 'dev', 'br0');
      const logFile = path.join(lab.tmp, 'multi.log');
      const withAddr = await lab.dhcp(srv, { mode: 'proxy', interfaces: ['br0', 'br1'], serverAddress: '10.66.0.9', logFile });
      const [sa, sb] = await Promise.all([
        pxeClient(lab, a, { mac: '52:54:00:79:00:0a', arch: 7 }),
        pxeClient(lab, b, { mac: '52:54:00:79:00:0b', arch: 0 }),
      ]);
      assert.deepEqual(sa.offers.map((o) => [o.siaddr, o.serverId]), [['10.66.0.9', '10.66.0.9']]);
      assert.deepEqual(sb.offers.map((o) => [o.siaddr, o.serverId]), [['10.88.0.1', '10.88.0.1']]);
      await withAddr.stop();
      assert.match(readFileSync(logFile, 'utf8'), /"interface":"br1".*10\.66\.0\.9 is not on br1's subnet: clients there are told 10\.88\.0\.1 instead/);

      const refused = lab.spawn(srv, NODE, [path.join(ROOT, 'test/dhcp/runner.ts'), JSON.stringify({
        mode: 'full', db: path.join(lab.tmp, 'x.db'), ports: { server: 6767, pxe: false },
        pools: [{ subnet: '10.66.0.0/24', rangeStart: '10.66.0.100', rangeEnd: '10.66.0.110' }, { subnet: '10.88.0.0/24', rangeStart: '10.88.0.100', rangeEnd: '10.88.0.110' }],
      })]);
      assert.match(await refused.line(/^ERROR/), /cannot serve directly attached clients on more than one interface.*relay/);
    } finally {
      await lab.cleanup();
    }
  });
});
