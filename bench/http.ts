/**
 * HTTP content delivery: swarmboot's /content route against nginx (sendfile on), same 2 GB file,
 * same client (curl to /dev/null), on loopback. Prints BENCH lines:
 *   single stream MB/s, 20 concurrent streams MB/s (aggregate), peak server RSS, and the latency of
 *   a tiny request (/healthz) on the same server while the 20 downloads run, against idle.
 * swarmboot runs in a child process (this file with `serve`), so its RSS is its own.
 *
 *   node_modules/.bin/node bench/http.ts            # the benchmark
 *   node_modules/.bin/node bench/http.ts serve FILE # just the server (prints its port)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { request, Agent } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MB = 1e6;
const FILE_SIZE = 2 * 1024 ** 3;
const CONCURRENT = 20;

if (process.argv[2] === 'serve') {
  await serveMode(process.argv[3]!);
} else {
  await benchMode();
}

async function serveMode(file: string): Promise<void> {
  const { DatabaseSync } = await import('node:sqlite');
  const { default: Fastify } = await import('fastify');
  const { scanContent } = await import('../content/scan.ts');
  const { contentRoutes } = await import('../server/http/content.ts');
  const { silentLogger } = await import('../server/log.ts');
  const { Registry } = await import('../server/metrics.ts');
  const logger = silentLogger();
  const db = new DatabaseSync(join(dirname(file), 'state.db'));
  const catalogue = await scanContent([{ id: 'bench', kind: 'file', path: file }], { db, logger });
  const app = Fastify({ logger: false, keepAliveTimeout: 65_000, requestTimeout: 0, connectionTimeout: 0 });
  app.get('/healthz', async () => ({ status: 'ok' }));
  await app.register(contentRoutes, { catalogue, logger, metrics: new Registry() });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  process.stdout.write(`PORT ${typeof addr === 'object' && addr ? addr.port : 0}\n`);
  const stop = (): void => void app.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function benchMode(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sb-bench-http-'));
  // nginx workers drop to an unprivileged user: let them read the file.
  chmodSync(dir, 0o755);
  const file = join(dir, 'image.bin');
  const children: ChildProcess[] = [];
  try {
    writeTestFile(file, FILE_SIZE);
    writeFileSync(join(dir, 'tiny.txt'), '{"status":"ok"}', { mode: 0o644 });
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
        `file ${(FILE_SIZE / MB).toFixed(0)} MB, curl -o /dev/null, nginx ${nginx.workers} workers sendfile on`,
    );
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await sleep(300);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
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

async function startSwarmboot(file: string, children: ChildProcess[]): Promise<{ port: number; pid: number }> {
  const self = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [self, 'serve', file], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`swarmboot server exited (${code})`)));
  });
  return { port, pid: child.pid! };
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
