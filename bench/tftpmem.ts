/**
 * TFTP memory benchmark: the issue's bound, "50 concurrent 600 MB transfers under 150 MB RSS", measured for real.
 * One 600 MB file of random bytes; 50 atftp clients (blksize 1456, windowsize 16) start 100 ms apart and each
 * downloads the whole file through a pipe into `cksum`, which must match the file's; the server's RSS is sampled
 * every 200 ms and its lifetime peak (VmHWM, a fresh process per server) is read when the last client is done.
 * atftpd, the windowed baseline, then serves the same 50 downloads the same way.
 *
 * Run: node_modules/.bin/node bench/tftpmem.ts   (root; needs atftp, atftpd, iproute2; ~3–6 minutes on 2 cores)
 * Env: BENCH_TFTPMEM_N (50), BENCH_TFTPMEM_MB (600), BENCH_TFTPMEM_WS (16), BENCH_TFTPMEM_BASELINE=0 skips atftpd.
 * Prints `BENCH tftpmem …` lines at the end; exits 1 when a download fails or swarmboot's peak is over 150 MB.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { type Bench, BLKSIZE, fmt, makeFile, rssMB, stop, runBench, waitLine } from './tftp-common.ts';

const N = Number(process.env.BENCH_TFTPMEM_N ?? 50);
const MB = Number(process.env.BENCH_TFTPMEM_MB ?? 600);
const WS = Number(process.env.BENCH_TFTPMEM_WS ?? 16);
const BASELINE = process.env.BENCH_TFTPMEM_BASELINE !== '0';
const TARGET_MB = 150;
const STAGGER_MS = 100;

interface Run {
  /** Lifetime peak RSS of the server process (VmHWM), MB. */
  peak: number;
  /** Highest VmRSS sampled while the clients ran, and the median of the samples, MB. */
  sampledMax: number;
  sampledMedian: number;
  seconds: number;
  failures: string[];
}

/** Runs N concurrent downloads of mem.bin from `port`, each piped into cksum, while sampling `server`'s RSS. */
async function run(bench: Bench, server: ChildProcess, port: number, expect: string): Promise<Run> {
  const pid = server.pid!;
  const samples: number[] = [];
  const sample = (): void => {
    try {
      samples.push(rssMB(pid, 'VmRSS'));
    } catch {
      // exited: reported by the failures below
    }
  };
  const sampler = setInterval(sample, 200);
  const failures: string[] = [];
  const t0 = performance.now();
  const downloads: Array<Promise<void>> = [];
  for (let i = 0; i < N; i++) {
    const [c, a] = bench.inNs('atftp', ['--get', '-r', 'mem.bin', '-l', '/dev/stdout', '--option', `blksize ${BLKSIZE}`, '--option', `windowsize ${WS}`, '127.0.0.1', String(port)]);
    const cmd = `set -o pipefail; ${[c, ...a].map((x) => `'${x}'`).join(' ')} | cksum`;
    const p = spawn('bash', ['-c', cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    bench.track(p);
    downloads.push(
      new Promise<void>((resolve) => {
        let out = '';
        let err = '';
        p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        p.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-500)));
        p.on('exit', (code) => {
          if (code !== 0) failures.push(`client ${i}: exit ${code}: ${err.trim()}`);
          else if (out.trim() !== expect) failures.push(`client ${i}: cksum ${out.trim()} != ${expect}`);
          resolve();
        });
      }),
    );
    await new Promise((r) => setTimeout(r, STAGGER_MS));
    sample();
  }
  await Promise.all(downloads);
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  sample();
  const peak = rssMB(pid, 'VmHWM');
  const sorted = [...samples].sort((x, y) => x - y);
  return { peak, sampledMax: sorted.at(-1) ?? NaN, sampledMedian: sorted[sorted.length >> 1] ?? NaN, seconds, failures };
}

function describe(who: string, r: Run): string {
  const rate = (N * MB) / r.seconds;
  return `${who}: ${N} × ${MB} MB in ${r.seconds.toFixed(0)} s (${fmt(rate)} MB/s in total), peak RSS ${fmt(r.peak)} MB (sampled: max ${fmt(r.sampledMax)}, median ${fmt(r.sampledMedian)}), ${r.failures.length} failed downloads`;
}

async function main(bench: Bench): Promise<void> {
  const file = path.join(bench.root, 'mem.bin');
  makeFile(file, MB);
  const ck = spawnSync('bash', ['-c', `cksum < '${file}'`], { encoding: 'utf8' }).stdout.trim();
  const load0 = os.loadavg();

  // swarmboot with its defaults (cache budget, chunk size, windowsize limit): the bound is for what admins run.
  const { proc: sb, port: sbPort } = await bench.startSwarmboot();
  const base = rssMB(sb.pid!, 'VmRSS');
  const sbRun = await run(bench, sb, sbPort, ck);
  const statsP = waitLine(sb, /STATS (.*)/, 10000).catch(() => null);
  await stop(sb);
  const stats = JSON.parse((await statsP)?.[1] ?? '{}') as { transfers?: Record<string, number>; bytes?: number; retransmits?: number; cache?: Record<string, number>; memory?: Record<string, number> };
  console.error(describe('swarmboot', sbRun));
  console.error(`swarmboot: RSS ${fmt(base)} MB idle; server counted ${JSON.stringify(stats.transfers)}, ${stats.bytes} bytes acknowledged, ${stats.retransmits} DATA resent; cache ${JSON.stringify(stats.cache)}`);
  console.error(`swarmboot: at its highest sampled RSS, process.memoryUsage() was ${JSON.stringify(stats.memory)}`);
  if ((stats.transfers?.ok ?? 0) !== N) sbRun.failures.push(`server counted ${stats.transfers?.ok ?? 0} complete transfers, not ${N}`);

  let atRun: Run | null = null;
  if (BASELINE) {
    const atPort = 6969;
    const at = bench.startAtftpd(atPort);
    await bench.waitUdpPort(atPort);
    atRun = await run(bench, at, atPort, ck);
    await stop(at);
    console.error(describe('atftpd', atRun));
  }
  const load1 = os.loadavg();
  console.error(`load average before ${load0.map((l) => l.toFixed(2)).join(' ')}, after ${load1.map((l) => l.toFixed(2)).join(' ')} (${os.availableParallelism()} CPUs)`);
  for (const f of [...sbRun.failures, ...(atRun?.failures ?? []).map((f) => `atftpd ${f}`)]) console.error(`FAILED ${f}`);

  const within = sbRun.peak <= TARGET_MB && sbRun.failures.length === 0;
  const baseline = atRun ? ` baseline=atftpd:${fmt(atRun.peak)} ratio=${(sbRun.peak / atRun.peak).toFixed(2)}` : '';
  console.log(`BENCH tftpmem mem${N}x${MB}MB_peak_rss_MB=${fmt(sbRun.peak)}${baseline} target=${TARGET_MB} within_target=${within ? 'yes' : 'no'}`);
  console.log(`BENCH tftpmem mem${N}x${MB}MB_total_MBps=${fmt((N * MB) / sbRun.seconds)}${atRun ? ` baseline=atftpd:${fmt((N * MB) / atRun.seconds)} ratio=${(atRun.seconds / sbRun.seconds).toFixed(2)}` : ''}`);
  if (!within) process.exitCode = 1;
}

await runBench('sbtftp-mem', main);
