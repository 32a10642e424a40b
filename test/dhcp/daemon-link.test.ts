/**
 * The daemon (`swarmboot serve`) waits for DHCP interfaces that exist but have no link yet, says
 * so once per new reason, and gives up with an error when what stops it is the configuration
 * itself. Runs inside network namespaces this test creates: a veth whose peer is down has no
 * carrier (Node does not list it), and bringing the peer up gives it link.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Lab, missingPrereq, NODE, ROOT } from './netns.ts';

const skip = missingPrereq([]);

interface LogLine { level: number; msg: string; reason?: string; err?: string }

test('DHCP waits for its interfaces, logs each new reason once, and stops retrying when the config is refused', { skip, timeout: 90_000 }, async () => {
  const lab = new Lab();
  try {
    const srv = lab.addNs('dsrv');
    const peer = lab.addNs('dpeer');
    for (const [dev, cidr] of [['e0', '10.66.0.1/24'], ['e1', '10.88.0.1/24']] as const) {
      lab.ip('-n', srv, 'link', 'add', dev, 'type', 'veth', 'peer', 'name', `${dev}p`, 'netns', peer);
      lab.ip('-n', srv, 'addr', 'add', cidr, 'dev', dev);
      lab.ip('-n', srv, 'link', 'set', dev, 'up');
    }
    const cfg = path.join(lab.tmp, 'swarmboot.yaml');
    // Full mode on two directly attached subnets: refused, but only once both interfaces are up.
    writeFileSync(cfg, `server:
  dataDir: data
  adminToken: test-admin-token-0123456789
  http: { host: 127.0.0.1, port: 0 }
  tftp: { enabled: false }
  dhcp:
    mode: full
    interfaces: [e0, e1]
    pools:
      - { subnet: 10.66.0.0/24, rangeStart: 10.66.0.100, rangeEnd: 10.66.0.110 }
      - { subnet: 10.88.0.0/24, rangeStart: 10.88.0.100, rangeEnd: 10.88.0.110 }
`);
    const d = lab.spawn(srv, NODE, [path.join(ROOT, 'cli.ts'), 'serve', '--config', cfg]);
    const logs = (): LogLine[] => d.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
    const dhcpLogs = () => logs().filter((l) => /^DHCP/.test(l.msg));
    await d.line(/DHCP waits for its interfaces to come up/, 20_000);
    assert.match(dhcpLogs()[0]!.reason!, /interface "e0" does not exist/);

    // e0 gets link: the reason changes to e1, said once however many seconds it lasts.
    lab.ip('-n', peer, 'link', 'set', 'e0p', 'up');
    await d.line(/DHCP still waits for its interfaces/, 10_000);
    await new Promise((r) => setTimeout(r, 3500));
    const still = dhcpLogs().filter((l) => l.msg === 'DHCP still waits for its interfaces');
    assert.equal(still.length, 1, JSON.stringify(dhcpLogs()));
    assert.match(still[0]!.reason!, /interface "e1" does not exist/);

    // e1 gets link: now the configuration itself is refused. An error, and no more retries.
    lab.ip('-n', peer, 'link', 'set', 'e1p', 'up');
    const line = await d.line(/DHCP cannot start and will not retry/, 10_000);
    const err = JSON.parse(line) as LogLine;
    assert.equal(err.level, 50);
    assert.match(err.err!, /cannot serve directly attached clients on more than one interface/);
    const count = dhcpLogs().length;
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(dhcpLogs().length, count, `no retries after giving up: ${JSON.stringify(dhcpLogs().slice(count))}`);
    assert.equal(d.proc.exitCode, null, 'the rest of the daemon keeps running');
    assert.equal(await d.stop(), 0, 'clean shutdown');
  } finally {
    await lab.cleanup();
  }
});
