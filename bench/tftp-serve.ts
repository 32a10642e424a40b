/**
 * The TFTP benchmarks' server process: swarmboot's TFTP server alone, so its RSS is its own. The benchmarks run
 * this file type-stripped (bench/tftp-common.ts buildJs), as the daemon runs from tsc's output in production:
 * Node's on-the-fly TypeScript support alone costs ~25 MB of RSS.
 * argv: OPTIONS_JSON (TftpOptions without the logger). Prints `READY <port>`; on SIGTERM prints `STATS <json>` (the
 * server's stats, plus `memory`: process.memoryUsage() at the highest RSS seen, sampled every 250 ms) and exits.
 */
import { startTftp } from '../server/tftp/server.ts';
import { silentLogger } from '../server/log.ts';

const opts = JSON.parse(process.argv[2] ?? '{}') as Record<string, unknown>;
const srv = await startTftp({ root: String(opts.root), ...opts, logger: silentLogger() });
process.stdout.write(`READY ${srv.address().port}\n`);
// Where the peak RSS goes: the V8 heap, or Buffers (cache chunks, packet slots) outside it.
let peak = process.memoryUsage();
const sampler = setInterval(() => {
  const m = process.memoryUsage();
  if (m.rss > peak.rss) peak = m;
}, 250);
sampler.unref();
const stop = (): void => {
  clearInterval(sampler);
  void srv.close().then(() => {
    const mb = (n: number): number => Math.round((n / 1048576) * 10) / 10;
    const memory = { rssMB: mb(peak.rss), heapTotalMB: mb(peak.heapTotal), heapUsedMB: mb(peak.heapUsed), externalMB: mb(peak.external), arrayBuffersMB: mb(peak.arrayBuffers) };
    process.stdout.write(`STATS ${JSON.stringify({ ...srv.stats(), memory })}\n`, () => process.exit(0));
  });
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
await new Promise(() => {});
