/**
 * Proves the e2e harness on real firmware WITHOUT swarmboot: dnsmasq is the full DHCP + TFTP
 * server, a small Node server (fake-boot-server.ts) the HTTP side. BIOS (SeaBIOS + iPXE ROM) and
 * UEFI (OVMF's own PXE → snponly.efi over TFTP → iPXE) both boot the Debian kernel + busybox
 * initramfs over HTTP, which fetches its sequence, prints it, posts 4 events and powers off.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { buildPayload, defaultCacheDir, STEP_COUNT_AWK, type Payload } from './payload.ts';
import { addPeer, addTap, createLab, destroyLab, e2eSkip, exec, httpRequest, NODE, run, startSiteDhcp, type Lab, type LabProcess } from './lab.ts';
import { runVm, type VmResult } from './qemu.ts';
import { sequenceFor, type FakeServerConfig } from './fake-boot-server.ts';

const TOOLS = ['ip', 'qemu-system-x86_64', 'dnsmasq', 'radvd', 'busybox', 'apt-get', 'dpkg'];
const FILES = ['/usr/lib/ipxe/undionly.kpxe', '/usr/lib/ipxe/snponly.efi', '/usr/lib/ipxe/ipxe.efi', '/usr/share/OVMF/OVMF_CODE_4M.fd'];

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, taps)';
  for (const t of TOOLS) {
    try { execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' }); } catch { return `${t} is not installed (see .ci/apt/e2e.txt)`; }
  }
  for (const f of FILES) {
    try { execFileSync('test', ['-e', f]); } catch { return `${f} is missing (see .ci/apt/e2e.txt)`; }
  }
  return undefined;
}

const SKIP = e2eSkip('harness.test.ts', missing());
const PORT = 8080;
const MAC = { bios: '52:54:00:e2:e0:01', uefi: '52:54:00:e2:e0:02' } as const;
const UNKNOWN_MAC = '52:54:00:e2:e0:ff';

/** Lines of the serial log without CRs. */
const lines = (s: string) => s.split('\n').map((l) => l.replace(/\r/g, ''));

function sequencePrinted(serial: string): unknown {
  const l = lines(serial);
  const b = l.indexOf('SWARMBOOT-SEQUENCE-BEGIN');
  const e = l.indexOf('SWARMBOOT-SEQUENCE-END');
  assert.ok(b >= 0 && e > b, 'sequence markers on the serial console');
  return JSON.parse(l.slice(b + 1, e).join('\n'));
}

describe('e2e lab: site DHCP server (addresses only) in its own namespace', { skip: SKIP, timeout: 60_000 }, () => {
  let lab: Lab | undefined;
  after(async () => { if (lab) await destroyLab(lab); });

  test('a udhcpc client on the bridge gets an address from the site dnsmasq, and no boot file', async () => {
    lab = await createLab('site', { ipv6: 'off' });
    const site = await startSiteDhcp(lab, { range: [120, 130] });
    const cli = addPeer(lab, 'cli');
    const out = await run(lab, cli, 'sh', ['-c', 'busybox udhcpc -i eth0 -f -q -n -t 5 -T 1 -s /bin/true 2>&1']);
    assert.match(out, new RegExp(`lease of ${lab.net.replace(/\./g, '\\.')}\\.1[23]\\d obtained`));
    await site.waitFor(/DHCPACK\(eth0\)/, 5000);
    assert.doesNotMatch(site.output(), /bootfile-name/);
  });
});

describe('e2e harness: real PXE firmware against dnsmasq + a fake HTTP API', { skip: SKIP, timeout: 330_000 }, () => {
  let lab: Lab;
  let payload: Payload;
  let fake: LabProcess;
  let dnsmasq: LabProcess;
  const timings: Record<string, number> = {};

  before(async () => {
    let t = Date.now();
    payload = await buildPayload(defaultCacheDir());
    timings.payloadMs = Date.now() - t;
    t = Date.now();
    lab = await createLab('harness', { ipv6: process.env.SWARMBOOT_E2E_IPV6 === 'off' ? 'off' : 'radvd' });
    addTap(lab, 'tap0');
    const base = `http://${lab.serverIp}:${PORT}`;
    const cfg: FakeServerConfig = {
      host: lab.serverIp,
      port: PORT,
      // initrd=NAME: OVMF's EFI stub finds the initrd by it; harmless on BIOS.
      ipxeScript: [
        '#!ipxe',
        'echo swarmboot-e2e harness: ${mac} ${platform}',
        `kernel ${base}/vmlinuz initrd=initrd.gz console=ttyS0 panic=5 swarmboot=${base}`,
        `initrd -n initrd.gz ${base}/initrd.gz`,
        'boot',
        '',
      ].join('\n'),
      files: { '/vmlinuz': payload.kernel, '/initrd.gz': payload.initrd },
      macs: [MAC.bios, MAC.uefi],
    };
    fake = exec(lab, lab.srv, NODE, [path.join(import.meta.dirname, 'fake-boot-server.ts'), JSON.stringify(cfg)], { label: 'fake-http' });
    await fake.waitFor(/LISTENING/, 15_000);

    const tftp = path.join(lab.dir, 'tftp');
    mkdirSync(tftp);
    for (const f of ['undionly.kpxe', 'snponly.efi', 'ipxe.efi']) copyFileSync(path.join('/usr/lib/ipxe', f), path.join(tftp, f));
    const conf = path.join(lab.dir, 'dnsmasq.conf');
    writeFileSync(conf, [
      'port=0', 'no-resolv', 'no-hosts', 'bind-interfaces', 'interface=br0', 'user=root',
      `dhcp-range=${lab.net}.100,${lab.net}.150,255.255.255.0,10m`,
      `dhcp-leasefile=${path.join(lab.dir, 'dnsmasq.leases')}`,
      'dhcp-authoritative',
      'enable-tftp', `tftp-root=${tftp}`,
      // iPXE (option 175) gets the HTTP script; anyone else gets iPXE over TFTP first.
      'dhcp-match=set:ipxe,175',
      'dhcp-match=set:efi64,option:client-arch,7',
      'dhcp-match=set:efi64,option:client-arch,9',
      `dhcp-boot=tag:ipxe,${base}/boot.ipxe`,
      `dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi,,${lab.serverIp}`,
      `dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe,,${lab.serverIp}`,
      'log-dhcp', 'log-facility=-',
    ].join('\n') + '\n');
    dnsmasq = exec(lab, lab.srv, 'dnsmasq', ['-d', '-C', conf], { label: 'dnsmasq' });
    await dnsmasq.waitFor(/TFTP root is/, 10_000);
    // The fake API answers from inside the namespace (sanity check of the lab's httpRequest too).
    const r = await httpRequest(lab, lab.srv, `${base}/api/v1/machines/${MAC.bios}/sequence`);
    assert.equal(r.status, 200);
    timings.labMs = Date.now() - t;
  });

  after(async () => {
    if (lab) await destroyLab(lab);
    process.stderr.write(`e2e harness timings: ${JSON.stringify(timings)}\n`);
  });

  test('the initramfs step counter reads the top-level "steps" array only', () => {
    const count = (json: string) => execFileSync('busybox', ['awk', STEP_COUNT_AWK], { input: json, encoding: 'utf8' }).trim();
    assert.equal(count(JSON.stringify(sequenceFor('52:54:00:00:00:01'))), '2');
    assert.equal(count(JSON.stringify(sequenceFor('x'), null, 2)), '2');
    assert.equal(count('{"steps":[]}'), '0');
    assert.equal(count('{"error":"done","action":"local"}'), '0');
  });

  const boot = async (firmware: 'bios' | 'uefi'): Promise<VmResult> => {
    const mac = MAC[firmware];
    const r = await runVm({ lab, tap: 'tap0', firmware, mac, serialLog: path.join(lab.dir, `${firmware}.serial.log`), timeoutMs: 150_000 });
    timings[`${firmware}Ms`] = r.durationMs;
    const why = `\n--- serial (tail) ---\n${r.serial.slice(-3000)}\n--- dnsmasq (tail) ---\n${dnsmasq.output().slice(-3000)}\n--- fake http ---\n${fake.output().slice(-2000)}\n--- qemu ---\n${r.qemuOutput}${r.screendump ? `\nscreendump: ${r.screendump}` : ''}`;
    assert.ok(!r.timedOut, `${firmware} VM timed out after ${r.durationMs} ms${why}`);
    assert.equal(r.exitCode, 0, `QEMU exit code${why}`);
    const l = lines(r.serial);
    assert.ok(l.includes('SWARMBOOT-SEQUENCE-STATUS HTTP/1.1 200 OK'), `sequence status 200${why}`);
    assert.deepEqual(sequencePrinted(r.serial), sequenceFor(mac));
    assert.ok(l.includes('SWARMBOOT-STEPS 2'), `2 steps${why}`);
    const events = l.filter((x) => x.startsWith('SWARMBOOT-EVENT '));
    assert.deepEqual(events, [
      'SWARMBOOT-EVENT step-started 0 ok',
      'SWARMBOOT-EVENT step-finished 0 ok',
      'SWARMBOOT-EVENT step-started 1 ok',
      'SWARMBOOT-EVENT step-finished 1 ok',
    ], why);
    assert.ok(l.includes('SWARMBOOT-DONE'), why);
    // …and the server side saw the same, in order.
    const reqs = lines(fake.output()).filter((x) => x.startsWith('{')).map((x) => (JSON.parse(x) as { req: { method: string; path: string; status: number; body?: string } }).req);
    const posted = reqs.filter((q) => q.method === 'POST' && q.path === `/api/v1/machines/${mac}/events`);
    assert.deepEqual(posted.map((q) => [q.status, JSON.parse(q.body ?? 'null')]), [
      [200, { type: 'step-started', step: 0 }],
      [200, { type: 'step-finished', step: 0 }],
      [200, { type: 'step-started', step: 1 }],
      [200, { type: 'step-finished', step: 1 }],
    ]);
    return r;
  };

  test('BIOS: SeaBIOS + iPXE option ROM → HTTP script → kernel → sequence and 4 events', { timeout: 170_000 }, async () => {
    await boot('bios');
  });

  test('UEFI: OVMF PXE → snponly.efi over TFTP → iPXE → HTTP → kernel → sequence and 4 events', { timeout: 170_000 }, async () => {
    await boot('uefi');
    // OVMF's own stack fetched iPXE over TFTP before iPXE (option 175) got the HTTP script.
    assert.match(dnsmasq.output(), /sent .*snponly\.efi to/);
  });

  test('BIOS, unknown MAC: the refused sequence shows its status and JSON body, and no events are posted', { timeout: 170_000 }, async () => {
    const r = await runVm({ lab, tap: 'tap0', firmware: 'bios', mac: UNKNOWN_MAC, serialLog: path.join(lab.dir, 'unknown.serial.log'), timeoutMs: 150_000 });
    timings.unknownMs = r.durationMs;
    const why = `\n--- serial (tail) ---\n${r.serial.slice(-3000)}`;
    assert.ok(!r.timedOut, `timed out${why}`);
    const l = lines(r.serial);
    assert.ok(l.includes('SWARMBOOT-SEQUENCE-STATUS HTTP/1.1 404 Not Found'), why);
    const body = l.find((x) => x.startsWith('SWARMBOOT-SEQUENCE-ERROR-BODY '));
    assert.deepEqual(JSON.parse(body?.slice('SWARMBOOT-SEQUENCE-ERROR-BODY '.length) ?? 'null'), { error: `no deployment for ${UNKNOWN_MAC}`, action: 'ignore', state: null });
    assert.ok(!l.includes('SWARMBOOT-SEQUENCE-BEGIN') && !l.some((x) => x.startsWith('SWARMBOOT-EVENT')), why);
    assert.ok(l.includes('SWARMBOOT-DONE'), why);
    assert.doesNotMatch(fake.output(), new RegExp(`POST","path":"/api/v1/machines/${UNKNOWN_MAC}/events`));
  });
});
