/**
 * Runs the DHCP front end alone, for real-peer tests and the benchmark, usually inside a network
 * namespace: `ip netns exec NS node test/dhcp/runner.ts '<json>'`. Prints one line to stdout,
 * `READY {...ports}` or `ERROR message`, then serves until SIGTERM/SIGINT. Logs (pino JSON) go to
 * `logFile` or stderr.
 */
import { DatabaseSync } from 'node:sqlite';
import { pino } from 'pino';
import { Registry } from '../../server/metrics.ts';
import { startDhcp } from '../../server/dhcp/server.ts';
import type { DhcpOptions } from '../../server/dhcp/types.ts';
import { testDecider } from './decider.ts';

type RunnerConfig = Omit<DhcpOptions, 'decide' | 'db' | 'logger' | 'metrics'> & { db?: string; logLevel?: string; logFile?: string; logBufferBytes?: number };

const arg = process.argv[2];
if (!arg) {
  process.stdout.write('ERROR usage: runner.ts \'{"mode":"proxy",...}\'\n');
  process.exit(2);
}
const cfg = JSON.parse(arg) as RunnerConfig;
const logger = pino({ level: cfg.logLevel ?? 'info', base: { pid: process.pid } }, pino.destination(cfg.logFile ? { dest: cfg.logFile, sync: false, minLength: cfg.logBufferBytes ?? 0 } : 2));
let db: DatabaseSync | undefined;
if (cfg.db) {
  db = new DatabaseSync(cfg.db);
  db.exec('PRAGMA journal_mode=WAL');
}
const metrics = new Registry();
const { db: _db, logLevel: _l, logFile: _f, logBufferBytes: _b, ...rest } = cfg;
try {
  const srv = await startDhcp({ ...rest, decide: testDecider, logger, metrics, ...(db ? { db } : {}) });
  process.stdout.write(`READY ${JSON.stringify({ ports: srv.ports, links: srv.links })}\n`);
  let closing = false;
  const stop = async () => {
    if (closing) return;
    closing = true;
    await srv.close();
    db?.close();
    logger.flush();
    process.stdout.write(`METRICS ${JSON.stringify(metrics.render())}\n`);
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('data', (d) => { if (String(d).includes('metrics')) process.stdout.write(`METRICS ${JSON.stringify(metrics.render())}\n`); });
} catch (e) {
  process.stdout.write(`ERROR ${(e as Error).message}\n`);
  process.exit(1);
}
