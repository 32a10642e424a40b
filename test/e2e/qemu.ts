/**
 * Real PXE firmware under QEMU (software emulation), on a tap of a lab's bridge:
 * - bios: `-machine pc`, SeaBIOS, e1000 with QEMU's default iPXE option ROM (package ipxe-qemu),
 *   so the client is iPXE from its first DHCP packet;
 * - uefi: `-machine q35`, OVMF (4M build, fresh VARS copy per run), virtio-net-pci with an empty
 *   `romfile=` so OVMF's own VirtioNetDxe + PXE stack makes the first DHCP and TFTP requests, as a
 *   real UEFI machine does.
 * The serial console goes to a file; a QMP socket allows screendumps of the firmware screen.
 */
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { exec, type Lab, type LabProcess } from './lab.ts';

export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

export type Firmware = 'bios' | 'uefi';

export interface VmOptions {
  lab: Lab;
  /** A tap made by addTap(lab, …). */
  tap: string;
  firmware: Firmware;
  /** e.g. 52:54:00:e2:e0:01 */
  mac: string;
  /** File the serial console (ttyS0) is written to. */
  serialLog: string;
  timeoutMs: number;
  memoryMb?: number;
  /** QEMU accelerator; default `tcg` (or $SWARMBOOT_E2E_ACCEL). */
  accel?: string;
  /** Extra QEMU arguments, appended. */
  extraArgs?: string[];
  /** Take a screendump PNG next to serialLog when the VM times out (default true). */
  screendumpOnTimeout?: boolean;
}

export interface VmResult {
  firmware: Firmware;
  /** The serial console output. */
  serial: string;
  /** QEMU's exit code (0 after the guest powered off); null when killed. */
  exitCode: number | null;
  timedOut: boolean;
  durationMs: number;
  /** QEMU's own stdout/stderr. */
  qemuOutput: string;
  /** PNG written on timeout, if any. */
  screendump?: string;
}

export interface Vm {
  proc: LabProcess;
  qmpSocket: string;
  /** Resolves when QEMU exits or the timeout killed it. */
  result: Promise<VmResult>;
  /** Current serial output. */
  serial(): string;
  /** Resolves with the first serial-log match of `re` (polls the file). */
  waitForSerial(re: RegExp, ms: number): Promise<RegExpMatchArray>;
  /** A PNG of the VM's screen (firmware/iPXE messages that never reach the serial port). */
  screendump(pngPath: string): Promise<void>;
  kill(): Promise<void>;
}

/** The QEMU command line for a VM (exported for the README and for debugging by hand). */
export function qemuArgs(o: VmOptions & { varsFile?: string; qmpSocket?: string }): string[] {
  const accel = o.accel ?? process.env.SWARMBOOT_E2E_ACCEL ?? 'tcg';
  const nic = o.firmware === 'bios'
    ? `e1000,netdev=n0,mac=${o.mac},bootindex=0`
    : `virtio-net-pci,netdev=n0,mac=${o.mac},romfile=,bootindex=0`;
  return [
    '-name', `sbe2e-${o.firmware}`,
    '-machine', `${o.firmware === 'bios' ? 'pc' : 'q35'},accel=${accel}`,
    '-m', String(o.memoryMb ?? 512),
    '-smp', '1',
    '-nodefaults',
    '-vga', 'std',
    '-display', 'none',
    '-no-reboot',
    '-serial', `file:${o.serialLog}`,
    ...(o.qmpSocket ? ['-qmp', `unix:${o.qmpSocket},server=on,wait=off`] : []),
    ...(o.firmware === 'uefi'
      ? [
          '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`,
          '-drive', `if=pflash,format=raw,unit=1,file=${o.varsFile}`,
        ]
      : ['-boot', 'n']),
    '-netdev', `tap,id=n0,ifname=${o.tap},script=no,downscript=no`,
    '-device', nic,
    ...(o.extraArgs ?? []),
  ];
}

/** Start a VM inside the lab's server namespace. */
export function startVm(o: VmOptions): Vm {
  const base = o.serialLog.replace(/\.[^./]*$/, '');
  // In the lab folder: a unix socket path must stay under 108 bytes.
  const qmpSocket = path.join(o.lab.dir, `qmp-${o.firmware}-${o.lab.procs.length}.sock`);
  let varsFile: string | undefined;
  if (o.firmware === 'uefi') {
    if (!existsSync(OVMF_CODE)) throw new Error(`${OVMF_CODE} missing: apt-get install ovmf`);
    varsFile = `${base}.OVMF_VARS.fd`;
    copyFileSync(OVMF_VARS, varsFile);
  }
  const started = Date.now();
  const proc = exec(o.lab, o.lab.srv, 'qemu-system-x86_64', qemuArgs({ ...o, qmpSocket, ...(varsFile ? { varsFile } : {}) }), { label: `qemu-${o.firmware}` });
  const serial = () => { try { return readFileSync(o.serialLog, 'utf8'); } catch { return ''; } };
  let timedOut = false;
  let shot: string | undefined;
  const timer = setTimeout(() => {
    timedOut = true;
    void (async () => {
      if (o.screendumpOnTimeout !== false) {
        const png = `${base}.timeout.png`;
        try { await screendump(qmpSocket, png); shot = png; } catch { /* best effort */ }
      }
      await proc.stop(1000);
    })();
  }, o.timeoutMs);
  const result = proc.exited.then((exitCode) => {
    clearTimeout(timer);
    return {
      firmware: o.firmware,
      serial: serial(),
      exitCode,
      timedOut,
      durationMs: Date.now() - started,
      qemuOutput: proc.output(),
      ...(shot ? { screendump: shot } : {}),
    };
  });
  let exited = false;
  void proc.exited.then(() => { exited = true; });
  return {
    proc,
    qmpSocket,
    result,
    serial,
    async waitForSerial(re, ms) {
      const until = Date.now() + ms;
      for (;;) {
        const m = serial().match(re);
        if (m) return m;
        if (exited) throw new Error(`VM exited before ${re} appeared on its serial console`);
        if (Date.now() > until) throw new Error(`no ${re} on the serial console within ${ms} ms`);
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    screendump: (png) => screendump(qmpSocket, png),
    async kill() { await proc.stop(1000); },
  };
}

/** Start a VM and wait until it powers off (or times out and is killed). */
export async function runVm(o: VmOptions): Promise<VmResult> {
  return startVm(o).result;
}

/** Send QMP commands over the VM's socket; resolves with each command's `return`. */
export async function qmp(socket: string, commands: { execute: string; arguments?: Record<string, unknown> }[], timeoutMs = 10_000): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socket);
    const results: unknown[] = [];
    let buf = '';
    let sent = -1; // -1: waiting for the greeting; then index of the command awaiting its reply
    const all = [{ execute: 'qmp_capabilities' }, ...commands];
    const timer = setTimeout(() => { conn.destroy(); reject(new Error(`QMP ${socket}: timeout`)); }, timeoutMs);
    const next = () => {
      sent++;
      if (sent >= all.length) { clearTimeout(timer); conn.end(); resolve(results.slice(1)); return; }
      conn.write(JSON.stringify(all[sent]) + '\n');
    };
    conn.on('data', (d) => {
      buf += d.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as { QMP?: unknown; return?: unknown; error?: { desc: string }; event?: string };
        if (msg.event) continue;
        if (msg.QMP) { next(); continue; }
        if (msg.error) { clearTimeout(timer); conn.destroy(); reject(new Error(`QMP ${all[sent]?.execute}: ${msg.error.desc}`)); return; }
        results.push(msg.return);
        next();
      }
    });
    conn.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

/** A PNG of the VM's display (QEMU ≥ 7.1 writes PNG directly). */
export async function screendump(qmpSocket: string, pngPath: string): Promise<void> {
  await qmp(qmpSocket, [{ execute: 'screendump', arguments: { filename: path.resolve(pngPath), format: 'png' } }]);
}
