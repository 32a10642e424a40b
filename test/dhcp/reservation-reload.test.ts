/**
 * A reservation edited in the config reaches a running daemon: the real CLI in full mode inside a
 * network namespace, busybox udhcpc as the client. After SIGHUP, the client's renewal of its old
 * address is refused (NAK) and it comes back with the new reserved address.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Lab, missingPrereq, NODE, ROOT, waitFor } from './netns.ts';

const skip = missingPrereq(['busybox']);
const MAC = '52:54:00:67:00:01';

const config = (ip: string) => `server:
  address: 10.66.0.1
  dataDir: data
  adminToken: test-admin-token-0123456789
  http: { host: 127.0.0.1, port: 0 }
  tftp: { enabled: false }
  dhcp:
    mode: full
    interfaces: [br0]
    pools:
      - { subnet: 10.66.0.0/24, rangeStart: 10.66.0.100, rangeEnd: 10.66.0.150, leaseSeconds: 600 }
machines:
  hosts:
    - { mac: "${MAC}", ip: ${ip}, hostname: reserved-01, action: local }
`;

test('a reservation changed in the config applies on reload: the client is moved to its new address', { skip, timeout: 90_000 }, async () => {
  const lab = new Lab();
  try {
    const srv = lab.addNs('rsrv');
    const cli = lab.addNs('rcli');
    lab.bridge(srv, '10.66.0.1/24');
    lab.link(srv, 'vcli', cli, 'eth0', { mac: MAC });
    const cfg = path.join(lab.tmp, 'swarmboot.yaml');
    writeFileSync(cfg, config('10.66.0.120'));
    const d = lab.spawn(srv, NODE, [path.join(ROOT, 'cli.ts'), 'serve', '--config', cfg, '--no-watch']);
    await d.line(/"msg":"DHCP listening"/, 20_000);

    const log = path.join(lab.tmp, 'udhcpc.log');
    const script = path.join(lab.tmp, 'udhcpc.sh');
    writeFileSync(script, `#!/bin/sh\necho "$1 ip=$ip" >> ${log}\ncase "$1" in\n  deconfig) ip addr flush dev "$interface" ;;\n  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface" ;;\nesac\nexit 0\n`);
    chmodSync(script, 0o755);
    writeFileSync(log, '');
    const lines = () => readFileSync(log, 'utf8').split('\n').filter(Boolean);
    const udhcpc = lab.spawn(cli, 'busybox', ['udhcpc', '-i', 'eth0', '-f', '-s', script, '-t', '5', '-T', '1', '-A', '1']);
    await waitFor('first address', () => lines().find((l) => l.startsWith('bound')));
    assert.equal(lines().find((l) => l.startsWith('bound')), 'bound ip=10.66.0.120');

    writeFileSync(cfg, config('10.66.0.130'));
    d.proc.kill('SIGHUP');
    await d.line(/"msg":"DHCP reservations reloaded"/, 10_000);
    udhcpc.proc.kill('SIGUSR1'); // renew now: the old address is refused, the new one is bound
    await waitFor('the new reserved address', () => lines().find((l) => l === 'bound ip=10.66.0.130'), 20_000);
    await udhcpc.stop();
    assert.equal(await d.stop(), 0);
  } finally {
    await lab.cleanup();
  }
});
