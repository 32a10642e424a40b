/**
 * A private network segment for the real-firmware tests, built from network namespaces this run
 * creates (names end in the PID): a server namespace holding bridge br0 (10.66.0.1/24 by default)
 * and the VMs' tap devices, optionally a "site" namespace whose dnsmasq hands out addresses only.
 * Nothing is routed out: the segment exists only inside these namespaces. Every process started
 * through the lab is tracked and killed by PID in destroyLab(), every namespace deleted, even on
 * failure (and on process exit, if a test forgot).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, createWriteStream, mkdtempSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import assert from 'node:assert/strict';

const execFileP = promisify(execFile);

/**
 * The skip reason for an e2e suite whose prerequisites (root, tools, firmware files) are missing.
 * With SWARMBOOT_E2E_REQUIRED=1 (set by .ci/run) a missing prerequisite is a failing test instead,
 * so CI can never pass by skipping the real-firmware tests.
 */
export function e2eSkip(file: string, reason: string | undefined): string | undefined {
  if (!reason) return undefined;
  if (process.env.SWARMBOOT_E2E_REQUIRED === '1') {
    test(`${file}: prerequisites`, () => {
      assert.fail(`${reason}; SWARMBOOT_E2E_REQUIRED=1 makes this a failure instead of a skip`);
    });
  }
  return reason;
}

export const ROOT = path.resolve(import.meta.dirname, '../..');
/** Node 24 from the project (the system node is older). */
export const NODE = path.join(ROOT, 'node_modules/.bin/node');

export interface LabProcess {
  /** Short label used in logs and errors. */
  label: string;
  ns: string;
  child: ChildProcess;
  /** stdout and stderr so far (interleaved, capped at the last 4 MiB). */
  output(): string;
  /** Where the full output is written. */
  logFile: string;
  /** Resolves with the first output match of `re` (checked on every chunk); rejects on exit or timeout. */
  waitFor(re: RegExp, ms?: number): Promise<RegExpMatchArray>;
  /** SIGTERM, SIGKILL after `ms`; resolves with the exit code (null when killed by a signal). */
  stop(ms?: number): Promise<number | null>;
  exited: Promise<number | null>;
}

export interface Lab {
  /** `<name>-<pid>`, the suffix of every namespace name. */
  id: string;
  /** The server namespace: br0, taps, QEMU, the servers under test. */
  srv: string;
  /** The site namespace, once startSiteDhcp() made it. */
  site?: string;
  /** First three octets, e.g. "10.66.0". */
  net: string;
  /** br0's address, e.g. "10.66.0.1". */
  serverIp: string;
  prefixLen: number;
  /** Temporary folder for configs and logs; removed by destroyLab unless SWARMBOOT_E2E_KEEP=1. */
  dir: string;
  namespaces: string[];
  procs: LabProcess[];
  taps: string[];
  /** How IPv6 was set up; see createLab. */
  ipv6: 'radvd' | 'off';
  destroyed: boolean;
  onExit: () => void;
}

export interface LabOptions {
  /** First three octets of the /24 (only ever inside these namespaces). Default "10.66.0". */
  net?: string;
  /**
   * 'radvd' (default): br0 gets fd66:e2e::1/64 and radvd advertises it, so iPXE's IPv6 setup ends
   * at once instead of waiting ~15 s for a router advertisement that never comes.
   * 'off': IPv6 disabled in the namespaces (iPXE then waits out its timeout).
   */
  ipv6?: 'radvd' | 'off';
}

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Run a command inside a namespace and return its stdout (throws with stderr on failure). */
export async function run(lab: Lab, ns: string, cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
  try {
    const { stdout } = await execFileP('ip', ['netns', 'exec', ns, cmd, ...args], { timeout: timeoutMs, maxBuffer: 32 << 20 });
    return stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')} in ${ns}: ${err.message}${err.stderr ? `\n${err.stderr}` : ''}`);
  }
}

function sysctl(ns: string, key: string, value: string): void {
  execFileSync('ip', ['netns', 'exec', ns, 'sh', '-c', `echo ${value} > /proc/sys/${key.replace(/\./g, '/')}`], { stdio: 'ignore' });
}

function addNamespace(lab: Lab, role: string): string {
  const ns = `sbe2e-${role}-${lab.id}`;
  // Left over from a killed run that had our PID: it is ours to replace.
  try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* normal: it does not exist */ }
  ip('netns', 'add', ns);
  lab.namespaces.push(ns);
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  if (lab.ipv6 === 'off') {
    sysctl(ns, 'net.ipv6.conf.all.disable_ipv6', '1');
    sysctl(ns, 'net.ipv6.conf.default.disable_ipv6', '1');
  }
  return ns;
}

/** The server namespace with br0 up; IPv6 per options (radvd started here when chosen). */
export async function createLab(name: string, opts: LabOptions = {}): Promise<Lab> {
  const net = opts.net ?? '10.66.0';
  const dir = mkdtempSync(path.join(tmpdir(), `sbe2e-${name}-`));
  // dnsmasq and radvd may drop privileges; let them read their configs and the TFTP root.
  chmodSync(dir, 0o755);
  const lab: Lab = {
    id: `${name}-${process.pid}`,
    srv: '',
    net,
    serverIp: `${net}.1`,
    prefixLen: 24,
    dir,
    namespaces: [],
    procs: [],
    taps: [],
    ipv6: opts.ipv6 ?? 'radvd',
    destroyed: false,
    onExit: () => destroyLabSync(lab),
  };
  process.once('exit', lab.onExit);
  try {
    lab.srv = addNamespace(lab, 'srv');
    ip('-n', lab.srv, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
    ip('-n', lab.srv, 'addr', 'add', `${lab.serverIp}/${lab.prefixLen}`, 'dev', 'br0');
    ip('-n', lab.srv, 'link', 'set', 'br0', 'up');
    if (lab.ipv6 === 'radvd') await startRadvd(lab);
  } catch (e) {
    await destroyLab(lab);
    throw e;
  }
  return lab;
}

/** A tap device on br0 in the server namespace, for a QEMU started in that namespace. */
export function addTap(lab: Lab, tap: string): string {
  ip('-n', lab.srv, 'tuntap', 'add', 'dev', tap, 'mode', 'tap');
  ip('-n', lab.srv, 'link', 'set', tap, 'master', 'br0');
  ip('-n', lab.srv, 'link', 'set', tap, 'up');
  lab.taps.push(tap);
  return tap;
}

/**
 * A namespace joined to br0 by a veth pair (`<role>` in it as eth0 with `addr`), e.g. a site
 * DHCP server or a test client.
 */
export function addPeer(lab: Lab, role: string, addr?: string): string {
  const ns = addNamespace(lab, role);
  const port = `v${role}`.slice(0, 15);
  ip('-n', lab.srv, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  ip('-n', lab.srv, 'link', 'set', port, 'master', 'br0');
  ip('-n', lab.srv, 'link', 'set', port, 'up');
  if (addr) ip('-n', ns, 'addr', 'add', `${addr}/${lab.prefixLen}`, 'dev', 'eth0');
  ip('-n', ns, 'link', 'set', 'eth0', 'up');
  return ns;
}

/**
 * The site's own DHCP server beside swarmboot's ProxyDHCP: dnsmasq in namespace "site" at .2,
 * addresses only (no boot options, no DNS, no TFTP).
 */
export async function startSiteDhcp(lab: Lab, opts: { range?: [number, number]; extraConfig?: string[] } = {}): Promise<LabProcess> {
  const [lo, hi] = opts.range ?? [100, 150];
  lab.site = addPeer(lab, 'site', `${lab.net}.2`);
  const conf = path.join(lab.dir, 'site-dnsmasq.conf');
  writeFileSync(conf, [
    'port=0', 'no-resolv', 'no-hosts', 'bind-interfaces', 'interface=eth0', 'user=root',
    `dhcp-range=${lab.net}.${lo},${lab.net}.${hi},255.255.255.0,10m`,
    `dhcp-leasefile=${path.join(lab.dir, 'site-dnsmasq.leases')}`,
    'log-dhcp', 'log-facility=-',
    ...(opts.extraConfig ?? []),
  ].join('\n') + '\n');
  const p = exec(lab, lab.site, 'dnsmasq', ['-d', '-C', conf], { label: 'site-dnsmasq' });
  await p.waitFor(/DHCP, IP range/, 10_000);
  return p;
}

async function startRadvd(lab: Lab): Promise<void> {
  ip('-n', lab.srv, 'addr', 'add', 'fd66:e2e::1/64', 'dev', 'br0', 'nodad');
  // radvd refuses to advertise on a host that does not forward; this only touches our namespace.
  sysctl(lab.srv, 'net.ipv6.conf.all.forwarding', '1');
  const conf = path.join(lab.dir, 'radvd.conf');
  // AdvDefaultLifetime 0: not a default router, nothing routed anywhere; the prefix is ULA.
  writeFileSync(conf, `interface br0 {
  AdvSendAdvert on;
  MinRtrAdvInterval 3;
  MaxRtrAdvInterval 10;
  AdvDefaultLifetime 0;
  prefix fd66:e2e::/64 { AdvOnLink on; AdvAutonomous on; };
};
`);
  const p = exec(lab, lab.srv, 'radvd', ['-n', '-C', conf, '-p', path.join(lab.dir, 'radvd.pid'), '-m', 'stderr'], { label: 'radvd' });
  // radvd logs nothing on a clean start at -d 1; give it a moment and make sure it stayed up.
  const early = await Promise.race([p.exited.then((c) => ({ c })), new Promise<undefined>((r) => setTimeout(r, 300))]);
  if (early) throw new Error(`radvd exited (${early.c}): ${p.output()}`);
}

export interface ExecOptions {
  label?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Spawn `cmd args` inside namespace `ns`; tracked, and killed by destroyLab. */
export function exec(lab: Lab, ns: string, cmd: string, args: string[], opts: ExecOptions = {}): LabProcess {
  if (lab.destroyed) throw new Error('lab already destroyed');
  const label = opts.label ?? path.basename(cmd);
  // `ip netns exec` execs the command, so child.pid is the command's own PID.
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  });
  const logFile = path.join(lab.dir, `${label}.${lab.procs.length}.log`);
  const log: WriteStream = createWriteStream(logFile);
  let out = '';
  const waiters = new Set<() => void>();
  const onData = (b: Buffer) => {
    log.write(b);
    out += b.toString('utf8');
    if (out.length > 4 << 20) out = out.slice(-(4 << 20));
    for (const w of [...waiters]) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', (e) => { out += `\n[spawn error: ${e.message}]\n`; resolve(-1); });
    child.once('close', (code) => { log.end(); resolve(code); });
  });
  let done = false;
  void exited.then(() => { done = true; for (const w of [...waiters]) w(); });
  const p: LabProcess = {
    label,
    ns,
    child,
    logFile,
    output: () => out,
    exited,
    waitFor(re, ms = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(re);
          if (m) { finish(); resolve(m); return; }
          if (done) { finish(); reject(new Error(`${label} exited before printing ${re}:\n${out.slice(-4000)}`)); }
        };
        const timer = setTimeout(() => { finish(); reject(new Error(`${label}: no ${re} within ${ms} ms:\n${out.slice(-4000)}`)); }, ms);
        const finish = () => { clearTimeout(timer); waiters.delete(check); };
        waiters.add(check);
        check();
      });
    },
    async stop(ms = 3000) {
      if (!done && child.pid) {
        try { process.kill(child.pid, 'SIGTERM'); } catch { /* already gone */ }
        const t = setTimeout(() => { try { if (child.pid) process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }, ms);
        await exited;
        clearTimeout(t);
      }
      return exited;
    },
  };
  lab.procs.push(p);
  return p;
}

/**
 * An HTTP request made from inside namespace `ns` (the test process itself lives outside and
 * cannot reach the lab's addresses): a short Node fetch run there.
 */
export async function httpRequest(
  lab: Lab,
  ns: string,
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {},
): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const script = `const [u, i] = [process.argv[1], JSON.parse(process.argv[2])];
const r = await fetch(u, { method: i.method, headers: i.headers, body: i.body, signal: AbortSignal.timeout(i.timeoutMs) });
process.stdout.write(JSON.stringify({ status: r.status, headers: Object.fromEntries(r.headers), body: await r.text() }));`;
  const timeoutMs = init.timeoutMs ?? 10_000;
  const out = await run(lab, ns, NODE, ['--input-type=module', '-e', script, url, JSON.stringify({ ...init, timeoutMs })], timeoutMs + 5000);
  return JSON.parse(out) as { status: number; headers: Record<string, string>; body: string };
}

/** Kill every process the lab started (by PID, then anything left in its namespaces) and delete the namespaces. */
export async function destroyLab(lab: Lab): Promise<void> {
  if (lab.destroyed) return;
  await Promise.all(lab.procs.map((p) => p.stop(2000)));
  destroyLabSync(lab);
}

function destroyLabSync(lab: Lab): void {
  if (lab.destroyed) return;
  lab.destroyed = true;
  process.removeListener('exit', lab.onExit);
  for (const p of lab.procs) {
    try { if (p.child.pid && p.child.exitCode === null && p.child.signalCode === null) process.kill(p.child.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  for (const ns of [...lab.namespaces].reverse()) {
    // Grandchildren of ours (e.g. a shell's children) still in the namespace: only ours live there.
    try {
      for (const pid of execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean)) {
        try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
      }
    } catch { /* namespace already gone */ }
    try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* already gone */ }
  }
  if (process.env.SWARMBOOT_E2E_KEEP !== '1') rmSync(lab.dir, { recursive: true, force: true });
}
