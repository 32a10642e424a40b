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
import type { PxeDecider } from '../../boot/types.ts';

type RunnerConfig = Omit<DhcpOptions, 'decide' | 'db' | 'logger' | 'metrics'> & {
  db?: string;
  logLevel?: string;
  logFile?: string;
  logBufferBytes?: number;
  /**
   * A swarmboot config file: decide with the daemon's own decider (assignments, deployment state
   * in the state database, boot/pxe.ts) instead of the small test policy. The benchmark uses it.
   */
  daemonConfig?: string;
};

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
const { db: _db, logLevel: _l, logFile: _f, logBufferBytes: _b, daemonConfig, ...rest } = cfg;

/** The daemon's decider over its own state database (in the config's dataDir). */
async function daemonDecider(file: string): Promise<PxeDecider> {
  const { loadConfig } = await import('../../config/load.ts');
  const { openDatabase } = await import('../../state/db.ts');
  const { MachineStore } = await import('../../state/machines.ts');
  const { Deployments } = await import('../../state/deployments.ts');
  const { ContentService } = await import('../../server/content-service.ts');
  const { createPxeDecider } = await import('../../server/pxe-decider.ts');
  const config = loadConfig(file);
  const state = openDatabase(config.server.dataDir);
  const store = new MachineStore(state);
  const content = new ContentService(state, logger, { sweepMs: 0, pollMs: 0, watch: false });
  const port = config.server.http.port;
  const deployments = new Deployments({ config: () => config, store, content: () => content.view(), baseUrl: (via) => `http://${via ?? '127.0.0.1'}:${port}`, serverAddress: () => config.server.address ?? '127.0.0.1', logger });
  return createPxeDecider({ deployments, store, config: () => config, httpPort: () => port });
}

try {
  const decide = daemonConfig ? await daemonDecider(daemonConfig) : testDecider;
  const srv = await startDhcp({ ...rest, decide, logger, metrics, ...(db ? { db } : {}) });
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
