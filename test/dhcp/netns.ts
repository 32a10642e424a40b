/**
 * Private network segments for real-peer tests: network namespaces named `sbdhcp-<role>-<pid>`,
 * a bridge in the server namespace, veth ports into client namespaces. Every process started here
 * is tracked and killed by PID in cleanup(), and every namespace is deleted, even after a failure.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { DAEMON_V8_FLAGS } from '../../server/v8-flags.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const NODE = path.join(ROOT, 'node_modules/.bin/node');

/** Why the real-peer tests cannot run here, or undefined when they can. */
export function missingPrereq(tools: string[]): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  for (const t of ['ip', ...tools]) {
    try { execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' }); } catch { return `${t} is not installed (see .ci/apt/dhcp.txt)`; }
  }
  return undefined;
}

export interface Started {
  proc: ChildProcess;
  /** Lines of stdout so far. */
  lines: string[];
  /** Resolves with the first stdout line matching `re`. */
  line(re: RegExp, ms?: number): Promise<string>;
  /** SIGTERM, then SIGKILL after `ms`; resolves on exit. */
  stop(ms?: number): Promise<number | null>;
  exited: Promise<number | null>;
}

export class Lab {
  readonly tmp = mkdtempSync(path.join(tmpdir(), 'sbdhcp-'));
  private readonly namespaces: string[] = [];
  private readonly procs: Started[] = [];

  nsName(role: string): string {
    return `sbdhcp-${role}-${process.pid}`;
  }

  ip(...args: string[]): string {
    return execFileSync('ip', args, { encoding: 'utf8' });
  }

  exec(ns: string, cmd: string, args: string[]): string {
    return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8' });
  }

  addNs(role: string): string {
    const ns = this.nsName(role);
    // Left over from a killed run that had our PID: unlikely, but then it is ours to replace.
    try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* normal: it does not exist */ }
    this.ip('netns', 'add', ns);
    this.namespaces.push(ns);
    this.ip('-n', ns, 'link', 'set', 'lo', 'up');
    return ns;
  }

  /** A bridge (default `br0`) with `cidr` in namespace `ns`. */
  bridge(ns: string, cidr: string, name = 'br0'): void {
    this.ip('-n', ns, 'link', 'add', name, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
    this.ip('-n', ns, 'addr', 'add', cidr, 'dev', name);
    this.ip('-n', ns, 'link', 'set', name, 'up');
  }

  /**
   * A veth from `hostNs` (port `port`, enslaved to br0 when `bridged`) to `ns` as `ifname`.
   * Client namespaces get a 255.255.255.255 route so address-less test clients can broadcast like firmware.
   */
  link(hostNs: string, port: string, ns: string, ifname: string, opts: { bridged?: boolean; bridge?: string; cidr?: string; mac?: string } = {}): void {
    this.ip('-n', hostNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', ifname, 'netns', ns);
    if (opts.bridged !== false) this.ip('-n', hostNs, 'link', 'set', port, 'master', opts.bridge ?? 'br0');
    this.ip('-n', hostNs, 'link', 'set', port, 'up');
    if (opts.mac) this.ip('-n', ns, 'link', 'set', ifname, 'address', opts.mac);
    if (opts.cidr) this.ip('-n', ns, 'addr', 'add', opts.cidr, 'dev', ifname);
    this.ip('-n', ns, 'link', 'set', ifname, 'up');
    if (!opts.cidr) this.ip('-n', ns, 'route', 'add', '255.255.255.255', 'dev', ifname);
  }

  spawn(ns: string, cmd: string, args: string[], opts: { cpu?: number } = {}): Started {
    const argv = ['netns', 'exec', ns, cmd, ...args];
    // `ip netns exec` execs the command, so the child's PID is the program's own.
    const proc = opts.cpu === undefined ? spawn('ip', argv, { stdio: ['pipe', 'pipe', 'pipe'] })
      : spawn('taskset', ['-c', String(opts.cpu), 'ip', ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
    const lines: string[] = [];
    const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
    readline.createInterface({ input: proc.stdout! }).on('line', (l) => {
      lines.push(l);
      for (const w of [...waiters]) if (w.re.test(l)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(l); }
    });
    let stderr = '';
    proc.stderr!.on('data', (d) => { stderr = (stderr + String(d)).slice(-20_000); });
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    const started: Started = {
      proc, lines, exited,
      line: (re, ms = 15_000) => {
        const have = lines.find((l) => re.test(l));
        if (have) return Promise.resolve(have);
        return new Promise((resolve, reject) => {
          const w = { re, resolve: (l: string) => { clearTimeout(t); resolve(l); } };
          const t = setTimeout(() => {
            waiters.splice(waiters.indexOf(w), 1);
            reject(new Error(`${cmd}: no line matching ${re} within ${ms} ms; stdout: ${lines.join('\n').slice(-2000)} stderr: ${stderr.slice(-2000)}`));
          }, ms);
          waiters.push(w);
          exited.then(() => setTimeout(() => { if (waiters.includes(w)) { waiters.splice(waiters.indexOf(w), 1); clearTimeout(t); reject(new Error(`${cmd} exited: ${stderr.slice(-2000)} ${lines.join('\n').slice(-1000)}`)); } }, 50));
        });
      },
      stop: async (ms = 3000) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), ms);
        const code = await exited;
        clearTimeout(t);
        return code;
      },
    };
    this.procs.push(started);
    return started;
  }

  /** Run the DHCP runner in `ns` with `cfg`; resolves once it is listening. */
  async dhcp(ns: string, cfg: object, opts: { cpu?: number } = {}): Promise<Started & { ready: { ports: { server: number; pxe?: number } } }> {
    // With the daemon's V8 flags: its garbage collector pauses are part of what is measured.
    const s = this.spawn(ns, NODE, [...DAEMON_V8_FLAGS, path.join(ROOT, 'test/dhcp/runner.ts'), JSON.stringify(cfg)], opts);
    const l = await s.line(/^(READY|ERROR) /, 20_000);
    if (l.startsWith('ERROR')) throw new Error(`runner: ${l}`);
    return Object.assign(s, { ready: JSON.parse(l.slice(6)) });
  }

  /** Kill everything we started (by PID), delete our namespaces and files. */
  async cleanup(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.stop(2000).catch(() => undefined)));
    for (const ns of this.namespaces.reverse()) {
      try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* already gone */ }
    }
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

export async function waitFor<T>(what: string, fn: () => T | undefined | false, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
