/**
 * The composition root: builds every part of the daemon from one config file and passes
 * dependencies down. Nothing here is global, so a test can start a whole daemon on ephemeral ports,
 * or any part alone.
 */
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { DatabaseSync } from 'node:sqlite';
import { ConfigHolder, type ReloadResult } from '../config/holder.ts';
import type { LoadedConfig } from '../config/load.ts';
import { DB_FILE, openDatabase } from '../state/db.ts';
import { Checkpointer } from '../state/checkpointer.ts';
import { MachineStore } from '../state/machines.ts';
import { Deployments } from '../state/deployments.ts';
import { Registry } from './metrics.ts';
import { createHttpApp } from './http/app.ts';
import { bootRoutes } from './http/boot.ts';
import { resolveAdminToken } from './admin-token.ts';
import { explainBindError } from './bind-error.ts';
import { startTftp, type TftpServer } from './tftp/server.ts';
import { ContentService } from './content-service.ts';
import { startDhcp, DhcpConfigError, type DhcpOptions, type DhcpServer } from './dhcp/server.ts';
import type { DhcpReservation } from './dhcp/types.ts';
import { existsSync } from 'node:fs';
import { createPxeDecider } from './pxe-decider.ts';
import { contentRoutes } from './http/content.ts';
import { bootFileRoutes } from './http/boot-files.ts';
import { TurnGate } from './http/content-turns.ts';
import { FileSender } from './http/content-sender.ts';
import { DEPLOYMENT_STATES } from '../boot/deployment.ts';
import { VERSION } from './version.ts';

export interface DaemonOptions {
  configFile: string;
  logger: Logger;
  /** Override listen ports (tests use 0 for ephemeral ports). */
  ports?: { http?: number; tftp?: number; dhcp?: number; pxe?: number };
  /** Start the config watcher (default true). */
  watch?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface Daemon {
  config: () => LoadedConfig;
  reload: (reason: string) => Promise<ReloadResult>;
  httpAddress: () => { address: string; port: number };
  tftpAddress: () => { address: string; port: number } | undefined;
  dhcp: () => DhcpServer | undefined;
  baseUrl: (via?: string) => string;
  db: DatabaseSync;
  adminToken: string;
  /** Resolves when the content scan that is running (or the last one) has finished. */
  contentReady: () => Promise<void>;
  close: () => Promise<void>;
}

/** Server settings a reload applies at once; every other server.* change waits for a restart. */
const LIVE_SERVER_KEYS = new Set(['server.logLevel', 'server.http.limits', 'server.http.publicUrl']);

/** The server.* keys (two levels deep: server.http.limits) whose values differ. */
function changedServerKeys(a: object, b: object): string[] {
  const out: string[] = [];
  const rec = a as Record<string, unknown>;
  const old = b as Record<string, unknown>;
  for (const k of new Set([...Object.keys(rec), ...Object.keys(old)])) {
    const x = rec[k];
    const y = old[k];
    if (JSON.stringify(x) === JSON.stringify(y)) continue;
    if (x && y && typeof x === 'object' && typeof y === 'object' && !Array.isArray(x)) {
      for (const k2 of new Set([...Object.keys(x), ...Object.keys(y)])) {
        if (JSON.stringify((x as Record<string, unknown>)[k2]) !== JSON.stringify((y as Record<string, unknown>)[k2])) out.push(`server.${k}.${k2}`);
      }
    } else out.push(`server.${k}`);
  }
  return out;
}

/** DHCP address reservations: the hosts with both a MAC and an `ip`. */
function reservationsOf(cfg: LoadedConfig): DhcpReservation[] {
  return cfg.hosts.filter((h) => h.ip && h.mac).map((h) => ({ mac: h.mac!, ip: h.ip!, ...(h.hostname ? { hostname: h.hostname } : {}) }));
}

/** The first non-internal IPv4 address: what machines on the LAN most likely reach us at. */
export function detectAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

/**
 * Node lists only interfaces that are up and have carrier. An interface that exists but has no link
 * yet (cable unplugged, a bridge with no port up) is waited for, not refused: DHCP starts when it
 * comes up. An interface that does not exist at all is a config error.
 */
async function startDhcpWhenLinked(opts: DhcpOptions, names: string[], log: Logger): Promise<{ server: () => DhcpServer | undefined; close: () => Promise<void> }> {
  let server: DhcpServer | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const close = async () => {
    closed = true;
    clearTimeout(timer);
    await server?.close();
  };
  /** Only "a named interface exists but has no link or address yet" is worth waiting for. */
  const noLinkYet = (e: unknown): boolean =>
    e instanceof DhcpConfigError && names.length > 0 && names.every((n) => existsSync(`/sys/class/net/${n}`)) && /does not exist|has no IPv4 address/.test(e.message);
  let waitingFor: string;
  try {
    server = await startDhcp(opts);
    return { server: () => server, close };
  } catch (e) {
    if (!noLinkYet(e)) throw e;
    waitingFor = (e as Error).message;
    log.warn({ interfaces: names, reason: waitingFor }, 'DHCP waits for its interfaces to come up (no link yet)');
  }
  const retry = () => {
    timer = setTimeout(() => {
      startDhcp(opts).then(
        async (d) => {
          if (closed) return d.close();
          server = d;
          log.info({ ports: d.ports, links: d.links }, 'DHCP listening (interface came up)');
        },
        (err: Error) => {
          if (closed) return;
          if (noLinkYet(err)) {
            // Once per new reason (one interface came up, another is still down), not every second.
            if (err.message !== waitingFor) log.warn({ interfaces: names, reason: err.message }, 'DHCP still waits for its interfaces');
            waitingFor = err.message;
            retry();
          } else {
            // Now that the interfaces are up, the configuration itself is refused (e.g. full mode on
            // two attached subnets), or a port cannot be bound: waiting will not change that.
            log.error({ err: err.message }, 'DHCP cannot start and will not retry; fix the configuration and restart');
          }
        },
      );
    }, 1000);
  };
  retry();
  return { server: () => server, close };
}

export async function startDaemon(o: DaemonOptions): Promise<Daemon> {
  const log = o.logger;
  const holder = await ConfigHolder.load(o.configFile, log);
  const cfg0 = holder.current;
  // SWARMBOOT_LOG_LEVEL (for a one-off debug run) wins over server.logLevel, which applies live on reload.
  const envLevel = (o.env ?? process.env).SWARMBOOT_LOG_LEVEL;
  const levelFromEnv = envLevel !== undefined && Object.hasOwn(log.levels.values, envLevel);
  const applyLevel = (level: string) => {
    if (log.level !== 'silent') log.level = levelFromEnv ? envLevel : level;
  };
  applyLevel(cfg0.server.logLevel);
  const cleanups: Array<() => Promise<void> | void> = [];
  const close = async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        log.warn({ err }, 'error while shutting down');
      }
    }
  };

  try {
    const db = openDatabase(cfg0.server.dataDir);
    cleanups.push(() => db.close());
    // WAL checkpoints run in a worker thread: no fsync stall on the thread answering DHCP and TFTP.
    const checkpointer = Checkpointer.start(db, join(cfg0.server.dataDir, DB_FILE), log);
    cleanups.push(() => checkpointer.stop());
    const store = new MachineStore(db);
    cleanups.push(() => store.flush());
    const metrics = new Registry();
    metrics.gauge('swarmboot_state_wal_frames', 'Frames in the state database WAL at the last checkpoint (copied back once a second, off the event loop)').collect(() => [{ labels: {}, value: checkpointer.last?.log ?? 0 }]);
    const reloads = metrics.counter('swarmboot_config_reloads_total', 'Config reloads by result (applied, unchanged, refused)');
    for (const result of ['applied', 'unchanged', 'refused']) reloads.inc({ result }, 0);
    metrics.gauge('swarmboot_config_last_reload_ok', '1 when the last reload was applied (or nothing changed), 0 when it was refused and an older config serves').collect(() => [{ labels: {}, value: holder.lastError ? 0 : 1 }]);
    metrics.gauge('swarmboot_config_loaded_timestamp_seconds', 'When the config now serving was loaded').collect(() => [{ labels: {}, value: Math.floor(holder.loadedAt.getTime() / 1000) }]);
    metrics.gauge('swarmboot_build_info', 'Version of swarmboot and of Node.js').set({ version: VERSION, node: process.version }, 1);
    metrics.gauge('swarmboot_machines', 'Machines by deployment state (none: seen, never deployed)').collect(() => {
      const counts = new Map<string, number>([...DEPLOYMENT_STATES, 'none'].map((st) => [st, 0]));
      for (const r of store.countByState()) counts.set(r.state, r.count);
      return [...counts].map(([state, value]) => ({ labels: { state }, value }));
    });
    const finished = metrics.counter('swarmboot_deployments_finished_total', 'Deployments that ended, by result (done, failed)');
    for (const result of ['done', 'failed']) finished.inc({ result }, 0);
    metrics.gauge('swarmboot_config_hosts', 'Host entries in the current config').collect(() => [{ labels: {}, value: holder.current.hosts.length }]);

    const token = resolveAdminToken(cfg0.server, o.env ?? process.env);
    log.info({ source: token.source, ...(token.file ? { file: token.file } : {}) }, 'admin token loaded');

    const address = () => holder.current.server.address ?? detected;
    const detected = detectAddress();
    let httpPort = o.ports?.http ?? cfg0.server.http.port;
    /** The URL machines use; a DHCP answer names the address of the link it goes out on. */
    const baseUrl = (via?: string) => holder.current.server.http.publicUrl ?? `http://${via ?? holder.current.server.address ?? address()}${httpPort === 80 ? '' : `:${httpPort}`}`;

    const content = new ContentService(db, log);
    cleanups.push(() => content.close());
    void content.update(cfg0, 'start');
    holder.onChange((next) => void content.update(next, 'config changed'));
    // Every reload (SIGHUP included, even with an unchanged config) also re-checks packages on disk.
    holder.onResult(() => void content.rescan('config reload'));

    // One gate for every file body the HTTP side sends: a few MiB per event-loop turn, so DHCP and
    // TFTP answers are polled between them (server/http/content-turns.ts, bench/http.ts).
    const turns = new TurnGate(4);
    // One sender for /content and /tftp: shared chunk cache and bandwidth buckets; limits read per transfer.
    const files = new FileSender({ logger: log, metrics, limits: () => holder.current.server.http.limits, turns });

    const deployments = new Deployments({
      config: () => holder.current,
      store,
      content: () => content.view(),
      baseUrl,
      serverAddress: address,
      logger: log,
      onFinished: (state) => finished.inc({ result: state }),
    });

    const app = await createHttpApp({
      logger: log,
      metrics,
      deployments,
      store,
      config: () => holder.current,
      adminToken: () => token.token,
      plugins: [
        { plugin: bootRoutes as never, opts: { deployments, store, config: () => holder.current, baseUrl, serverAddress: address } },
        { plugin: contentRoutes as never, opts: { catalogue: () => content.catalogue, logger: log, metrics, sender: files } },
        { plugin: bootFileRoutes as never, opts: { root: () => holder.current.server.tftp.root, sender: files } },
      ],
      health: () => ({
        status: holder.lastError ? 'degraded' : 'ok',
        config: { file: holder.current.file, digest: holder.current.digest.slice(0, 12), loadedAt: holder.loadedAt.toISOString(), lastReloadError: holder.lastError },
        content: content.health(),
        uptimeSeconds: Math.round(process.uptime()),
      }),
    });
    cleanups.push(() => app.close());
    const httpHost = cfg0.server.http.host;
    try {
      await app.listen({ host: httpHost, port: httpPort });
    } catch (err) {
      throw explainBindError('HTTP server', httpHost, httpPort, err as NodeJS.ErrnoException);
    }
    const addr = app.server.address();
    if (addr && typeof addr === 'object') httpPort = addr.port;
    log.info({ url: baseUrl(), listen: `${httpHost}:${httpPort}` }, 'HTTP listening');

    let tftp: TftpServer | undefined;
    const t = cfg0.server.tftp;
    if (t.enabled) {
      tftp = await startTftp({
        root: t.root,
        host: t.host,
        port: o.ports?.tftp ?? t.port,
        maxBlksize: t.maxBlksize,
        maxWindowsize: t.maxWindowsize,
        maxTransfers: t.maxTransfers,
        spinUs: t.spinUs,
        logger: log,
        metrics,
      });
      const tf = tftp;
      cleanups.push(() => tf.close());
      log.info({ root: t.root, listen: `${tf.address().address}:${tf.address().port}` }, 'TFTP listening');
    }

    let dhcpOf: () => DhcpServer | undefined = () => undefined;
    const dc = cfg0.server.dhcp;
    if (dc.enabled) {
      const decide = createPxeDecider({ deployments, store, config: () => holder.current, httpPort: () => httpPort });
      const perMinute = dc.ratePerMacPerMinute;
      const dhcpOptions: DhcpOptions = {
        mode: dc.mode,
        ...(dc.interfaces.length ? { interfaces: dc.interfaces } : {}),
        ports: { server: o.ports?.dhcp ?? dc.port, pxe: o.ports?.pxe ?? dc.proxyPort },
        ...(cfg0.server.address ? { serverAddress: cfg0.server.address } : {}),
        pools: dc.pools,
        reservations: reservationsOf(cfg0),
        decide,
        db,
        logger: log,
        metrics,
        rateLimit: { burst: Math.min(20, perMinute), perSecond: perMinute / 60 },
        ...(dc.pxeMenu ? { pxeMenu: dc.pxeMenu } : {}),
      };
      const waiter = await startDhcpWhenLinked(dhcpOptions, dc.interfaces, log);
      dhcpOf = waiter.server;
      cleanups.push(() => waiter.close());
      const dhcp = waiter.server();
      if (dhcp) log.info({ mode: dc.mode, ports: dhcp.ports, links: dhcp.links }, 'DHCP listening');
      // Address reservations live on the hosts, so a reload applies them (full mode).
      holder.onChange((next, prev) => {
        const list = reservationsOf(next);
        if (JSON.stringify(list) === JSON.stringify(reservationsOf(prev))) return;
        dhcpOptions.reservations = list; // for a DHCP server still waiting for its interface
        try {
          dhcpOf()?.setReservations(list);
        } catch (err) {
          log.error({ err: (err as Error).message }, 'new DHCP reservations refused; the previous ones stay');
        }
      });
    }

    holder.onResult((r) => reloads.inc({ result: r.result }));
    holder.onChange((next, prev) => {
      applyLevel(next.server.logLevel);
      const changed = changedServerKeys(next.server, prev.server).filter((k) => !LIVE_SERVER_KEYS.has(k));
      if (changed.length) log.warn({ keys: changed }, 'these server settings take effect at the next restart; everything else is live');
    });
    if (o.watch !== false) holder.watch();
    cleanups.push(() => holder.unwatch());

    log.info({ config: cfg0.file, dataDir: cfg0.server.dataDir, hosts: cfg0.hosts.length, sequences: Object.keys(cfg0.sequences).length }, 'swarmboot started');
    return {
      config: () => holder.current,
      reload: (reason) => holder.reload(reason),
      httpAddress: () => ({ address: httpHost, port: httpPort }),
      tftpAddress: () => tftp?.address(),
      dhcp: () => dhcpOf(),
      baseUrl,
      db,
      adminToken: token.token,
      contentReady: () => content.update(holder.current, 'wait'),
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
