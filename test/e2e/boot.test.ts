/**
 * Whole boots on real PXE firmware, with swarmboot as the server: DHCP (ProxyDHCP beside a plain
 * dnsmasq handing out addresses, and full DHCP alone), TFTP (iPXE for the firmware), HTTP (the
 * per-machine iPXE script, the Debian kernel and the busybox initramfs, the sequence API).
 * BIOS: SeaBIOS + iPXE option ROM (e1000). UEFI: OVMF's own PXE stack (virtio-net, empty romfile)
 * → snponly.efi over TFTP → iPXE → HTTP. Each machine prints the sequence its config assigns and
 * reports progress; its state must go booting → running → done. Booted again, a finished machine
 * must reach its local disk (local-disk.ts: a stand-in that prints a marker and ends QEMU), not the
 * sequence: on BIOS through iPXE's sanboot, on UEFI through iPXE's `exit` back to the firmware,
 * which goes on through its other network boot option (HTTP boot → iPXE → exit again) to the disk.
 * In both DHCP modes the BIOS and UEFI machines boot side by side, each on its own tap.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { buildPayload, defaultCacheDir, type Payload } from './payload.ts';
import { addTap, createLab, destroyLab, e2eSkip, exec, httpRequest, NODE, ROOT, startSiteDhcp, type Lab, type LabProcess } from './lab.ts';
import { runVm } from './qemu.ts';
import { LOCAL_DISK_EXIT_CODE, LOCAL_DISK_MARKER, writeLocalDisk } from './local-disk.ts';

const TOKEN = 'e2e-admin-token-0123456789';
const MAC = { bios: '52:54:00:5b:00:01', uefi: '52:54:00:5b:00:02', unknown: '52:54:00:5b:00:ff' } as const;

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, taps)';
  for (const t of ['ip', 'qemu-system-x86_64', 'dnsmasq', 'radvd', 'busybox']) {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
    } catch {
      return `${t} is not installed (see .ci/apt/e2e.txt)`;
    }
  }
  for (const f of ['/usr/lib/ipxe/undionly.kpxe', '/usr/lib/ipxe/snponly.efi', '/usr/share/OVMF/OVMF_CODE_4M.fd']) {
    try {
      execFileSync('test', ['-e', f]);
    } catch {
      return `${f} is missing (see .ci/apt/e2e.txt)`;
    }
  }
  return undefined;
}

const SKIP = e2eSkip('boot.test.ts', missing());
/**
 * OVMF as a machine set to "network (IPv4: PXE, then HTTP boot), then disk". With IPv6 on, its
 * PXEv6 and HTTPv6 options each wait out DHCPv6 (minutes here) before the disk is tried.
 */
const OVMF_IPV4_ONLY = ['-fw_cfg', 'name=opt/org.tianocore/IPv6Support,string=no'];

const lines = (s: string) => s.split('\n').map((l) => l.replace(/\r/g, ''));

function printedSequence(serial: string): { sequence: string; steps: unknown[] } {
  const l = lines(serial);
  const b = l.indexOf('SWARMBOOT-SEQUENCE-BEGIN');
  const e = l.indexOf('SWARMBOOT-SEQUENCE-END');
  assert.ok(b >= 0 && e > b, 'sequence markers on the serial console');
  return JSON.parse(l.slice(b + 1, e).join('\n'));
}

function config(lab: Lab, mode: 'proxy' | 'full'): string {
  return `server:
  address: ${lab.serverIp}
  dataDir: data
  logLevel: info
  http: { host: 0.0.0.0, port: 8080 }
  tftp: { enabled: true, root: tftp, port: 69 }
  dhcp:
    enabled: true
    mode: ${mode}
    interfaces: [br0]
    ratePerMacPerMinute: 600
    pools:
      - { subnet: ${lab.net}.0/24, rangeStart: ${lab.net}.160, rangeEnd: ${lab.net}.190, router: ${lab.serverIp}, leaseSeconds: 600 }
boot:
  loaders: { bios: undionly.kpxe, uefi-x64: snponly.efi, uefi-http-x64: snponly.efi }
  profiles:
    payload:
      type: linux
      kernel: linux/vmlinuz
      initrds: [linux/initrd.gz]
      cmdline: "console=ttyS0 panic=5 swarmboot={{ server_url }} sbip={{ ip }}"
sequences:
  bios-seq:
    profile: payload
    steps:
      - { name: first, type: command, run: "echo {{ hostname }}" }
      - { name: second, type: command, run: "echo two" }
  uefi-seq:
    profile: payload
    steps:
      - { type: command, run: "echo {{ hostname }}" }
      - { type: command, run: "echo b" }
      - { type: command, run: "echo c" }
  fallback:
    profile: payload
    steps:
      - { type: command, run: "echo unknown machine {{ mac }}" }
machines:
  default: { action: sequence, sequence: fallback }
  hosts:
    - { mac: "${MAC.bios}", hostname: e2e-bios, sequence: bios-seq }
    - { mac: "${MAC.uefi}", hostname: e2e-uefi, sequence: uefi-seq }
`;
}

for (const mode of (process.env.E2E_MODES?.split(',') ?? ['proxy', 'full']) as Array<'proxy' | 'full'>) {
  // The BIOS and UEFI machines boot side by side (one tap each); each one's boots run in order.
  describe(`real firmware against swarmboot (${mode} DHCP)`, { skip: SKIP, timeout: 600_000, concurrency: 2 }, () => {
    let lab: Lab;
    let payload: Payload;
    let daemon: LabProcess;
    let site: LabProcess | undefined;
    let disk: { bios: string[]; uefi: string[] };
    const timings: Record<string, number> = {};
    const tap = { bios: 'tap0', uefi: 'tap1' } as const;
    const range = mode === 'proxy' ? [100, 150] : [160, 190];
    const base = () => `http://${lab.serverIp}:8080`;
    const admin = async (p: string, method = 'GET') => {
      const r = await httpRequest(lab, lab.srv, `${base()}${p}`, { method, headers: { authorization: `Bearer ${TOKEN}` } });
      return { status: r.status, json: JSON.parse(r.body) };
    };
    const vmArgs = (firmware: 'bios' | 'uefi') => (firmware === 'uefi' ? [...disk.uefi, ...OVMF_IPV4_ONLY] : disk.bios);

    before(async () => {
      const t = Date.now();
      payload = await buildPayload(defaultCacheDir());
      lab = await createLab(`boot-${mode}`, { net: mode === 'proxy' ? '10.66.0' : '10.67.0' });
      addTap(lab, tap.bios);
      addTap(lab, tap.uefi);
      disk = writeLocalDisk(path.join(lab.dir, 'disks'));
      const dir = path.join(lab.dir, 'swarmboot');
      mkdirSync(path.join(dir, 'tftp', 'linux'), { recursive: true });
      copyFileSync('/usr/lib/ipxe/undionly.kpxe', path.join(dir, 'tftp', 'undionly.kpxe'));
      copyFileSync('/usr/lib/ipxe/snponly.efi', path.join(dir, 'tftp', 'snponly.efi'));
      copyFileSync(payload.kernel, path.join(dir, 'tftp', 'linux', 'vmlinuz'));
      copyFileSync(payload.initrd, path.join(dir, 'tftp', 'linux', 'initrd.gz'));
      writeFileSync(path.join(dir, 'swarmboot.yaml'), config(lab, mode));
      if (mode === 'proxy') site = await startSiteDhcp(lab, { range: range as [number, number] });
      daemon = exec(lab, lab.srv, NODE, [path.join(ROOT, 'cli.ts'), 'serve', '--config', path.join(dir, 'swarmboot.yaml'), '--no-watch'], {
        label: `swarmboot-${mode}`,
        env: { ...process.env, SWARMBOOT_ADMIN_TOKEN: TOKEN, NODE_NO_WARNINGS: '1' },
      });
      await daemon.waitFor(/"msg":"swarmboot started"/, 30_000);
      // Full mode: br0 has no port with carrier until QEMU opens a tap, so DHCP starts when the link
      // comes up (Node lists only running interfaces); the proxy lab's site server gives it carrier.
      if (mode === 'full') assert.match(daemon.output(), /DHCP waits for its interfaces to come up/);
      timings.setupMs = Date.now() - t;
    });

    after(async () => {
      if (lab) await destroyLab(lab);
      process.stderr.write(`e2e boot (${mode}) timings: ${JSON.stringify(timings)}\n`);
    });

    const why = (serial: string) =>
      `\n--- serial (tail) ---\n${serial.slice(-2500)}\n--- swarmboot (tail) ---\n${daemon.output().slice(-4000)}${site ? `\n--- site dnsmasq (tail) ---\n${site.output().slice(-1500)}` : ''}`;

    async function bootAndCheck(firmware: 'bios' | 'uefi', mac: string, expect: { sequence: string; steps: number }, label: string): Promise<string[]> {
      const r = await runVm({ lab, tap: tap[firmware], firmware, mac, serialLog: path.join(lab.dir, `${firmware}-${mac.slice(-2)}.serial.log`), timeoutMs: 150_000, extraArgs: vmArgs(firmware) });
      timings[label] = r.durationMs;
      const w = why(r.serial) + (r.screendump ? `\nscreendump: ${r.screendump}` : '');
      assert.ok(!r.timedOut, `${firmware} VM timed out after ${r.durationMs} ms${w}`);
      const l = lines(r.serial);
      assert.ok(l.includes('SWARMBOOT-SEQUENCE-STATUS HTTP/1.1 200 OK'), `sequence fetched${w}`);
      const seq = printedSequence(r.serial);
      assert.equal(seq.sequence, expect.sequence, w);
      assert.equal(seq.steps.length, expect.steps);
      const events = l.filter((x) => x.startsWith('SWARMBOOT-EVENT '));
      assert.equal(events.length, expect.steps * 2, w);
      assert.ok(events.every((e) => e.endsWith(' ok')), w);
      assert.ok(l.includes('SWARMBOOT-DONE'), w);
      assert.ok(!r.serial.includes(LOCAL_DISK_MARKER), 'a machine with a deployment boots the network, not its disk');
      return l;
    }

    async function statesOf(mac: string): Promise<string[]> {
      const m = await admin(`/api/v1/machines/${mac}`);
      assert.equal(m.status, 200);
      return (m.json.events as Array<{ state: string | null }>).map((e) => e.state).filter((s): s is string => s !== null);
    }

    /** Boot a finished machine again: it must end on its local disk (marker + QEMU exit code), with no new deployment. */
    async function secondBoot(firmware: 'bios' | 'uefi', mac: string, sequence: string): Promise<string> {
      const before = await admin(`/api/v1/machines/${mac}`);
      assert.equal(before.json.deployment.state, 'done');
      const r = await runVm({ lab, tap: tap[firmware], firmware, mac, serialLog: path.join(lab.dir, `${firmware}-again.serial.log`), timeoutMs: 150_000, extraArgs: vmArgs(firmware) });
      timings[`${firmware}SecondBootMs`] = r.durationMs;
      const w = why(r.serial) + (r.screendump ? `\nscreendump: ${r.screendump}` : '');
      assert.ok(!r.timedOut, `${firmware} VM never reached its disk (${r.durationMs} ms)${w}`);
      assert.ok(lines(r.serial).includes(`${LOCAL_DISK_MARKER} ${firmware}`), `the disk's marker on the serial console${w}`);
      assert.equal(r.exitCode, LOCAL_DISK_EXIT_CODE, `QEMU ended by the disk's program${w}`);
      assert.doesNotMatch(r.serial, /SWARMBOOT-SEQUENCE-BEGIN|SWARMBOOT-IP /, 'the payload never ran');
      assert.match(daemon.output(), new RegExp(`"mac":"${mac}","plan":"local","reason":"deployment of ${sequence} is done[^"]*","msg":"iPXE script"`));
      const afterBoot = await admin(`/api/v1/machines/${mac}`);
      assert.equal(afterBoot.json.deployment.state, 'done');
      assert.equal(afterBoot.json.deployment.generation, before.json.deployment.generation, 'no new deployment started');
      return r.serial;
    }

    describe('BIOS (SeaBIOS + iPXE option ROM)', { concurrency: 1 }, () => {
      test('first boot: DHCP → HTTP script → kernel → its sequence, booting → running → done; {{ ip }} on the command line', { timeout: 200_000 }, async () => {
        const l = await bootAndCheck('bios', MAC.bios, { sequence: 'bios-seq', steps: 2 }, 'biosMs');
        const m = await admin(`/api/v1/machines/${MAC.bios}`);
        assert.equal(m.json.deployment.state, 'done');
        assert.equal(m.json.firmware, 'bios');
        const states = await statesOf(MAC.bios);
        assert.deepEqual([...new Set(states)], ['pending', 'booting', 'running', 'done'], JSON.stringify(states));
        assert.match(daemon.output(), new RegExp(`"mac":"${MAC.bios}".*"plan":"deploy".*iPXE script`));
        // {{ ip }}: the address the machine fetched its script from, one of this lab's DHCP range.
        const cmdline = l.find((x) => /Kernel command line: /.test(x)) ?? '';
        const ip = /\bsbip=(\S*)/.exec(cmdline)?.[1];
        assert.match(ip ?? '(none)', new RegExp(`^${lab.net.replace(/\./g, '\\.')}\\.\\d+$`), cmdline);
        const last = Number(ip!.split('.')[3]);
        assert.ok(last >= range[0]! && last <= range[1]!, `${ip} in the ${mode} range ${range.join('-')}`);
      });

      test('second boot of the finished machine: its script sanboots the local disk (which is not in the BIOS boot order)', { timeout: 200_000 }, async () => {
        await secondBoot('bios', MAC.bios, 'bios-seq');
      });

      test('an unknown MAC gets the configured default', { timeout: 200_000 }, async () => {
        await bootAndCheck('bios', MAC.unknown, { sequence: 'fallback', steps: 1 }, 'unknownMs');
        const m = await admin(`/api/v1/machines/${MAC.unknown}`);
        assert.equal(m.json.assignment.matchedBy, 'default');
        assert.equal(m.json.deployment.state, 'done');
        if (mode === 'proxy') assert.match(site!.output(), /DHCPACK/, 'the site server handed out the addresses');
      });
    });

    describe('UEFI (OVMF PXE → snponly.efi over TFTP → iPXE → HTTP)', { concurrency: 1 }, () => {
      test('first boot: its sequence, booting → running → done', { timeout: 200_000 }, async () => {
        await bootAndCheck('uefi', MAC.uefi, { sequence: 'uefi-seq', steps: 3 }, 'uefiMs');
        const m = await admin(`/api/v1/machines/${MAC.uefi}`);
        assert.equal(m.json.deployment.state, 'done');
        assert.equal(m.json.firmware, 'uefi-x64');
        const states = await statesOf(MAC.uefi);
        assert.deepEqual([...new Set(states)], ['pending', 'booting', 'running', 'done'], JSON.stringify(states));
        const metrics = (await httpRequest(lab, lab.srv, `${base()}/metrics`)).body;
        assert.match(metrics, /swarmboot_tftp_transfers_total\{outcome="ok"\} [1-9]/, 'OVMF fetched iPXE from swarmboot over TFTP');
      });

      test('second boot of the finished machine: iPXE exits to the firmware, which goes on through HTTP boot (iPXE exits again) to the disk', { timeout: 200_000 }, async () => {
        const serial = lines(await secondBoot('uefi', MAC.uefi, 'uefi-seq'));
        // The firmware's own account of the boot order, in order (iPXE leaves no newline before it).
        const at = (re: RegExp) => serial.findIndex((x) => re.test(x));
        const pxeFailed = at(/BdsDxe: failed to start Boot\d+ "UEFI PXEv4/);
        const httpFailed = at(/BdsDxe: failed to start Boot\d+ "UEFI HTTPv4/);
        const disk = at(new RegExp(`^${LOCAL_DISK_MARKER} uefi$`));
        assert.ok(pxeFailed >= 0 && httpFailed > pxeFailed && disk > httpFailed, `PXEv4 → HTTPv4 → disk:\n${serial.filter((x) => /BdsDxe|SWARMBOOT/.test(x)).join('\n')}`);
        assert.equal(serial.filter((x) => x.includes('swarmboot: returning to the firmware for its next boot option')).length, 2, 'both iPXE runs exited on purpose');
        // UEFI HTTP boot (arch 16) was answered with iPXE's URL, and that iPXE got the local script too.
        assert.match(daemon.output(), new RegExp(`"mac":"${MAC.uefi}"[^\n]*"firmware":"uefi-http-x64"[^\n]*"answered":"OFFER (?:\\S+ boot )?HTTPClient http://${lab.serverIp.replace(/\./g, '\\.')}:8080/tftp/snponly\.efi`));
        const localScripts = daemon.output().split('\n').filter((x) => x.includes(`"mac":"${MAC.uefi}","plan":"local"`) && x.includes('iPXE script'));
        assert.equal(localScripts.length, 2, localScripts.join('\n'));
      });
    });
  });
}
