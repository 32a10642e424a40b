/**
 * TFTP benchmark: swarmboot against atftpd (windowed) and dnsmasq (lock-step), same files, same
 * client (atftp), all three servers up at once and measured in interleaved rounds (median of BENCH_TFTP_REPEAT, default 5). Everything runs inside a network namespace this script creates
 * (`sbtftp-bench-<pid>`), so dnsmasq can own port 69 on that namespace's loopback without touching
 * the host's; the namespace and every process started in it are removed at the end.
 *
 * Run: node_modules/.bin/node bench/tftp.ts   (root; needs atftp, atftpd, dnsmasq, iproute2)
 * Prints `BENCH tftp …` lines at the end.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, chmodSync, openSync, writeSync, closeSync, readFileSync, ftruncateSync, readdirSync, mkdirSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { randomFillSync } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const NODE = process.execPath;
const SELF = fileURLToPath(import.meta.url);

// ---- child mode: run swarmboot's TFTP server alone, so its RSS is its own ----
if (process.argv[2] === '--serve') {
  // argv[5]: a directory of the server modules with types stripped (see buildJs), as the daemon runs from
  // tsc's output in production; Node's on-the-fly TypeScript support alone costs ~25 MB of RSS.
  const mods = process.argv[5];
  const { startTftp } = (await import(mods ? `${mods}/server/tftp/server.js` : '../server/tftp/server.ts')) as typeof import('../server/tftp/server.ts');
  const { silentLogger } = (await import(mods ? `${mods}/server/log.js` : '../server/log.ts')) as typeof import('../server/log.ts');
  const root = process.argv[3]!;
  const port = Number(process.argv[4]);
  const srv = await startTftp({ root, host: '127.0.0.1', port, logger: silentLogger(), maxTransfers: 500 });
  process.stdout.write(`READY ${srv.address().port}\n`);
  const stop = (): void => {
    void srv.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await new Promise(() => {});
}

const NS = `sbtftp-bench-${process.pid}`;
const BLKSIZE = 1456;
const BIG_MB = Number(process.env.BENCH_TFTP_MB ?? 200);
const PAR_MB = 30;
const PAR_N = 20;
const MEM_N = 50;
const MEM_MB = 600;
const REPEAT = Number(process.env.BENCH_TFTP_REPEAT ?? 5);

const started: ChildProcess[] = [];
let dir = '';

function sh(cmd: string, args: string[], allowFail = false): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0 && !allowFail) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

function inNs(cmd: string, args: string[]): [string, string[]] {
  return ['ip', ['netns', 'exec', NS, cmd, ...args]];
}

function startDaemon(cmd: string, args: string[]): ChildProcess {
  const [c, a] = inNs(cmd, args);
  const p = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(p);
  let err = '';
  p.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
  p.once('exit', (code, sig) => {
    if (code !== 0 && sig === null) console.error(`${cmd} exited ${code}: ${err.trim()}`);
  });
  return p;
}

async function waitLine(p: ChildProcess, re: RegExp, ms = 10000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`timeout waiting for ${re}: ${buf}`)), ms);
    p.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = buf.match(re);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    p.once('exit', (code) => reject(new Error(`exited ${code} before ${re}: ${buf}`)));
  });
}

async function waitUdpPort(port: number, ms = 10000): Promise<void> {
  const t0 = Date.now();
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let n = 0;
  let out = '';
  while (Date.now() < t0 + ms) {
    n++;
    out = sh('ip', ['netns', 'exec', NS, 'cat', '/proc/net/udp']);
    if (out.split('\n').some((l) => l.trim().split(/\s+/)[1]?.endsWith(hex))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listening on udp ${port} after ${n} checks in ${Date.now() - t0} ms: ${out}`);
}

/** One atftp download to /dev/null; resolves with seconds taken. */
function fetch(port: number, file: string, ws: number): Promise<number> {
  const opts = ['--option', `blksize ${BLKSIZE}`];
  if (ws > 1) opts.push('--option', `windowsize ${ws}`);
  const [c, a] = inNs('atftp', ['--get', '-r', file, '-l', '/dev/null', ...opts, '127.0.0.1', String(port)]);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const p = spawn(c, a, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code) => {
      if (code === 0 && !/error|timeout|aborting/i.test(err)) resolve((performance.now() - t0) / 1000);
      else reject(new Error(`atftp ${file} from :${port} failed (${code}): ${err.trim()}`));
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function single(port: number, file: string, mb: number, ws: number): Promise<number> {
  return mb / (await fetch(port, file, ws));
}

async function parallel(port: number): Promise<number> {
  const t0 = performance.now();
  await Promise.all(Array.from({ length: PAR_N }, () => fetch(port, 'par.bin', 1)));
  return (PAR_N * PAR_MB) / ((performance.now() - t0) / 1000);
}

function rssMB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = s.match(new RegExp(`${field}:\\s+(\\d+) kB`));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** The server process's pid (ip netns exec execs, so the child pid is the server's). */
function pidOf(p: ChildProcess): number {
  return p.pid!;
}

/** 50 windowed clients on a 600 MB file, started 40 ms apart so they sit at different offsets. */
async function memory50(port: number, pid: number): Promise<number> {
  const clients: ChildProcess[] = [];
  let peak = 0;
  for (let i = 0; i < MEM_N; i++) {
    const [c, a] = inNs('atftp', ['--get', '-r', 'mem.bin', '-l', '/dev/null', '--option', `blksize ${BLKSIZE}`, '--option', 'windowsize 16', '127.0.0.1', String(port)]);
    const p = spawn(c, a, { stdio: 'ignore' });
    clients.push(p);
    started.push(p);
    await new Promise((r) => setTimeout(r, 40));
    peak = Math.max(peak, rssMB(pid, 'VmRSS'));
  }
  const end = Date.now() + 4000;
  while (Date.now() < end) {
    peak = Math.max(peak, rssMB(pid, 'VmRSS'));
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const p of clients) if (p.exitCode === null) p.kill('SIGKILL');
  await Promise.all(clients.map((p) => (p.exitCode === null && p.signalCode === null ? new Promise((r) => p.once('exit', r)) : null)));
  return peak;
}

/** Copies the server's modules with TypeScript types stripped into `out` (what tsc would emit), pino resolved. */
function buildJs(out: string): void {
  const repo = path.resolve(path.dirname(SELF), '..');
  const pino = import.meta.resolve('pino');
  const files = ['server/log.ts', 'server/metrics.ts', ...readdirSync(path.join(repo, 'server/tftp')).filter((f) => f.endsWith('.ts')).map((f) => `server/tftp/${f}`)];
  for (const f of files) {
    let js = stripTypeScriptTypes(readFileSync(path.join(repo, f), 'utf8'));
    js = js.replace(/(from\s+'\.{1,2}\/[^']*)\.ts'/g, "$1.js'").replace(/from\s+'pino'/g, `from '${pino}'`);
    mkdirSync(path.join(out, path.dirname(f)), { recursive: true });
    writeFileSync(path.join(out, f.replace(/\.ts$/, '.js')), js);
  }
}

function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}

/** `ratio` is the median of the per-round ratios: each round measures both servers within seconds of each other,
 *  so a load swing from other work on the machine cancels out instead of landing on one side. */
function line(name: string, v: number[], base: string, b: number[]): string {
  const ratio = median(v.map((x, i) => x / b[i]!));
  return `BENCH tftp ${name}=${fmt(median(v))} baseline=${base}:${fmt(median(b))} ratio=${ratio.toFixed(2)}`;
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 3000);
  await done;
  clearTimeout(t);
}

function makeFile(file: string, mb: number, sparse = false): void {
  const fd = openSync(file, 'w');
  if (sparse) {
    ftruncateSync(fd, mb * 1024 * 1024);
  } else {
    const chunk = Buffer.allocUnsafe(1024 * 1024);
    for (let i = 0; i < mb; i++) {
      randomFillSync(chunk);
      writeSync(fd, chunk);
    }
  }
  closeSync(fd);
  chmodSync(file, 0o644);
}

async function main(): Promise<void> {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sbtftp-bench-'));
  chmodSync(dir, 0o755);
  const root = path.join(dir, 'root');
  mkdirSync(root, { mode: 0o755 });
  makeFile(path.join(root, 'big.bin'), BIG_MB);
  makeFile(path.join(root, 'par.bin'), PAR_MB);
  makeFile(path.join(root, 'mem.bin'), MEM_MB, true);

  sh('ip', ['netns', 'add', NS]);
  sh('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);

  const results: string[] = [];
  const load0 = os.loadavg();

  // All three servers run side by side and every round measures each of them in turn, so the load that other
  // work puts on this machine spreads over all of them alike; each figure is the median of REPEAT rounds.
  const js = path.join(dir, 'js');
  buildJs(js);
  const sb = startDaemon(NODE, [SELF, '--serve', root, '0', js]);
  const sbPort = Number((await waitLine(sb, /READY (\d+)/))[1]);
  const atPort = 6969;
  const at = startDaemon('atftpd', ['--daemon', '--no-fork', '--port', String(atPort), '--bind-address', '127.0.0.1', '--user', 'root', '--group', 'root', '--logfile', '/dev/null', '--maxthread', '200', root]);
  await waitUdpPort(atPort);
  // dnsmasq: TFTP port 69 of the namespace's own loopback.
  const dm = startDaemon('dnsmasq', ['-k', '--port=0', '--conf-file=/dev/null', '--enable-tftp', `--tftp-root=${root}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--tftp-max=500', '--quiet-tftp', '--user=root', '--pid-file=']);
  await waitUdpPort(69);

  // One untimed pass per server and file, so that every server starts from the same warm page cache.
  await Promise.all([fetch(sbPort, 'big.bin', 16), fetch(sbPort, 'par.bin', 16)]);
  await Promise.all([fetch(atPort, 'big.bin', 16), fetch(69, 'par.bin', 1)]);

  const r = { sbWs16: [] as number[], atWs16: [] as number[], sbLock: [] as number[], dmLock: [] as number[], sbPar: [] as number[], dmPar: [] as number[] };
  for (let i = 0; i < REPEAT; i++) {
    r.sbWs16.push(await single(sbPort, 'big.bin', BIG_MB, 16));
    r.atWs16.push(await single(atPort, 'big.bin', BIG_MB, 16));
    r.sbLock.push(await single(sbPort, 'big.bin', BIG_MB, 1));
    r.dmLock.push(await single(69, 'big.bin', BIG_MB, 1));
    r.sbPar.push(await parallel(sbPort));
    r.dmPar.push(await parallel(69));
  }
  const sbRss = rssMB(pidOf(sb), 'VmHWM');
  const dmRss = rssMB(pidOf(dm), 'VmHWM');
  await stop(at);
  await stop(dm);
  const sbMem50 = await memory50(sbPort, pidOf(sb));
  await stop(sb);
  const show = (xs: number[]): string => xs.map(fmt).join(' ');
  console.error(`rounds (MB/s): swarmboot ws16 ${show(r.sbWs16)} | atftpd ws16 ${show(r.atWs16)}`);
  console.error(`               swarmboot lockstep ${show(r.sbLock)} | dnsmasq lockstep ${show(r.dmLock)}`);
  console.error(`               swarmboot parallel ${show(r.sbPar)} | dnsmasq parallel ${show(r.dmPar)}`);
  const load1 = os.loadavg();
  console.error(`load average before ${load0.map((l) => l.toFixed(2)).join(' ')}, after ${load1.map((l) => l.toFixed(2)).join(' ')} (${os.availableParallelism()} CPUs)`);
  console.error(`swarmboot: peak RSS ${fmt(sbRss)} MB, 50×${MEM_MB} MB peak RSS ${fmt(sbMem50)} MB; dnsmasq peak RSS ${fmt(dmRss)} MB`);

  results.push(line('ws16_MBps', r.sbWs16, 'atftpd', r.atWs16));
  results.push(line('lockstep_MBps', r.sbLock, 'dnsmasq', r.dmLock));
  results.push(line('parallel20_MBps', r.sbPar, 'dnsmasq', r.dmPar));
  results.push(line('peak_rss_MB', [sbRss], 'dnsmasq', [dmRss]));
  results.push(`BENCH tftp mem50x${MEM_MB}MB_peak_rss_MB=${fmt(sbMem50)} target=150`);
  for (const r of results) console.log(r);
}

async function cleanup(): Promise<void> {
  for (const p of started) {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
  await new Promise((r) => setTimeout(r, 100));
  spawnSync('ip', ['netns', 'del', NS]);
  if (dir) rmSync(dir, { recursive: true, force: true });
}

process.on('SIGINT', () => {
  void cleanup().then(() => process.exit(130));
});

try {
  await main();
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  await cleanup();
}
