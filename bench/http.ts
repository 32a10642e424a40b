/**
 * HTTP content delivery: swarmboot's /content route against nginx (sendfile on), same 2 GB file,
 * same client (curl to /dev/null), on loopback. Prints BENCH lines:
 *   single stream MB/s, 20 concurrent streams MB/s (aggregate), peak server RSS, and the latency of
 *   a tiny request (/healthz) on the same server while the 20 downloads run, against idle.
 * swarmboot is the real daemon (`cli.ts serve`, the production composition: config holder, state
 * database, content service with its scan and change watching, every HTTP route), so its peak RSS
 * (VmHWM) includes hashing the 2 GB file at start and everything a deployment server carries.
 *
 * Then, as root, whether a saturated HTTP side slows DHCP and TFTP answers: the real daemon
 * (`cli.ts serve`, every front end in one process, as in production) in a network namespace the
 * bench creates, with a bridge, a probe namespace (bench/http-probe.ts: PXE DISCOVER → ProxyDHCP
 * OFFER, TFTP RRQ of a 4 KiB file, a UDP echo to a separate process as control) and a load
 * namespace (20 curls of the same big file). The daemon and the echo run on CPU 0, every client on
 * CPU 1 (BENCH_HTTP_PIN=0: unpinned), so the clients, like real machines, do not eat the server's
 * CPU. Rounds alternate idle and loaded windows; the median of the rounds' p99s is reported, with
 * the daemon's event-loop lag, its main thread's run and run-queue time, and the load average.
 * Traffic stays on 127.0.0.0/8 and inside those namespaces; they and every process are removed at
 * the end, also on failure. Without root (or ip, curl) that section is skipped with a note.
 *
 *   node_modules/.bin/node bench/http.ts            # the benchmark
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { request, Agent } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { availableParallelism, loadavg } from 'node:os';
import { execFileSync } from 'node:child_process';
import { addPeer, createLab, destroyLab, exec, NODE, ROOT, run, type Lab, type LabProcess } from '../test/e2e/lab.ts';
import type { LagStats, ProbeConfig, ProbeResult } from './http-probe.ts';

const MB = 1e6;
const FILE_SIZE = 2 * 1024 ** 3;
const CONCURRENT = 20;
// The namespace part (DHCP and TFTP under HTTP load); the segment exists only inside its namespaces.
const NET = '10.69.0';
const SERVER = `${NET}.1`;
const HTTP_PORT = 8080;
const ECHO_PORT = 7007;
const SMALL_FILE = 'probe4k.bin';
const ROUNDS = Number(process.env.BENCH_HTTP_ROUNDS ?? 3);
const IDLE_MS = 3000;
const RAMP_MS = 1500;
const LOAD_MS = 6000;
/**
 * CPUs for `taskset`: the daemon (and the echo control) on one, every client on the other, so the
 * 20 curls, like real machines, do not take the server's CPU. BENCH_HTTP_PIN=0: nothing pinned.
 */
const PIN = process.env.BENCH_HTTP_PIN !== '0' && availableParallelism() >= 2;
const pinServer = (cmd: string, args: string[]): [string, string[]] => (PIN ? ['taskset', ['-c', '0', cmd, ...args]] : [cmd, args]);
const pinClient = (cmd: string, args: string[]): [string, string[]] => (PIN ? ['taskset', ['-c', '1', cmd, ...args]] : [cmd, args]);

await benchMode();

async function benchMode(): Promise<void> {
  // Ctrl-C or a kill: leave through process.exit so 'exit' handlers run (the namespace lab removes
  // itself there) and the loopback servers are killed.
  const children: ChildProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'sb-bench-http-'));
  process.once('exit', () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
  // nginx workers drop to an unprivileged user: let them read the file.
  chmodSync(dir, 0o755);
  const file = join(dir, 'image.bin');
  try {
    writeTestFile(file, FILE_SIZE);
    writeFileSync(join(dir, 'tiny.txt'), '{"status":"ok"}', { mode: 0o644 });
    // BENCH_HTTP_ONLY=namespace: only the DHCP/TFTP-under-load part; =loopback: only the part
    // against nginx (quicker when working on one of them).
    if (process.env.BENCH_HTTP_ONLY !== 'namespace') {
      await loopback(dir, file, children);
      // The loopback servers are done: free their CPU and memory before the namespace part.
      await stopChildren(children);
    }
    if (process.env.BENCH_HTTP_ONLY !== 'loopback') await udpUnderLoad(dir, file);
  } finally {
    await stopChildren(children);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** swarmboot's content route against nginx on loopback: throughput, RSS, /healthz under load. */
async function loopback(dir: string, file: string, children: ChildProcess[]): Promise<void> {
  const ours = await startSwarmboot(file, children);
  const nginx = await startNginx(dir, children);
  const ourUrl = `http://127.0.0.1:${ours.port}/content/bench/${basename(file)}`;
  const ngUrl = `http://127.0.0.1:${nginx.port}/${basename(file)}`;
  // Warm the page cache and both servers once, so neither pays for the disk.
  await curlOnce(ngUrl);
  await curlOnce(ourUrl);

  // Single stream: best of three alternating runs (the machine is shared; best is the least noisy).
  const single = { ours: 0, nginx: 0 };
  for (let i = 0; i < 3; i++) {
    single.nginx = Math.max(single.nginx, await curlOnce(ngUrl));
    single.ours = Math.max(single.ours, await curlOnce(ourUrl));
  }

  const idle = await probeLatency(ours.port, '/healthz', 1500);
  const ngConcP = concurrent(ngUrl, CONCURRENT);
  // For context: nginx answering a tiny file while its own 20 downloads run.
  await sleep(500);
  const ngLoaded = await probeLatency(nginx.port, '/tiny.txt', 3000);
  const ngConc = await ngConcP;
  let loaded: number[] = [];
  const ourConcP = concurrent(ourUrl, CONCURRENT);
  // Probe the tiny route while the 20 downloads saturate the server.
  await sleep(500);
  loaded = await probeLatency(ours.port, '/healthz', 3000);
  const ourConc = await ourConcP;

  // The same load with every client on its own part of the file (1 GB ranges 51 MB apart, wider
  // than the shared chunk window): what the send path does when clients do not overlap.
  const ngSpread = await concurrent(ngUrl, CONCURRENT, true);
  const ourSpread = await concurrent(ourUrl, CONCURRENT, true);

  const ourRss = peakRssMB([ours.pid]);
  const ngRss = peakRssMB(nginx.pids());
  line('single_MBps', single.ours, 'nginx', single.nginx);
  line('concurrent20_MBps', ourConc, 'nginx', ngConc);
  line('concurrent20_spread_MBps', ourSpread, 'nginx', ngSpread);
  line('peak_rss_MB', ourRss, 'nginx', ngRss);
  line('healthz_p99_under_load_ms', pct(loaded, 0.99), 'idle', pct(idle, 0.99));
  console.log(
    `# healthz p50 idle ${pct(idle, 0.5).toFixed(2)} ms, under load ${pct(loaded, 0.5).toFixed(2)} ms (${loaded.length} probes); ` +
      `nginx tiny file under its load p50 ${pct(ngLoaded, 0.5).toFixed(2)} ms p99 ${pct(ngLoaded, 0.99).toFixed(2)} ms; ` +
      `file ${(FILE_SIZE / MB).toFixed(0)} MB, curl -o /dev/null, nginx ${nginx.workers} workers sendfile on; ` +
      `load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`,
  );
}

async function stopChildren(children: ChildProcess[]): Promise<void> {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  await sleep(300);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

function line(name: string, v: number, base: string, b: number): void {
  const fmt = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(2));
  console.log(`BENCH http ${name}=${fmt(v)} baseline=${base}:${fmt(b)} ratio=${(v / b).toFixed(2)}`);
}

/** Distinct 4 KiB blocks over random filler; real bytes, so page cache and copies are real. */
function writeTestFile(path: string, size: number): void {
  const seg = 64 << 20;
  const buf = randomBytes(seg);
  const fd = openSync(path, 'w', 0o644);
  try {
    for (let off = 0; off < size; off += seg) {
      for (let b = 0; b < seg; b += 4096) buf.writeBigUInt64LE(BigInt(off + b), b);
      writeSync(fd, buf, 0, Math.min(seg, size - off), off);
    }
  } finally {
    closeSync(fd);
  }
}

/** The real daemon serving `file` as package "bench"; resolves once the file is hashed and served. */
async function startSwarmboot(file: string, children: ChildProcess[]): Promise<{ port: number; pid: number }> {
  const port = await freePort();
  const dir = join(dirname(file), 'swarmboot');
  mkdirSync(join(dir, 'tftp'), { recursive: true });
  const cfg = join(dir, 'swarmboot.yaml');
  writeFileSync(cfg, `server:
  address: 127.0.0.1
  dataDir: data
  contentDir: ${dirname(file)}
  logLevel: warn
  http: { host: 127.0.0.1, port: ${port} }
  tftp: { enabled: false, root: tftp }
  dhcp: { enabled: false }
packages:
  bench: { kind: file, path: ${basename(file)} }
machines:
  default: { action: local }
`);
  const child = spawn(process.execPath, [await daemonEntry(dirname(file)), 'serve', '--config', cfg, '--no-watch'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, SWARMBOOT_ADMIN_TOKEN: 'bench-http-admin-token-0123456789', NODE_NO_WARNINGS: '1' },
  });
  children.push(child);
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`swarmboot exited (${code})`))));
  exited.catch(() => undefined);
  // The daemon hashes the package in the background at start; it is served (with its SHA-256) once done.
  const url = `http://127.0.0.1:${port}/content/bench/${basename(file)}`;
  for (let i = 0; ; i++) {
    const sha = await Promise.race([headerOf(url, 'x-content-sha256'), exited]);
    if (sha) break;
    if (i > 600) throw new Error('swarmboot did not serve the bench file within 60 s');
    await sleep(100);
  }
  return { port, pid: child.pid! };
}

/**
 * The daemon as it is deployed: `npm run build` output (what bin/swarmboot.js runs), compiled here
 * from the current sources into the bench's temporary folder, so the numbers are never those of a
 * stale dist/. Running cli.ts directly would add Node's TypeScript stripper (about 30 MB of RSS)
 * that production does not carry. Falls back to cli.ts, with a note, if the build fails.
 */
async function daemonEntry(dir: string): Promise<string> {
  const out = join(dir, 'build');
  const tsc = join(ROOT, 'node_modules', '.bin', 'tsc');
  const ok = await new Promise<boolean>((resolve) => {
    const p = spawn(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(out, 'dist')], { stdio: 'ignore' });
    p.on('error', () => resolve(false));
    p.on('close', () => resolve(existsSync(join(out, 'dist', 'cli.js'))));
  });
  if (!ok) {
    console.log('# note: could not build the daemon; measuring cli.ts run from sources (RSS includes the TypeScript stripper)');
    return join(ROOT, 'cli.ts');
  }
  // dist/cli.js finds package.json one level up and its dependencies in node_modules beside it.
  symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules'));
  copyFileSync(join(ROOT, 'package.json'), join(out, 'package.json'));
  return join(out, 'dist', 'cli.js');
}

/** One HEAD request's header, or undefined (no answer yet, or not 200). */
function headerOf(url: string, name: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'HEAD' }, (res) => {
      res.resume();
      const v = res.headers[name];
      resolve(res.statusCode === 200 && typeof v === 'string' ? v : undefined);
    });
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function startNginx(dir: string, children: ChildProcess[]): Promise<{ port: number; pids: () => number[]; workers: number }> {
  const port = await freePort();
  const ng = join(dir, 'nginx');
  mkdirSync(join(ng, 'tmp'), { recursive: true });
  const workers = 'auto';
  const conf = `daemon off;
master_process on;
worker_processes ${workers};
error_log ${ng}/error.log warn;
pid ${ng}/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  client_body_temp_path ${ng}/tmp; proxy_temp_path ${ng}/tmp; fastcgi_temp_path ${ng}/tmp;
  uwsgi_temp_path ${ng}/tmp; scgi_temp_path ${ng}/tmp;
  types { application/octet-stream bin; text/plain txt; }
  server { listen 127.0.0.1:${port}; root ${dir}; }
}
`;
  writeFileSync(join(ng, 'nginx.conf'), conf);
  const child = spawn('nginx', ['-c', join(ng, 'nginx.conf'), '-p', ng, '-e', join(ng, 'error.log')], { stdio: 'inherit' });
  children.push(child);
  for (let i = 0; i < 100; i++) {
    if (await canConnect(port)) break;
    await sleep(50);
  }
  const pids = (): number[] => {
    const all = [child.pid!];
    for (const p of readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)) if (p) all.push(Number(p));
    return all;
  };
  return { port, pids, workers: pids().length - 1 };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', method: 'HEAD' }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('error', () => resolve(false));
    req.end();
  });
}

/** One curl download to /dev/null; MB/s as curl measured it. */
async function curlOnce(url: string): Promise<number> {
  const out = await runCurl(['-sf', '-o', '/dev/null', '-w', '%{speed_download}', url]);
  return Number(out) / MB;
}

/**
 * `n` curls at once; aggregate MB/s from the first start to the last finish. Whole file each, or
 * with `spread` half the file each, starting at offsets spaced evenly over the other half.
 */
async function concurrent(url: string, n: number, spread = false): Promise<number> {
  const half = FILE_SIZE / 2;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: n }, (_, k) => {
      const start = Math.floor((k * half) / n);
      return runCurl(['-sf', '-o', '/dev/null', ...(spread ? ['-r', `${start}-${start + half - 1}`] : []), url]);
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  return (n * (spread ? half : FILE_SIZE)) / MB / secs;
}

function runCurl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('curl', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`curl ${args.join(' ')} exited ${code}`))));
  });
}

/** GET `path` back to back (keep-alive, 10 ms apart) for `ms`; latencies in ms. */
async function probeLatency(port: number, path: string, ms: number): Promise<number[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const out: number[] = [];
  const until = performance.now() + ms;
  while (performance.now() < until) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
    out.push(performance.now() - t0);
    await sleep(10);
  }
  agent.destroy();
  return out;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
}

/** Peak resident set (VmHWM) summed over the processes, in MB. */
function peakRssMB(pids: number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      kb += Number(m?.[1] ?? 0);
    } catch {
      // exited
    }
  }
  return (kb * 1024) / MB;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------
// DHCP and TFTP answers while HTTP is saturated: the real daemon in a namespace lab.


/** Why the namespace part cannot run here, or undefined. */
function namespacePrereq(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, ports 67/69)';
  for (const t of ['ip', 'curl', ...(PIN ? ['taskset'] : [])]) {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
    } catch {
      return `${t} is not installed`;
    }
  }
  return undefined;
}

interface Window {
  probes: ProbeResult;
  lag: LagStats | undefined;
  /** Daemon CPU over the window, % of one core. */
  cpu: number;
  /** The daemon's main (event-loop) thread, from schedstat: ms per second on a CPU, and runnable but waiting for one. */
  mainRun: number;
  mainWait: number;
  /** Content bytes the daemon sent during the window, MB/s (0 when idle). */
  httpMBps: number;
  load1: number;
}

async function udpUnderLoad(dir: string, bigFile: string): Promise<void> {
  const why = namespacePrereq();
  if (why) {
    console.log(`# DHCP/TFTP under HTTP load: skipped (${why})`);
    return;
  }
  const started = performance.now();
  const lab: Lab = await createLab('benchhttp', { net: NET, ipv6: 'off' });
  try {
    const probeNs = addPeer(lab, 'probe', `${NET}.10`);
    const loadNs = addPeer(lab, 'load', `${NET}.20`);
    const sb = join(lab.dir, 'swarmboot');
    mkdirSync(join(sb, 'tftp'), { recursive: true });
    writeFileSync(join(sb, 'tftp', SMALL_FILE), randomBytes(4096));
    // Loaders only need to exist for the DHCP answer; nobody fetches them here.
    for (const f of ['undionly.kpxe', 'ipxe.efi']) writeFileSync(join(sb, 'tftp', f), randomBytes(1024));
    const cfgFile = join(sb, 'swarmboot.yaml');
    writeFileSync(cfgFile, `server:
  address: ${SERVER}
  dataDir: data
  contentDir: ${dirname(bigFile)}
  logLevel: info
  http: { host: 0.0.0.0, port: ${HTTP_PORT} }
  tftp: { enabled: true, root: tftp, port: 69 }
  dhcp: { enabled: true, mode: proxy, interfaces: [br0], port: 67, proxyPort: 4011, ratePerMacPerMinute: 600 }
boot:
  loaders: { bios: undionly.kpxe, uefi-x64: ipxe.efi }
packages:
  bench: { kind: file, path: ${basename(bigFile)} }
machines:
  default: { action: local }
`);
    const helper = join(ROOT, 'bench/http-probe.ts');
    const echo = exec(lab, lab.srv, ...pinServer(NODE, [helper, 'echo', SERVER, String(ECHO_PORT)]), { label: 'echo' });
    await echo.waitFor(/READY/, 15_000);
    const lagFile = join(lab.dir, 'lag.json');
    const daemon = exec(lab, lab.srv, ...pinServer(NODE, [join(ROOT, 'cli.ts'), 'serve', '--config', cfgFile, '--no-watch']), {
      label: 'swarmboot',
      env: {
        ...process.env,
        SWARMBOOT_ADMIN_TOKEN: 'bench-http-admin-token-0123456789',
        NODE_NO_WARNINGS: '1',
        NODE_OPTIONS: `--import=${pathToFileURL(helper).href}`,
        SB_BENCH_LAG_FILE: lagFile,
      },
    });
    await daemon.waitFor(/"msg":"swarmboot started"/, 30_000);
    const pid = daemon.child.pid!;
    const base = `http://${SERVER}:${HTTP_PORT}`;
    const url = `${base}/content/bench/${basename(bigFile)}`;
    // The daemon hashes the package at start; it is served once that is done.
    for (let i = 0; ; i++) {
      const code = await run(lab, loadNs, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-I', url], 10_000).catch(() => '000');
      if (code === '200') break;
      if (i >= 120) throw new Error(`content not served after 60 s (HTTP ${code}):\n${daemon.output().slice(-3000)}`);
      await sleep(500);
    }

    const probeCfg = (ms: number): ProbeConfig => ({ server: SERVER, tftpPort: 69, file: SMALL_FILE, echoPort: ECHO_PORT, iface: 'eth0', ms, gapMs: 10 });
    const probe = async (ms: number): Promise<ProbeResult> =>
      JSON.parse(await run(lab, probeNs, ...pinClient(NODE, [helper, 'probe', JSON.stringify(probeCfg(ms))]), ms + 20_000)) as ProbeResult;
    /** The daemon's event-loop lag since the last call. */
    const lag = async (): Promise<LagStats | undefined> => {
      rmSync(lagFile, { force: true });
      process.kill(pid, 'SIGUSR2');
      for (let i = 0; i < 40; i++) {
        await sleep(25);
        try {
          return JSON.parse(readFileSync(lagFile, 'utf8')) as LagStats;
        } catch {
          // not written yet
        }
      }
      return undefined;
    };
    const sentBytes = async (): Promise<number> => {
      const body = await run(lab, loadNs, 'curl', ['-sf', `${base}/metrics`], 10_000);
      let n = 0;
      for (const m of body.matchAll(/^swarmboot_content_bytes_sent_total(?:\{[^}]*\})? (\d+(?:\.\d+)?(?:e\+\d+)?)$/gm)) n += Number(m[1]);
      return n;
    };
    const measure = async (ms: number, loaded: boolean): Promise<Window> => {
      const b0 = loaded ? await sentBytes() : 0;
      const c0 = cpuSeconds(pid);
      const s0 = schedstat(pid);
      const t0 = performance.now();
      await lag();
      const probes = await probe(ms);
      const l = await lag();
      const secs = (performance.now() - t0) / 1000;
      const cpu = ((cpuSeconds(pid) - c0) / secs) * 100;
      const s1 = schedstat(pid);
      const mainRun = (s1.run - s0.run) / 1e6 / secs;
      const mainWait = (s1.wait - s0.wait) / 1e6 / secs;
      const httpMBps = loaded ? (await sentBytes()) - b0 : 0;
      return { probes, lag: l, cpu, mainRun, mainWait, httpMBps: httpMBps / MB / secs, load1: loadavg()[0]! };
    };

    // A first idle pass warms the daemon (JIT, first-seen paths) and is not counted.
    await probe(1000);
    const idle: Window[] = [];
    const loaded: Window[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      idle.push(await measure(IDLE_MS, false));
      // 20 downloads of the big file, each three times over so none ends inside the window.
      const curls: LabProcess[] = [];
      for (let k = 0; k < CONCURRENT; k++) {
        curls.push(exec(lab, loadNs, ...pinClient('curl', ['-s', '-o', '/dev/null', '-o', '/dev/null', '-o', '/dev/null', url, url, url]), { label: `curl${k}` }));
      }
      try {
        await sleep(RAMP_MS);
        const w = await measure(LOAD_MS, true);
        const ended = curls.filter((c) => c.child.exitCode !== null || c.child.signalCode !== null).length;
        if (ended) console.log(`# warning: ${ended} of ${CONCURRENT} downloads ended before the loaded window did`);
        loaded.push(w);
      } finally {
        await Promise.all(curls.map((c) => c.stop(2000)));
      }
      console.log(
        `# round ${r + 1}: idle p99 dhcp ${pct(idle[r]!.probes.dhcp, 0.99).toFixed(2)} tftp ${pct(idle[r]!.probes.tftpFirst, 0.99).toFixed(2)} ms; ` +
          `loaded p99 dhcp ${pct(loaded[r]!.probes.dhcp, 0.99).toFixed(2)} tftp ${pct(loaded[r]!.probes.tftpFirst, 0.99).toFixed(2)} ms, ` +
          `HTTP ${loaded[r]!.httpMBps.toFixed(0)} MB/s, daemon CPU ${loaded[r]!.cpu.toFixed(0)}%, load ${loaded[r]!.load1.toFixed(2)}`,
      );
    }

    console.log(`# namespace daemon (cli.ts from sources: DHCP, TFTP and HTTP, after ${ROUNDS} loaded rounds) peak RSS ${peakRssMB([pid]).toFixed(0)} MB`);
    const med = (ws: Window[], f: (w: Window) => number): number => median(ws.map(f));
    const p = (key: 'dhcp' | 'tftpFirst' | 'tftpAll' | 'echo', q: number) => (w: Window): number => pct(w.probes[key], q);
    line('tftp_rrq_p99_under_load_ms', med(loaded, p('tftpFirst', 0.99)), 'idle', med(idle, p('tftpFirst', 0.99)));
    line('tftp_get4k_p99_under_load_ms', med(loaded, p('tftpAll', 0.99)), 'idle', med(idle, p('tftpAll', 0.99)));
    line('dhcp_offer_p99_under_load_ms', med(loaded, p('dhcp', 0.99)), 'idle', med(idle, p('dhcp', 0.99)));
    const n = (ws: Window[], key: 'dhcp' | 'tftpFirst' | 'echo'): number => ws.reduce((a, w) => a + w.probes[key].length, 0);
    const lost = (ws: Window[]): string => {
      const l = ws.reduce((a, w) => ({ dhcp: a.dhcp + w.probes.lost.dhcp, tftp: a.tftp + w.probes.lost.tftp, echo: a.echo + w.probes.lost.echo }), { dhcp: 0, tftp: 0, echo: 0 });
      return `dhcp ${l.dhcp}, tftp ${l.tftp}, echo ${l.echo}`;
    };
    const f2 = (x: number): string => x.toFixed(2);
    console.log(
      `# p50 idle → loaded (ms): tftp rrq ${f2(med(idle, p('tftpFirst', 0.5)))} → ${f2(med(loaded, p('tftpFirst', 0.5)))}, ` +
        `tftp 4 KiB get ${f2(med(idle, p('tftpAll', 0.5)))} → ${f2(med(loaded, p('tftpAll', 0.5)))}, ` +
        `dhcp offer ${f2(med(idle, p('dhcp', 0.5)))} → ${f2(med(loaded, p('dhcp', 0.5)))}`,
    );
    console.log(
      `# control, UDP echo in its own process beside the daemon: p50 ${f2(med(idle, p('echo', 0.5)))} → ${f2(med(loaded, p('echo', 0.5)))} ms, ` +
        `p99 ${f2(med(idle, p('echo', 0.99)))} → ${f2(med(loaded, p('echo', 0.99)))} ms (the machine's share of the slowdown; the rest is the daemon's event loop)`,
    );
    const lagOf = (ws: Window[], k: 'p50' | 'p99' | 'max'): string => f2(median(ws.map((w) => w.lag?.[k] ?? NaN)));
    console.log(
      `# daemon event-loop lag idle → loaded (ms): p50 ${lagOf(idle, 'p50')} → ${lagOf(loaded, 'p50')}, p99 ${lagOf(idle, 'p99')} → ${lagOf(loaded, 'p99')}, ` +
        `max ${lagOf(idle, 'max')} → ${lagOf(loaded, 'max')}; daemon CPU ${med(idle, (w) => w.cpu).toFixed(0)}% → ${med(loaded, (w) => w.cpu).toFixed(0)}% of a core; ` +
        `HTTP load ${med(loaded, (w) => w.httpMBps).toFixed(0)} MB/s over the bridge`,
    );
    console.log(
      `# daemon main thread per second, idle → loaded: on a CPU ${med(idle, (w) => w.mainRun).toFixed(0)} → ${med(loaded, (w) => w.mainRun).toFixed(0)} ms, ` +
        `runnable but waiting for a CPU ${med(idle, (w) => w.mainWait).toFixed(0)} → ${med(loaded, (w) => w.mainWait).toFixed(0)} ms; ` +
        `${PIN ? 'daemon and echo pinned to CPU 0, clients to CPU 1' : 'nothing pinned'}`,
    );
    console.log(
      `# ${ROUNDS} rounds of ${IDLE_MS / 1000} s idle and ${LOAD_MS / 1000} s under ${CONCURRENT} downloads; medians of the rounds' percentiles; ` +
        `probes idle ${n(idle, 'dhcp')} dhcp / ${n(idle, 'tftpFirst')} tftp, loaded ${n(loaded, 'dhcp')} / ${n(loaded, 'tftpFirst')}; ` +
        `lost (no answer within 1 s) idle: ${lost(idle)}; loaded: ${lost(loaded)}; ` +
        `load average (1 min) ${f2(median(idle.map((w) => w.load1)))} idle, ${f2(median(loaded.map((w) => w.load1)))} loaded; ` +
        `${((performance.now() - started) / 1000).toFixed(0)} s`,
    );
  } finally {
    await destroyLab(lab);
  }
}

/** User + system CPU seconds of a process, from /proc. */
function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100;
  } catch {
    return NaN;
  }
}

/** ns a thread has spent on a CPU and waiting on a run queue (/proc/<pid>/task/<tid>/schedstat). */
function schedstat(pid: number, tid = pid): { run: number; wait: number } {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    return { run: run ?? NaN, wait: wait ?? NaN };
  } catch {
    return { run: NaN, wait: NaN };
  }
}

function median(xs: number[]): number {
  const a = xs.filter((x) => !Number.isNaN(x)).sort((x, y) => x - y);
  return a.length ? a[Math.floor((a.length - 1) / 2)]! : NaN;
}
