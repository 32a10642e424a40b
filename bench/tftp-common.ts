/**
 * Shared by the TFTP benchmarks (bench/tftp.ts, bench/tftpmem.ts): a private network namespace, the servers
 * started inside it (swarmboot from type-stripped JS, atftpd, dnsmasq), the atftp client, RSS readings and
 * cleanup. Not a benchmark itself (the '-' in the name keeps it out of `npm run bench`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { randomFillSync } from 'node:crypto';
import os from 'node:os';
import { DAEMON_V8_FLAGS } from '../server/v8-flags.ts';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const NODE = process.execPath;
const HERE = path.dirname(fileURLToPath(import.meta.url));
export const BLKSIZE = 1456;

/** A namespace of its own per run (`<prefix>-<pid>`), with every process and file the run creates. */
export class Bench {
  readonly ns: string;
  readonly dir: string;
  readonly root: string;
  private readonly started: ChildProcess[] = [];

  constructor(prefix: string) {
    this.ns = `${prefix}-${process.pid}`;
    this.dir = mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
    chmodSync(this.dir, 0o755);
    this.root = path.join(this.dir, 'root');
    mkdirSync(this.root, { mode: 0o755 });
    sh('ip', ['netns', 'add', this.ns]);
    sh('ip', ['-n', this.ns, 'link', 'set', 'lo', 'up']);
    process.on('SIGINT', () => {
      void this.cleanup().then(() => process.exit(130));
    });
  }

  inNs(cmd: string, args: string[]): [string, string[]] {
    return ['ip', ['netns', 'exec', this.ns, cmd, ...args]];
  }

  /** Starts a long-running process in the namespace (`ip netns exec` execs, so its pid is the server's). */
  startDaemon(cmd: string, args: string[]): ChildProcess {
    const [c, a] = this.inNs(cmd, args);
    const p = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.track(p);
    let err = '';
    p.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
    p.once('exit', (code, sig) => {
      if (code !== 0 && sig === null) console.error(`${cmd} exited ${code}: ${err.trim()}`);
    });
    return p;
  }

  track(p: ChildProcess): void {
    this.started.push(p);
  }

  /**
   * swarmboot's TFTP server alone in its own process (so its RSS is its own), run from type-stripped JS as
   * the daemon runs from tsc's output in production. Resolves with the process and its port.
   */
  async startSwarmboot(opts: Record<string, unknown> = {}): Promise<{ proc: ChildProcess; port: number }> {
    const js = path.join(this.dir, 'js');
    buildJs(js);
    // The V8 flag the daemon runs with (cli.ts re-executes `serve` with it), so RSS is production's.
    const proc = this.startDaemon(NODE, [...DAEMON_V8_FLAGS, path.join(js, 'bench/tftp-serve.js'), JSON.stringify({ root: this.root, host: '127.0.0.1', port: 0, maxTransfers: 500, ...opts })]);
    const port = Number((await waitLine(proc, /READY (\d+)/))[1]);
    return { proc, port };
  }

  startAtftpd(port: number): ChildProcess {
    return this.startDaemon('atftpd', ['--daemon', '--no-fork', '--port', String(port), '--bind-address', '127.0.0.1', '--user', 'root', '--group', 'root', '--logfile', '/dev/null', '--maxthread', '200', this.root]);
  }

  /** dnsmasq's TFTP server on port 69 of the namespace's own loopback. */
  startDnsmasq(): ChildProcess {
    return this.startDaemon('dnsmasq', ['-k', '--port=0', '--conf-file=/dev/null', '--enable-tftp', `--tftp-root=${this.root}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--tftp-max=500', '--quiet-tftp', '--user=root', '--pid-file=']);
  }

  async waitUdpPort(port: number, ms = 10000): Promise<void> {
    const t0 = Date.now();
    const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
    let out = '';
    while (Date.now() < t0 + ms) {
      out = sh('ip', ['netns', 'exec', this.ns, 'cat', '/proc/net/udp']);
      if (out.split('\n').some((l) => l.trim().split(/\s+/)[1]?.endsWith(hex))) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`nothing listening on udp ${port} after ${Date.now() - t0} ms: ${out}`);
  }

  /**
   * One atftp download to /dev/null (blksize 1456; windowsize when ws > 1); resolves with seconds taken and how
   * often atftp's own timer (5 s unless `clientTimeoutS`) ran out: it then repeats its ACK, recovered but stalled.
   */
  fetchTimed(port: number, file: string, ws: number, clientTimeoutS?: number): Promise<{ seconds: number; clientTimeouts: number }> {
    const opts = ['--option', `blksize ${BLKSIZE}`];
    if (ws > 1) opts.push('--option', `windowsize ${ws}`);
    if (clientTimeoutS !== undefined) opts.push('--tftp-timeout', String(clientTimeoutS));
    const [c, a] = this.inNs('atftp', ['--get', '-r', file, '-l', '/dev/null', ...opts, '127.0.0.1', String(port)]);
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      const p = spawn(c, a, { stdio: ['ignore', 'ignore', 'pipe'] });
      this.track(p);
      let err = '';
      p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      p.on('exit', (code) => {
        // atftp reports some failures with exit status 0: its messages tell.
        if (code === 0 && !/error|aborting/i.test(err)) resolve({ seconds: (performance.now() - t0) / 1000, clientTimeouts: err.match(/timeout: retrying/g)?.length ?? 0 });
        else reject(new Error(`atftp ${file} from :${port} failed (${code}): ${err.trim().slice(-1500)}`));
      });
    });
  }

  async fetch(port: number, file: string, ws: number): Promise<number> {
    return (await this.fetchTimed(port, file, ws)).seconds;
  }

  /** Drops `permille`/1000 of all UDP packets arriving in the namespace, at random (nftables; this kernel has no sch_netem). */
  setLoss(permille: number): void {
    spawnSync('ip', ['netns', 'exec', this.ns, 'nft', 'delete', 'table', 'inet', 'sbtftp_bench_loss']);
    // swarmboot sends a window as one UDP GSO buffer, and loopback (tx-udp-segmentation on, as Linux sets it) carries
    // it whole to the receiving socket, where it is cut into datagrams: the input hook below would see, and drop,
    // whole windows. Under loss it is cut in software before the device instead, as for a NIC without UDP
    // segmentation offload, so the rule meets single datagrams as it would on a wire.
    const seg = spawnSync('ip', ['netns', 'exec', this.ns, 'ethtool', '-K', 'lo', 'tx-udp-segmentation', permille > 0 ? 'off' : 'on']);
    if (seg.status !== 0 && permille > 0) console.error('ethtool missing: the loss rule drops whole GSO windows, not datagrams');
    if (permille <= 0) return;
    const rules = `table inet sbtftp_bench_loss {
  chain in {
    type filter hook input priority 0; policy accept;
    meta l4proto udp numgen random mod 1000 < ${permille} counter drop
  }
}
`;
    const r = spawnSync('ip', ['netns', 'exec', this.ns, 'nft', '-f', '-'], { input: rules, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`nft: ${r.stderr}`);
  }

  /** Packets dropped by the loss rule since it was set. */
  lossDropped(): number {
    const out = spawnSync('ip', ['netns', 'exec', this.ns, 'nft', 'list', 'table', 'inet', 'sbtftp_bench_loss'], { encoding: 'utf8' }).stdout ?? '';
    return Number(out.match(/packets (\d+)/)?.[1] ?? 0);
  }

  async cleanup(): Promise<void> {
    for (const p of this.started) {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
    await new Promise((r) => setTimeout(r, 100));
    spawnSync('ip', ['netns', 'del', this.ns]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Run a benchmark's `main` with a fresh Bench, and clean everything up whatever happens. */
export async function runBench(prefix: string, main: (bench: Bench) => Promise<void>): Promise<void> {
  const bench = new Bench(prefix);
  try {
    await main(bench);
  } catch (e) {
    console.error(e);
    process.exitCode = 1;
  } finally {
    await bench.cleanup();
  }
}

export function sh(cmd: string, args: string[], allowFail = false): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0 && !allowFail) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

export async function waitLine(p: ChildProcess, re: RegExp, ms = 10000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`timeout waiting for ${re}: ${buf}`)), ms);
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const m = buf.match(re);
      if (m) {
        clearTimeout(timer);
        p.stdout!.off('data', onData);
        resolve(m);
      }
    };
    p.stdout!.on('data', onData);
    p.once('exit', (code) => reject(new Error(`exited ${code} before ${re}: ${buf}`)));
  });
}

/** Resident set size of a process, current (VmRSS) or its lifetime peak (VmHWM), in MB. */
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** User + system CPU time a process has used so far, in ms. */
export function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

export function rssMB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = s.match(new RegExp(`${field}:\\s+(\\d+) kB`));
  return m ? Number(m[1]) / 1024 : NaN;
}

export async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 3000);
  await done;
  clearTimeout(t);
}

/** Writes `mb` MiB of random bytes (every byte non-repeating, so nothing downstream can shortcut zeros). */
export function makeFile(file: string, mb: number): void {
  const fd = openSync(file, 'w');
  const chunk = Buffer.allocUnsafe(1024 * 1024);
  for (let i = 0; i < mb; i++) {
    randomFillSync(chunk);
    writeSync(fd, chunk);
  }
  closeSync(fd);
  chmodSync(file, 0o644);
}

/** Copies the server's modules and bench/tftp-serve.ts with TypeScript types stripped into `out` (what tsc would emit), pino resolved. */
export function buildJs(out: string): void {
  const repo = path.resolve(HERE, '..');
  const pino = import.meta.resolve('pino');
  const files = ['bench/tftp-serve.ts', 'server/log.ts', 'server/log-writer.ts', 'server/metrics.ts', 'server/native-udp.ts', ...readdirSync(path.join(repo, 'server/tftp')).filter((f) => f.endsWith('.ts')).map((f) => `server/tftp/${f}`)];
  for (const f of files) {
    let js = stripTypeScriptTypes(readFileSync(path.join(repo, f), 'utf8'));
    js = js.replace(/(from\s+'\.{1,2}\/[^']*)\.ts'/g, "$1.js'").replace(/from\s+'pino'/g, `from '${pino}'`);
    mkdirSync(path.join(out, path.dirname(f)), { recursive: true });
    writeFileSync(path.join(out, f.replace(/\.ts$/, '.js')), js);
  }
  // The native UDP addon (server/native-udp.ts finds it by walking up to native/).
  rmSync(path.join(out, 'native'), { force: true });
  symlinkSync(path.join(repo, 'native'), path.join(out, 'native'));
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}
