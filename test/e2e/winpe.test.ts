/**
 * Both WinPE boot paths, proven at the protocol level against the real daemon (`swarmboot serve`
 * as DHCP server, TFTP and HTTP) in a namespace lab this test creates and removes. Windows binaries
 * cannot be shipped, so every Windows file is a stand-in of random bytes with a realistic size, and
 * what is checked is what Windows would see: the DHCP answer, each request as Windows makes it, and
 * byte-identical contents (SHA-256).
 *
 * a. Windows Boot Manager over TFTP (the Secure Boot path): UEFI x64 firmware gets
 *    `<dir>/boot/x64/bootmgfw.efi` and option 252 (the BCD path); the firmware probes the file's size
 *    (tsize, then ERROR 8) and fetches it; bootmgfw.efi then reads the BCD at the option-252 path,
 *    boot.sdi and boot.wim with mixed-case backslash names, blksize 1456, windowsize and the
 *    Microsoft variable window (msftwindow, the window changed by each ACK's trailing byte). BIOS
 *    gets `<dir>/boot/pxeboot.n12` and option 252, probes with ERROR 0 as PXE ROMs do, and fetches
 *    pxeboot.n12, bootmgr.exe, BCD, boot.sdi and boot.wim (RFC 7440 windows).
 * b. iPXE + wimboot over HTTP: an iPXE client is handed its per-machine script; every URL the script
 *    names answers 200 with the right bytes (fetched with curl), the injected winpeshl.ini and
 *    swarmboot.cmd point at this machine's sequence, and that sequence URL answers.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { addPeer, addTap, createLab, destroyLab, e2eSkip, exec, httpRequest, NODE, ROOT, run, startSiteDhcp, type Lab, type LabProcess } from './lab.ts';
import type { DhcpCfg, DhcpResult, ReadRequest, ReadResult } from './winpe-client.ts';
import { renderWinpeshl } from '../../boot/ipxe.ts';
import { startVm } from './qemu.ts';

const TOKEN = 'e2e-winpe-admin-token-0123456789';
const NET = '10.68.0';
const SERVER = `${NET}.1`;
const BASE = `http://${SERVER}:8080`;
const MAC = { uefi: '52:54:00:77:00:07', bios: '52:54:00:77:00:08', wimboot: '52:54:00:77:00:09', wimbootVm: '52:54:00:77:00:0a' } as const;
/** The stand-in wimboot the real-iPXE test boots: a bzImage iPXE accepts for `kernel` and starts with `boot` (iPXE itself, as a Linux kernel). */
const WIMBOOT_STANDIN = '/usr/lib/ipxe/ipxe.lkrn';
const UUID = { uefi: '4c4c4544-0057-4910-8050-b7c04f574e31', bios: '4c4c4544-0057-4910-8050-b7c04f574e32' } as const;
const MAX_WINDOW = 64;
/** Windows Boot Manager's TFTP request options (blksize 1456, windowsize, Microsoft variable window). */
const BOOTMGR_OPTS: Array<[string, string]> = [['blksize', '1456'], ['tsize', '0'], ['windowsize', '8'], ['msftwindow', '31416']];
/** The windows the stand-in bootmgr asks for in turn (all within the server's limit, 64: see the report on larger ones). */
const MSFT_WINDOWS = [8, 16, 32, 64, 4, 1, 31, 48];

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  for (const t of ['ip', 'curl', 'qemu-system-x86_64', 'radvd']) {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
    } catch {
      return `${t} is not installed (see .ci/apt/)`;
    }
  }
  for (const f of [WIMBOOT_STANDIN, '/usr/lib/ipxe/qemu/pxe-e1000.rom']) {
    try {
      execFileSync('test', ['-e', f]);
    } catch {
      return `${f} is missing (see .ci/apt/e2e.txt)`;
    }
  }
  return undefined;
}

const SKIP = e2eSkip('winpe.test.ts', missing());

/**
 * The TFTP root, as an admin lays it out on Linux: one `Boot` folder (Windows names it so on the
 * media; `boot/x64/…` in DHCP answers reaches it through case-insensitive matching). Sizes are near
 * the real files'; the BCD is an exact multiple of 1456 so its transfer ends with an empty block.
 */
const FILES: Record<string, number> = {
  'winpe/Boot/x64/bootmgfw.efi': 1_981_832,
  'winpe/Boot/pxeboot.n12': 26_730,
  'winpe/Boot/bootmgr.exe': 745_336,
  'winpe/Boot/BCD': 1456 * 180,
  // One of the optional files Windows Boot Manager asks for; its siblings are left out on purpose.
  'winpe/Boot/Fonts/segmono_boot.ttf': 42_912,
  'winpe/Boot/boot.sdi': 3_170_304,
  'winpe/sources/boot.wim': 24 * 1024 * 1024 + 777,
  'winpe/bootmgr': 413_738,
  'tools/wimboot': 61_440,
};

function config(mode: 'full' | 'proxy' = 'full', net = NET): string {
  return `server:
  address: ${net}.1
  dataDir: data
  contentDir: content
  logLevel: debug
  http: { host: 0.0.0.0, port: 8080 }
  tftp: { enabled: true, root: tftp, port: 69, maxBlksize: 1456, maxWindowsize: ${MAX_WINDOW} }
  dhcp:
    enabled: true
    mode: ${mode}
    interfaces: [br0]
    ratePerMacPerMinute: 600
    pools:
      - { subnet: ${net}.0/24, rangeStart: ${net}.100, rangeEnd: ${net}.150, router: ${net}.1, leaseSeconds: 600 }
boot:
  loaders: { bios: undionly.kpxe, uefi-x64: snponly.efi }
  profiles:
    winpe-secureboot:
      type: winpe
      description: WinPE through Windows Boot Manager over TFTP
      via: bootmgr
      dir: WinPE
    winpe-fast:
      type: winpe
      description: WinPE through iPXE and wimboot over HTTP
      via: wimboot
      dir: WinPE
      wimboot: tools/wimboot
sequences:
  winpe-tftp:
    profile: winpe-secureboot
    steps:
      - { type: command, run: "echo {{ hostname }}" }
  winpe-http:
    profile: winpe-fast
    steps:
      - { type: command, run: "echo {{ hostname }}" }
machines:
  default: { action: ignore }
  hosts:
    - { mac: "${MAC.uefi}", hostname: pe-uefi, sequence: winpe-tftp }
    - { mac: "${MAC.bios}", hostname: pe-bios, sequence: winpe-tftp }
    - { mac: "${MAC.wimboot}", hostname: pe-wimboot, sequence: winpe-http }
    - { mac: "${MAC.wimbootVm}", hostname: pe-ipxe, sequence: winpe-http }
`;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('WinPE through swarmboot (namespace lab, stand-in Windows files)', { skip: SKIP, timeout: 180_000 }, () => {
  let lab: Lab;
  let daemon: LabProcess;
  const hashes = new Map<string, string>();
  const sizes = new Map<string, number>();

  const client = async <T,>(ns: string, arg: { dhcp: DhcpCfg } | { tftp: { server: string; reads: ReadRequest[] } }): Promise<T> => {
    const out = await run(lab, ns, NODE, [path.join(ROOT, 'test/e2e/winpe-client.ts'), JSON.stringify(arg)], 60_000);
    return JSON.parse(out) as T;
  };
  const admin = async (p: string) => {
    const r = await httpRequest(lab, lab.srv, `${BASE}${p}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.status, 200, `${p}: ${r.body}`);
    return JSON.parse(r.body) as { deployment: { state: string }; events: Array<{ state: string | null; message: string | null; type: string }> };
  };
  /** TFTP counters from /metrics: the probe counter and transfers by outcome. */
  const tftpCounters = async (): Promise<{ probes: number; outcomes: Record<string, number> }> => {
    const body = (await httpRequest(lab, lab.srv, `${BASE}/metrics`)).body;
    const probes = Number(/^swarmboot_tftp_probes_total(?:\{\})? (\d+)$/m.exec(body)?.[1] ?? 0);
    const outcomes: Record<string, number> = {};
    for (const m of body.matchAll(/^swarmboot_tftp_transfers_total\{outcome="(\w+)"\} (\d+)$/gm)) outcomes[m[1]!] = Number(m[2]);
    return { probes, outcomes };
  };
  /** Counter changes since `before`: the probe counted as a probe, everything else as ok (or a missing optional file), nothing failed. */
  const assertCounted = async (before: { probes: number; outcomes: Record<string, number> }, probes: number, ok: number, notFound = 0): Promise<void> => {
    const now = await tftpCounters();
    const delta: Record<string, number> = {};
    for (const [k, v] of Object.entries(now.outcomes)) if (v !== (before.outcomes[k] ?? 0)) delta[k] = v - (before.outcomes[k] ?? 0);
    assert.equal(now.probes - before.probes, probes, 'swarmboot_tftp_probes_total counts the tsize probe');
    assert.deepEqual(delta, { probe: probes, ok, ...(notFound ? { not_found: notFound } : {}) }, 'transfers by outcome: no failure, no timeout, no client error');
  };
  /** An optional file that is not there: ERROR 1 at once (no resend, no timeout), so Windows Boot Manager moves on. */
  const assertMissing = (r: ReadResult): void => {
    assert.deepEqual(r.error, { code: 1, message: 'file not found' }, r.file);
    assert.equal(r.resends, 0, `${r.file}: answered at the first request`);
    assert.ok(r.ms < 1000, `${r.file}: refused in ${r.ms} ms`);
  };
  /** The TFTP transfers the daemon logged for one client address, in order: [name as sent (normalised), outcome]. */
  const loggedTransfers = (ip: string): Array<[string, string]> =>
    daemon
      .output()
      .split('\n')
      .filter((l) => l.includes('"component":"tftp"') && l.includes(`"client":"${ip}:`) && /"outcome":/.test(l))
      .map((l) => JSON.parse(l) as { file: string; outcome: string })
      // Refusals log the name as sent (backslashes); transfers log it normalised.
      .map((j) => [j.file.replace(/\\/g, '/').replace(/^\/+/, ''), j.outcome]);
  const why = () => `\n--- swarmboot (tail) ---\n${daemon.output().slice(-3000)}`;

  before(async () => {
    // radvd: the real-iPXE test's iPXE would wait ~15 s for a router advertisement without it.
    lab = await createLab('winpe', { net: NET });
    addTap(lab, 'tap0');
    const dir = path.join(lab.dir, 'swarmboot');
    const tftpRoot = path.join(dir, 'tftp');
    mkdirSync(path.join(dir, 'content'), { recursive: true });
    for (const [name, size] of Object.entries(FILES)) {
      const p = path.join(tftpRoot, name);
      mkdirSync(path.dirname(p), { recursive: true });
      const bytes = name === 'tools/wimboot' ? readFileSync(WIMBOOT_STANDIN) : randomBytes(size);
      writeFileSync(p, bytes);
      hashes.set(name, sha256(bytes));
      sizes.set(name, bytes.length);
    }
    writeFileSync(path.join(dir, 'swarmboot.yaml'), config());
    daemon = exec(lab, lab.srv, NODE, [path.join(ROOT, 'cli.ts'), 'serve', '--config', path.join(dir, 'swarmboot.yaml'), '--no-watch'], {
      label: 'swarmboot-winpe',
      env: { ...process.env, SWARMBOOT_ADMIN_TOKEN: TOKEN, NODE_NO_WARNINGS: '1' },
    });
    await daemon.waitFor(/"msg":"swarmboot started"/, 30_000);
  });

  after(async () => {
    if (lab) await destroyLab(lab);
  });

  /** Every window but the last brought exactly what its ACK asked for (capped by the server's limit). */
  function assertWindows(r: ReadResult, label: string): void {
    assert.ok(r.windows.length > 1, `${label}: windowed`);
    r.windows.forEach((w, i) => {
      const want = Math.min(w.asked, MAX_WINDOW);
      if (i < r.windows.length - 1) assert.equal(w.got, want, `${label}: window ${i} asked ${w.asked}, got ${w.got}`);
      else assert.ok(w.got >= 1 && w.got <= want, `${label}: last window ${w.got} of ${want}`);
    });
  }

  function assertBytes(r: ReadResult, name: string): void {
    assert.equal(r.error, undefined, `${r.file}: ${JSON.stringify(r.error)}`);
    assert.equal(r.size, FILES[name], `${r.file}: size`);
    assert.equal(r.sha256, hashes.get(name), `${r.file}: SHA-256 of ${name}`);
  }

  test('UEFI x64: DHCP hands out bootmgfw.efi + option 252; firmware probes and fetches it; bootmgr reads BCD, boot.sdi, boot.wim with msftwindow', async () => {
    const counted = await tftpCounters();
    const ns = addPeer(lab, 'pcuefi');
    const d = await client<DhcpResult>(ns, { dhcp: { mac: MAC.uefi, arch: 7, vendorClass: 'PXEClient:Arch:00007:UNDI:003016', uuid: UUID.uefi } });
    assert.equal(d.error, undefined, `${JSON.stringify(d)}${why()}`);
    for (const reply of [d.offer!, d.ack!]) {
      assert.equal(reply.siaddr, SERVER);
      assert.equal(reply.vendorClass, 'PXEClient');
      assert.equal(reply.file, 'WinPE/boot/x64/bootmgfw.efi');
      assert.equal(reply.bootfile, 'WinPE/boot/x64/bootmgfw.efi');
      assert.equal(reply.bcdPath, '\\WinPE\\Boot\\BCD', 'option 252: the BCD path for Windows Boot Manager');
      assert.equal(reply.opt97, `00${UUID.uefi.replace(/-/g, '')}`, 'option 97 echoed');
    }
    const ip = d.ack!.yiaddr;

    // Handing out bootmgr is the last thing swarmboot sees before WinPE asks for its sequence.
    const m = await admin(`/api/v1/machines/${MAC.uefi}`);
    assert.equal(m.deployment.state, 'booting', JSON.stringify(m));
    assert.ok(m.events.some((e) => e.state === 'booting' && /Windows Boot Manager handed out \(uefi-x64\)/.test(e.message ?? '')), JSON.stringify(m.events));

    const bootfile = d.ack!.bootfile!;
    const bcd = d.ack!.bcdPath!;
    const reads: ReadRequest[] = [
      // UEFI PXE (EDK2): size probe, aborted with ERROR 8 once the OACK says the size …
      { file: bootfile, options: [['blksize', '1468'], ['tsize', '0']], abortAfterOack: { code: 8, message: 'User aborted the transfer' } },
      // … then the download itself.
      { file: bootfile, options: [['blksize', '1468'], ['windowsize', '4']] },
      // bootmgfw.efi: the BCD at the option-252 path, its optional files (fonts, language
      // resources: two missing, one present), then what the BCD names, as the admin typed it.
      { file: bcd, options: BOOTMGR_OPTS, msftWindows: MSFT_WINDOWS },
      { file: '\\WinPE\\Boot\\Fonts\\wgl4_boot.ttf', options: BOOTMGR_OPTS },
      { file: '\\WinPE\\Boot\\en-US\\bootmgr.exe.mui', options: BOOTMGR_OPTS },
      { file: '\\WinPE\\Boot\\Fonts\\segmono_boot.ttf', options: BOOTMGR_OPTS, msftWindows: MSFT_WINDOWS },
      { file: '\\winpe\\Boot\\boot.sdi', options: BOOTMGR_OPTS, msftWindows: MSFT_WINDOWS },
      { file: '\\WINPE\\sources\\boot.wim', options: BOOTMGR_OPTS, msftWindows: MSFT_WINDOWS },
    ];
    const r = await client<ReadResult[]>(ns, { tftp: { server: d.ack!.siaddr, reads } });

    const [probe, efi, bcdRead, wgl4, mui, segmono, sdi, wim] = r as [ReadResult, ReadResult, ReadResult, ReadResult, ReadResult, ReadResult, ReadResult, ReadResult];
    assertMissing(wgl4);
    assertMissing(mui);
    assertBytes(segmono, 'winpe/Boot/Fonts/segmono_boot.ttf');
    assert.equal(probe.error, undefined);
    assert.deepEqual(probe.oack, { blksize: '1456', tsize: String(FILES['winpe/Boot/x64/bootmgfw.efi']) }, 'probe: size announced, blksize clamped to 1456');
    assert.equal(probe.size, 0);
    assert.deepEqual(efi.oack, { blksize: '1456', windowsize: '4' });
    assertBytes(efi, 'winpe/Boot/x64/bootmgfw.efi');
    assertWindows(efi, 'bootmgfw.efi');
    for (const [res, name] of [[bcdRead, 'winpe/Boot/BCD'], [sdi, 'winpe/Boot/boot.sdi'], [wim, 'winpe/sources/boot.wim']] as const) {
      assert.deepEqual(res.oack, { blksize: '1456', tsize: String(FILES[name]), windowsize: '8', msftwindow: '27182' }, `${res.file}: OACK`);
      assertBytes(res, name);
      assertWindows(res, res.file);
    }
    assert.ok(wim.windows.some((w) => w.asked === 1 && w.got === 1), 'a window of one is honoured');

    // What swarmboot logged, in order: the probe is a probe, everything else completed.
    assert.deepEqual(loggedTransfers(ip), [
      ['WinPE/boot/x64/bootmgfw.efi', 'probe'],
      ['WinPE/boot/x64/bootmgfw.efi', 'ok'],
      ['WinPE/Boot/BCD', 'ok'],
      ['WinPE/Boot/Fonts/wgl4_boot.ttf', 'not_found'],
      ['WinPE/Boot/en-US/bootmgr.exe.mui', 'not_found'],
      ['WinPE/Boot/Fonts/segmono_boot.ttf', 'ok'],
      ['winpe/Boot/boot.sdi', 'ok'],
      ['WINPE/sources/boot.wim', 'ok'],
    ], why());
    await assertCounted(counted, 1, 5, 2);
  });

  test('BIOS: DHCP hands out pxeboot.n12 + option 252; PXE ROM probes (ERROR 0) and fetches it; bootmgr.exe, BCD, boot.sdi, boot.wim with RFC 7440 windows', async () => {
    const counted = await tftpCounters();
    const ns = addPeer(lab, 'pcbios');
    const d = await client<DhcpResult>(ns, { dhcp: { mac: MAC.bios, arch: 0, vendorClass: 'PXEClient:Arch:00000:UNDI:002001', uuid: UUID.bios } });
    assert.equal(d.error, undefined, `${JSON.stringify(d)}${why()}`);
    assert.equal(d.ack!.file, 'WinPE/boot/pxeboot.n12');
    assert.equal(d.ack!.bootfile, 'WinPE/boot/pxeboot.n12');
    assert.equal(d.ack!.bcdPath, '\\WinPE\\Boot\\BCD');
    assert.equal(d.offer!.bcdPath, '\\WinPE\\Boot\\BCD');
    const m = await admin(`/api/v1/machines/${MAC.bios}`);
    assert.equal(m.deployment.state, 'booting');
    assert.ok(m.events.some((e) => e.state === 'booting' && /Windows Boot Manager handed out \(bios\)/.test(e.message ?? '')), JSON.stringify(m.events));

    const ip = d.ack!.yiaddr;
    const win: Array<[string, string]> = [['blksize', '1456'], ['tsize', '0'], ['windowsize', '16']];
    const r = await client<ReadResult[]>(ns, {
      tftp: {
        server: d.ack!.siaddr,
        reads: [
          { file: d.ack!.file, options: [['tsize', '0'], ['blksize', '1456']], abortAfterOack: { code: 0, message: 'TFTP Aborted' } },
          { file: d.ack!.file, options: [['blksize', '1456']] },
          { file: 'WinPE\\boot\\bootmgr.exe', options: [['blksize', '1456'], ['tsize', '0']] },
          { file: d.ack!.bcdPath!, options: [['blksize', '1456'], ['tsize', '0']] },
          { file: '\\WinPE\\Boot\\en-US\\bootmgr.exe.mui', options: [['blksize', '1456'], ['tsize', '0']] },
          { file: '\\WinPE\\BOOT\\BOOT.SDI', options: win },
          { file: '\\winpe\\Sources\\Boot.wim', options: win },
        ],
      },
    });
    const [probe, n12, bootmgr, bcd, mui, sdi, wim] = r as [ReadResult, ReadResult, ReadResult, ReadResult, ReadResult, ReadResult, ReadResult];
    assertMissing(mui);
    assert.equal(probe.error, undefined);
    assert.deepEqual(probe.oack, { tsize: String(FILES['winpe/Boot/pxeboot.n12']), blksize: '1456' });
    assertBytes(n12, 'winpe/Boot/pxeboot.n12');
    assertBytes(bootmgr, 'winpe/Boot/bootmgr.exe');
    assertBytes(bcd, 'winpe/Boot/BCD');
    assert.ok(bcd.windows.length > 100, 'lock-step: one ACK per block');
    assertBytes(sdi, 'winpe/Boot/boot.sdi');
    assertBytes(wim, 'winpe/sources/boot.wim');
    for (const res of [sdi, wim]) {
      assert.equal(res.oack?.windowsize, '16');
      assertWindows(res, res.file);
    }
    assert.deepEqual(loggedTransfers(ip), [
      ['WinPE/boot/pxeboot.n12', 'probe'],
      ['WinPE/boot/pxeboot.n12', 'ok'],
      ['WinPE/boot/bootmgr.exe', 'ok'],
      ['WinPE/Boot/BCD', 'ok'],
      ['WinPE/Boot/en-US/bootmgr.exe.mui', 'not_found'],
      ['WinPE/BOOT/BOOT.SDI', 'ok'],
      ['winpe/Sources/Boot.wim', 'ok'],
    ], why());
    await assertCounted(counted, 1, 5, 1);
  });

  test('iPXE + wimboot over HTTP: the script is handed out by DHCP, marks the deployment booting, and every URL it names serves the right bytes (curl)', async () => {
    const ns = addPeer(lab, 'pcipxe');
    const mac = MAC.wimboot;
    const d = await client<DhcpResult>(ns, { dhcp: { mac, arch: 7, ipxe: true } });
    assert.equal(d.error, undefined, `${JSON.stringify(d)}${why()}`);
    const scriptUrl = `${BASE}/boot/${mac.replace(/:/g, '-')}.ipxe`;
    assert.equal(d.ack!.bootfile, scriptUrl, 'iPXE gets its per-machine script, never iPXE again');
    assert.equal((await admin(`/api/v1/machines/${mac}`)).deployment.state, 'pending', 'DHCP alone does not mark a wimboot deployment booting');

    const curl = async (url: string, out: string): Promise<{ code: string; bytes: Buffer }> => {
      const file = path.join(lab.dir, out);
      const code = await run(lab, ns, 'curl', ['-sS', '--retry', '2', '-o', file, '-w', '%{http_code}', url], 30_000);
      return { code, bytes: readFileSync(file) };
    };
    const script = (await curl(scriptUrl, 'script.ipxe')).bytes.toString('utf8');
    assert.match(script, /^#!ipxe\n/);
    const state = await admin(`/api/v1/machines/${mac}`);
    assert.equal(state.deployment.state, 'booting', 'serving the script marks the deployment booting');

    // Every `kernel URL …` and `initrd -n NAME URL` line, in order.
    const loads = script
      .split('\n')
      .map((l) => /^(kernel|initrd -n (\S+)) (http:\/\/\S+)/.exec(l))
      .filter((x): x is RegExpExecArray => x !== null)
      .map((x) => ({ name: x[2] ?? 'wimboot', url: x[3]! }));
    assert.deepEqual(loads.map((l) => l.name), ['wimboot', 'bootmgr', 'BCD', 'boot.sdi', 'boot.wim', 'winpeshl.ini', 'swarmboot.cmd'], script);
    // bootmgr is loaded by BIOS only: UEFI wimboot takes bootmgfw.efi from boot.wim.
    const lines = script.split('\n');
    const efiJump = lines.indexOf('iseq ${platform} efi && goto winpe_efi ||');
    const efiLabel = lines.indexOf(':winpe_efi');
    const bootmgrLine = lines.findIndex((l) => l.startsWith('initrd -n bootmgr '));
    assert.ok(efiJump >= 0 && efiJump < bootmgrLine && bootmgrLine < efiLabel, script);
    assert.match(script, /^kernel \S+\/tftp\/tools\/wimboot gui /m);

    const fromRoot: Record<string, string> = {
      wimboot: 'tools/wimboot',
      bootmgr: 'winpe/bootmgr',
      BCD: 'winpe/Boot/BCD',
      'boot.sdi': 'winpe/Boot/boot.sdi',
      'boot.wim': 'winpe/sources/boot.wim',
    };
    let hook = '';
    for (const l of loads) {
      const got = await curl(l.url, `dl-${l.name}`);
      assert.equal(got.code, '200', `${l.name}: ${l.url}`);
      const src = fromRoot[l.name];
      if (src) {
        assert.ok(l.url.startsWith(`${BASE}/tftp/`), l.url);
        assert.equal(got.bytes.length, sizes.get(src), `${l.name}: size`);
        assert.equal(sha256(got.bytes), hashes.get(src), `${l.name}: the bytes of ${src}`);
      } else if (l.name === 'winpeshl.ini') {
        assert.equal(got.bytes.toString('latin1'), renderWinpeshl());
        assert.match(got.bytes.toString('latin1'), /\[LaunchApps\]\r\n%SYSTEMROOT%\\System32\\wpeinit\.exe\r\n.*swarmboot\.cmd\r\n/);
      } else {
        hook = got.bytes.toString('latin1');
      }
    }
    const seqUrl = `${BASE}/api/v1/machines/${mac}/sequence`;
    assert.ok(hook.includes(`\r\nset SWARMBOOT_URL=${BASE}\r\n`), hook);
    assert.ok(hook.includes(`\r\nset SWARMBOOT_SEQUENCE_URL=${seqUrl}\r\n`), hook);
    assert.ok(hook.includes(`\r\nset SWARMBOOT_EVENTS_URL=${BASE}/api/v1/machines/${mac}/events\r\n`), hook);
    assert.ok(hook.includes(`\r\nset SWARMBOOT_MAC=${mac}\r\n`), hook);

    // What the WinPE side does next: ask for its task sequence at the URL the hook names.
    const seq = await curl(seqUrl, 'sequence.json');
    assert.equal(seq.code, '200', seq.bytes.toString());
    const body = JSON.parse(seq.bytes.toString()) as { mac: string; sequence: string; steps: unknown[] };
    assert.equal(body.mac, mac);
    assert.equal(body.sequence, 'winpe-http');
    assert.equal(body.steps.length, 1);
  });
  test('real iPXE (SeaBIOS + iPXE ROM) runs the wimboot script: every file fetched once, in order, the injected ones included, and boot hands over to the stand-in wimboot', { timeout: 120_000 }, async () => {
    const mac = MAC.wimbootVm;
    const hy = mac.replace(/:/g, '-');
    // The previous test's last request may still be on its way into the log (the line is written after the
    // response, and log lines are batched): start counting once the daemon's output has been quiet for 200 ms.
    let seen = -1;
    while (daemon.output().length !== seen) {
      seen = daemon.output().length;
      await new Promise((r) => setTimeout(r, 200));
    }
    const from = daemon.output().length;
    const vm = startVm({ lab, tap: 'tap0', firmware: 'bios', mac, serialLog: path.join(lab.dir, 'wimboot-vm.serial.log'), timeoutMs: 110_000 });
    const since = () => daemon.output().slice(from).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string; url?: string; status?: number });
    const started = Date.now();
    try {
      // The last file, then 12 s without another request: had `boot` failed, the script's failure
      // path would have fetched the script again after its 10 s pause.
      let lastAt = 0;
      for (;;) {
        const n = since().filter((l) => l.msg === 'request').length;
        const done = since().some((l) => l.msg === 'request' && l.url === `/boot/${hy}/swarmboot.cmd`);
        if (done && !lastAt) lastAt = Date.now();
        if (lastAt && n > 8) break;
        if (lastAt && Date.now() - lastAt > 12_000) break;
        assert.ok(Date.now() - started < 90_000, `iPXE did not get through the script${why()}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      await vm.kill();
    }
    const requests = since().filter((l) => l.msg === 'request').map((l) => `${l.status} ${l.url}`);
    const first = requests.indexOf(`200 /boot/${hy}/swarmboot.cmd`);
    assert.deepEqual(requests.slice(0, first + 1), [
      `200 /boot/${hy}.ipxe`,
      '200 /tftp/tools/wimboot',
      '200 /tftp/WinPE/bootmgr',
      '200 /tftp/WinPE/Boot/BCD',
      '200 /tftp/WinPE/Boot/boot.sdi',
      '200 /tftp/WinPE/sources/boot.wim',
      `200 /boot/${hy}/winpeshl.ini`,
      `200 /boot/${hy}/swarmboot.cmd`,
    ], why());
    assert.equal(requests.length, first + 1, `nothing after the last file: boot did not fail back into the script\n${requests.join('\n')}`);
    const m = await admin(`/api/v1/machines/${mac}`);
    assert.equal(m.deployment.state, 'booting', 'serving the script marked it booting');
  });
});

describe('WinPE through Windows Boot Manager beside the site DHCP server (swarmboot as ProxyDHCP)', { skip: SKIP, timeout: 90_000 }, () => {
  const net = '10.71.0';
  let lab: Lab;
  let daemon: LabProcess;
  const bootfile = { uefi: 'WinPE/boot/x64/bootmgfw.efi', bios: 'WinPE/boot/pxeboot.n12' } as const;
  const why = () => `\n--- swarmboot (tail) ---\n${daemon.output().slice(-3000)}`;

  before(async () => {
    lab = await createLab('winpe-proxy', { net, ipv6: 'off' });
    await startSiteDhcp(lab, { range: [100, 150] });
    const dir = path.join(lab.dir, 'swarmboot');
    for (const name of ['winpe/Boot/x64/bootmgfw.efi', 'winpe/Boot/pxeboot.n12']) {
      mkdirSync(path.dirname(path.join(dir, 'tftp', name)), { recursive: true });
      writeFileSync(path.join(dir, 'tftp', name), randomBytes(20_000));
    }
    mkdirSync(path.join(dir, 'content'), { recursive: true });
    writeFileSync(path.join(dir, 'swarmboot.yaml'), config('proxy', net));
    daemon = exec(lab, lab.srv, NODE, [path.join(ROOT, 'cli.ts'), 'serve', '--config', path.join(dir, 'swarmboot.yaml'), '--no-watch'], {
      label: 'swarmboot-winpe-proxy',
      env: { ...process.env, SWARMBOOT_ADMIN_TOKEN: TOKEN, NODE_NO_WARNINGS: '1' },
    });
    await daemon.waitFor(/"msg":"swarmboot started"/, 30_000);
  });

  after(async () => {
    if (lab) await destroyLab(lab);
  });

  for (const fw of ['uefi', 'bios'] as const) {
    test(`${fw}: the ProxyDHCP OFFER (port 67) and the boot server ACK (port 4011) carry ${bootfile[fw]} and option 252; the site server gives the address`, async () => {
      const ns = addPeer(lab, `px${fw}`);
      const out = await run(lab, ns, NODE, [path.join(ROOT, 'test/e2e/winpe-client.ts'), JSON.stringify({ dhcp: { mac: MAC[fw], arch: fw === 'uefi' ? 7 : 0, vendorClass: `PXEClient:Arch:0000${fw === 'uefi' ? 7 : 0}:UNDI:003016`, uuid: UUID[fw], proxy: true } })], 60_000);
      const d = JSON.parse(out) as DhcpResult;
      assert.equal(d.error, undefined, `${out}${why()}`);
      const site = d.offers!.filter((o) => o.yiaddr !== '0.0.0.0');
      const proxy = d.offers!.filter((o) => o.vendorClass === 'PXEClient');
      // One ProxyDHCP offer per DISCOVER: the client repeats its DISCOVER while the site server (which pings first) is slower.
      assert.ok(proxy.length >= 1, out);
      assert.ok(site.length >= 1 && site.every((o) => o.from === `${net}.2` && o.bcdPath === undefined && !o.bootfile), `the site server's offer is addresses only: ${out}`);
      for (const p of proxy) {
        assert.equal(p.from, `${net}.1`);
        assert.equal(p.yiaddr, '0.0.0.0', 'ProxyDHCP never offers an address');
        assert.equal(p.siaddr, `${net}.1`);
        assert.equal(p.bootfile, bootfile[fw]);
        assert.equal(p.bcdPath, '\\WinPE\\Boot\\BCD', 'option 252 in the ProxyDHCP offer');
      }
      const p = proxy[0]!;
      assert.equal(d.ack!.from, `${net}.2`);
      const ack = d.pxeAck!;
      assert.equal(ack.fromPort, 4011);
      assert.equal(ack.bootfile, bootfile[fw]);
      assert.equal(ack.bcdPath, '\\WinPE\\Boot\\BCD', 'option 252 in the boot server ACK');
      // The firmware then fetches the boot program from siaddr.
      const reads = await run(lab, ns, NODE, [path.join(ROOT, 'test/e2e/winpe-client.ts'), JSON.stringify({ tftp: { server: p.siaddr, reads: [{ file: p.bootfile, options: [['blksize', '1456']] }] } })], 60_000);
      const [r] = JSON.parse(reads) as ReadResult[];
      assert.equal(r!.error, undefined, reads);
      assert.equal(r!.size, 20_000);
      const m = await httpRequest(lab, lab.srv, `http://${net}.1:8080/api/v1/machines/${MAC[fw]}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal((JSON.parse(m.body) as { deployment: { state: string } }).deployment.state, 'booting', m.body);
    });
  }
});
