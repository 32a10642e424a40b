/**
 * Runs the DHCP front end alone, for real-peer tests and the benchmark, usually inside a network
 * namespace: `ip netns exec NS node test/dhcp/runner.ts '<json>'`. Prints one line to stdout,
 * `READY {...ports}` or `ERROR message`, then serves until SIGTERM/SIGINT. Logs (pino JSON) go to
 * `logFile` or stderr.
 */
import { DatabaseSync } from 'node:sqlite';
import { pino } from 'pino';
import { createLogger } from '../../server/log.ts';
import { Registry } from '../../server/metrics.ts';
import { startDhcp } from '../../server/dhcp/server.ts';
import type { DhcpOptions } from '../../server/dhcp/types.ts';
import { testDecider } from './decider.ts';
import type { PxeDecider } from '../../boot/types.ts';

type RunnerConfig = Omit<DhcpOptions, 'decide' | 'db' | 'logger' | 'metrics'> & {
  db?: string;
  logLevel?: string;
  logFile?: string;
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
// The daemon's own logger (server/log.ts): the same line writer, to a file instead of stdout.
const logger = cfg.logFile ? createLogger({ level: cfg.logLevel ?? 'info', file: cfg.logFile }) : pino({ level: cfg.logLevel ?? 'info', base: { pid: process.pid } }, pino.destination(2));
let db: DatabaseSync | undefined;
if (cfg.db && !cfg.daemonConfig) {
  db = new DatabaseSync(cfg.db);
  db.exec('PRAGMA journal_mode=WAL');
}
const metrics = new Registry();
const { db: _db, logLevel: _l, logFile: _f, daemonConfig, ...rest } = cfg;

/**
 * The daemon's decider over its own state database (in the config's dataDir), wired as
 * server/daemon.ts does: WAL checkpoints in a worker thread, sightings written behind, and full
 * mode's leases in the same database.
 */
async function daemonDecider(file: string): Promise<{ decide: PxeDecider; db: DatabaseSync; close: () => Promise<void> }> {
  const { join } = await import('node:path');
  const { loadConfig } = await import('../../config/load.ts');
  const { openDatabase, DB_FILE } = await import('../../state/db.ts');
  const { Checkpointer } = await import('../../state/checkpointer.ts');
  const { MachineStore } = await import('../../state/machines.ts');
  const { Deployments } = await import('../../state/deployments.ts');
  const { ContentService } = await import('../../server/content-service.ts');
  const { createPxeDecider } = await import('../../server/pxe-decider.ts');
  const config = loadConfig(file);
  const state = openDatabase(config.server.dataDir);
  const checkpointer = Checkpointer.start(state, join(config.server.dataDir, DB_FILE), logger);
  const store = new MachineStore(state);
  const content = new ContentService(state, logger, { sweepMs: 0, pollMs: 0, watch: false });
  const port = config.server.http.port;
  const deployments = new Deployments({ config: () => config, store, content: () => content.view(), baseUrl: (via) => `http://${via ?? '127.0.0.1'}:${port}`, serverAddress: () => config.server.address ?? '127.0.0.1', logger });
  const decide = createPxeDecider({ deployments, store, config: () => config, httpPort: () => port });
  return {
    decide,
    db: state,
    close: async () => {
      store.flush();
      await checkpointer.stop();
      state.close();
    },
  };
}

try {
  const daemon = daemonConfig ? await daemonDecider(daemonConfig) : undefined;
  const decide = daemon?.decide ?? testDecider;
  const leaseDb = daemon?.db ?? db;
  const srv = await startDhcp({ ...rest, decide, logger, metrics, ...(leaseDb ? { db: leaseDb } : {}) });
  process.stdout.write(`READY ${JSON.stringify({ ports: srv.ports, links: srv.links })}\n`);
  let closing = false;
  const stop = async () => {
    if (closing) return;
    closing = true;
    await srv.close();
    await daemon?.close();
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
