/**
 * TFTP benchmark: swarmboot against atftpd (windowed) and dnsmasq (lock-step), same files, same
 * client (atftp), all three servers up at once and measured in interleaved rounds (median of BENCH_TFTP_REPEAT,
 * default 5); then a windowsize sweep of swarmboot alone (1 … 64, clean and at 1% random loss), the data behind
 * the default `maxWindowsize`. Everything runs inside a network namespace this script creates
 * (`sbtftp-bench-<pid>`), so dnsmasq can own port 69 on that namespace's loopback without touching
 * the host's; the namespace and every process started in it are removed at the end.
 * The 50 × 600 MB memory run is its own benchmark, bench/tftpmem.ts (it takes minutes).
 *
 * Run: node_modules/.bin/node bench/tftp.ts   (root; needs atftp, atftpd, dnsmasq, iproute2, nftables, ethtool)
 * Prints `BENCH tftp …` lines at the end, among them the servers' CPU time per MB (lower is better), which is what
 * a real network would cost them whatever the client's speed. BENCH_TFTP_BATCH=0 runs swarmboot with one dgram
 * send per datagram instead of a window per syscall (server/tftp/batch-send.ts), for a before/after;
 * BENCH_TFTP_SPIN_US=0 turns the spin off (tftp.spinUs, native/udp_batch.c disp_spin).
 */
import os from 'node:os';
import path from 'node:path';
import { type Bench, cpuMs, fmt, makeFile, median, rssMB, runBench, stop, waitLine } from './tftp-common.ts';

const BIG_MB = Number(process.env.BENCH_TFTP_MB ?? 200);
const PAR_MB = 30;
const PAR_N = 20;
/** Rounds of the comparison with atftpd and dnsmasq; 0 runs the windowsize sweep alone. */
const REPEAT = Number(process.env.BENCH_TFTP_REPEAT ?? 5);
const SWEEP_WS = (process.env.BENCH_TFTP_SWEEP_WS ?? '1,4,8,16,32,64').split(',').map(Number);
const SWEEP_MB = Number(process.env.BENCH_TFTP_SWEEP_MB ?? 100);
const LOSS_MB = Number(process.env.BENCH_TFTP_LOSS_MB ?? 30);
const SWEEP_REPEAT = Number(process.env.BENCH_TFTP_SWEEP_REPEAT ?? 3);
/** Random loss for the lossy sweep, in packets per thousand arriving (each direction: DATA and ACKs). */
const LOSS_PERMILLE = 10;

/** `ratio` is the median of the per-round ratios: each round measures both servers within seconds of each other,
 *  so a load swing from other work on the machine cancels out instead of landing on one side. */
function line(name: string, v: number[], base: string, b: number[]): string {
  const ratio = median(v.map((x, i) => x / b[i]!));
  return `BENCH tftp ${name}=${fmt(median(v))} baseline=${base}:${fmt(median(b))} ratio=${ratio.toFixed(2)}`;
}

async function main(bench: Bench): Promise<void> {
  const { root } = bench;
  makeFile(path.join(root, 'big.bin'), BIG_MB);
  makeFile(path.join(root, 'par.bin'), PAR_MB);
  makeFile(path.join(root, 'sweep.bin'), SWEEP_MB);
  makeFile(path.join(root, 'loss.bin'), LOSS_MB);

  const results: string[] = [];
  const load0 = os.loadavg();

  // All three servers run side by side and every round measures each of them in turn, so the load that other
  // work puts on this machine spreads over all of them alike; each figure is the median of REPEAT rounds.
  // maxWindowsize 64 whatever the default, so the sweep below can ask for every size it measures.
  // BENCH_TFTP_BATCH=0: one dgram send per datagram, as before the native batched send (server/tftp/batch-send.ts).
  // BENCH_TFTP_SPIN_US: the spin window (tftp.spinUs; 0 turns it off), for a before/after; default the server's.
  const spin = process.env.BENCH_TFTP_SPIN_US ? { spinUs: Number(process.env.BENCH_TFTP_SPIN_US) } : {};
  const { proc: sb, port: sbPort } = await bench.startSwarmboot({ maxWindowsize: 64, batchSend: process.env.BENCH_TFTP_BATCH !== '0', ...spin });
  const atPort = 6969;
  const at = bench.startAtftpd(atPort);
  await bench.waitUdpPort(atPort);
  const dm = bench.startDnsmasq();
  await bench.waitUdpPort(69);
  const fetch = bench.fetch.bind(bench);
  const pidOf = new Map([[sbPort, sb.pid!], [atPort, at.pid!], [69, dm.pid!]]);
  /** How often atftp's own timer ran out (5 s each: a stall that decides a round), per server. */
  const clientTimeouts = new Map<number, number>([[sbPort, 0], [atPort, 0], [69, 0]]);
  const timed = async (port: number, file: string, ws: number): Promise<number> => {
    const f = await bench.fetchTimed(port, file, ws);
    clientTimeouts.set(port, clientTimeouts.get(port)! + f.clientTimeouts);
    return f.seconds;
  };
  /** MB/s of one download; with `cpu`, also the server's CPU time per MB (ms), what a real network would cost it. */
  const single = async (port: number, file: string, mb: number, ws: number, cpu?: number[]): Promise<number> => {
    const c0 = cpu ? cpuMs(pidOf.get(port)!) : 0;
    const seconds = await timed(port, file, ws);
    cpu?.push((cpuMs(pidOf.get(port)!) - c0) / mb);
    return mb / seconds;
  };
  const parallel = async (port: number): Promise<number> => {
    const t0 = performance.now();
    await Promise.all(Array.from({ length: PAR_N }, () => timed(port, 'par.bin', 1)));
    return (PAR_N * PAR_MB) / ((performance.now() - t0) / 1000);
  };

  // One untimed pass per server and file, so that every server starts from the same warm page cache.
  await Promise.all([fetch(sbPort, 'big.bin', 16), fetch(sbPort, 'par.bin', 16), fetch(sbPort, 'sweep.bin', 16), fetch(sbPort, 'loss.bin', 16)]);
  await Promise.all([fetch(atPort, 'big.bin', 16), fetch(69, 'par.bin', 1)]);

  const r = { sbWs16: [] as number[], atWs16: [] as number[], sbLock: [] as number[], dmLock: [] as number[], sbPar: [] as number[], dmPar: [] as number[] };
  // On loopback the server's CPU time also pays for delivering to the client's socket (softirq in the sender's
  // context); still the figure that tracks what one datagram costs it, whatever the client's own speed.
  const cpu = { sbWs16: [] as number[], atWs16: [] as number[], sbLock: [] as number[], dmLock: [] as number[] };
  // Within a round, who goes first alternates (swarmboot in even rounds, the baseline in odd ones), so that
  // whatever the run before leaves behind (CPU frequency, a neighbour's load, warm caches) falls on both alike.
  const pair = async (i: number, a: () => Promise<void>, b: () => Promise<void>): Promise<void> => {
    if (i % 2 === 0) {
      await a();
      await b();
    } else {
      await b();
      await a();
    }
  };
  for (let i = 0; i < REPEAT; i++) {
    await pair(i, async () => void r.sbWs16.push(await single(sbPort, 'big.bin', BIG_MB, 16, cpu.sbWs16)), async () => void r.atWs16.push(await single(atPort, 'big.bin', BIG_MB, 16, cpu.atWs16)));
    await pair(i, async () => void r.sbLock.push(await single(sbPort, 'big.bin', BIG_MB, 1, cpu.sbLock)), async () => void r.dmLock.push(await single(69, 'big.bin', BIG_MB, 1, cpu.dmLock)));
    await pair(i, async () => void r.sbPar.push(await parallel(sbPort)), async () => void r.dmPar.push(await parallel(69)));
  }
  const sbRss = rssMB(sb.pid!, 'VmHWM');
  const compared = REPEAT > 0;
  const dmRss = rssMB(dm.pid!, 'VmHWM');
  await stop(at);
  await stop(dm);

  // Windowsize sweep, swarmboot alone: each round measures every size in turn (clean), then again with random
  // loss on the namespace's loopback (DATA and ACKs alike), where a lost packet costs a go-back-N resend of the
  // rest of its window. In the lossy rounds atftp's own timer is 1 s instead of 5: atftp answers a resent block
  // with one extra ACK and then waits out that timer, so when both ACKs are lost (about 1 in 10,000 ACKs at 1%)
  // the transfer stalls for one to two timers whatever the server does (see Transfer.tick). With 5 s those
  // stalls, not the window size, would decide the figures; their count is printed beside them.
  const clean = new Map<number, number[]>(SWEEP_WS.map((w) => [w, []]));
  const lossy = new Map<number, number[]>(SWEEP_WS.map((w) => [w, []]));
  const stalls = new Map<number, number>(SWEEP_WS.map((w) => [w, 0]));
  for (let i = 0; i < SWEEP_REPEAT; i++) {
    for (const w of SWEEP_WS) clean.get(w)!.push(await single(sbPort, 'sweep.bin', SWEEP_MB, w));
  }
  bench.setLoss(LOSS_PERMILLE);
  for (let i = 0; i < SWEEP_REPEAT; i++) {
    for (const w of SWEEP_WS) {
      const f = await bench.fetchTimed(sbPort, 'loss.bin', w, 1);
      lossy.get(w)!.push(LOSS_MB / f.seconds);
      stalls.set(w, stalls.get(w)! + f.clientTimeouts);
    }
  }
  const lossDropped = bench.lossDropped();
  bench.setLoss(0);
  const statsP = waitLine(sb, /STATS (.*)/, 10000).catch(() => null);
  await stop(sb);
  const stats = JSON.parse((await statsP)?.[1] ?? '{}') as { transfers?: Record<string, number>; retransmits?: number; spin?: Record<string, number> };

  const show = (xs: number[]): string => xs.map(fmt).join(' ');
  if (compared) {
    console.error(`rounds (MB/s): swarmboot ws16 ${show(r.sbWs16)} | atftpd ws16 ${show(r.atWs16)}`);
    console.error(`               swarmboot lockstep ${show(r.sbLock)} | dnsmasq lockstep ${show(r.dmLock)}`);
    console.error(`               swarmboot parallel ${show(r.sbPar)} | dnsmasq parallel ${show(r.dmPar)}`);
    console.error(`atftp's own timer ran out (5 s stall each) in the rounds: swarmboot ${clientTimeouts.get(sbPort)}×, atftpd ${clientTimeouts.get(atPort)}×, dnsmasq ${clientTimeouts.get(69)}×`);
  }
  console.error(`swarmboot over the whole run (sweep included): transfers ${JSON.stringify(stats.transfers)}, ${stats.retransmits} DATA resent; spin ${JSON.stringify(stats.spin)}`);
  for (const w of SWEEP_WS) {
    console.error(`sweep ws${w}: clean ${show(clean.get(w)!)} | ${LOSS_PERMILLE / 10}% loss ${show(lossy.get(w)!)} (atftp timed out ${stalls.get(w)}×)`);
  }
  console.error(`lossy sweep: ${lossDropped} packets dropped`);
  const load1 = os.loadavg();
  console.error(`load average before ${load0.map((l) => l.toFixed(2)).join(' ')}, after ${load1.map((l) => l.toFixed(2)).join(' ')} (${os.availableParallelism()} CPUs)`);
  console.error(`swarmboot: peak RSS ${fmt(sbRss)} MB; dnsmasq peak RSS ${fmt(dmRss)} MB (50 × 600 MB: npm run bench -- tftpmem)`);

  if (compared) {
    results.push(line('ws16_MBps', r.sbWs16, 'atftpd', r.atWs16));
    results.push(line('ws16_server_cpu_ms_per_MB', cpu.sbWs16, 'atftpd', cpu.atWs16));
    results.push(line('lockstep_MBps', r.sbLock, 'dnsmasq', r.dmLock));
    results.push(line('lockstep_server_cpu_ms_per_MB', cpu.sbLock, 'dnsmasq', cpu.dmLock));
    results.push(line('parallel20_MBps', r.sbPar, 'dnsmasq', r.dmPar));
    results.push(line('peak_rss_MB', [sbRss], 'dnsmasq', [dmRss]));
  }
  for (const w of SWEEP_WS) {
    results.push(`BENCH tftp sweep_ws${w}_MBps=${fmt(median(clean.get(w)!))} loss${LOSS_PERMILLE / 10}pct_MBps=${fmt(median(lossy.get(w)!))}`);
  }
  for (const l of results) console.log(l);
}

await runBench('sbtftp-bench', main);
