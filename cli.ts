#!/usr/bin/env node
/** The `swarmboot` command. */
import { parseArgs } from 'node:util';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig } from './config/load.ts';
import { DAEMON_V8_FLAGS } from './server/v8-flags.ts';
import { loadConfigChecked } from './config/content-check.ts';
import { createLogger } from './server/log.ts';
import { startDaemon } from './server/daemon.ts';
import { VERSION } from './server/version.ts';

const here = dirname(fileURLToPath(import.meta.url));
/** The project root, whether running from sources or from dist/. */
const root = here.endsWith('/dist') ? dirname(here) : here;

const HELP = `swarmboot: network boot (ProxyDHCP/DHCP, TFTP, HTTP) and OS deployment server

Usage:
  swarmboot serve --config FILE     run the daemon; the config reloads when its files change
                                    and on SIGHUP (--no-watch: on SIGHUP only)
  swarmboot check-config FILE       validate a config; prints every problem with file:line:column
  swarmboot content scan --config FILE
                                    hash every content package (unchanged files are not hashed
                                    again), list WIM images, report packages that cannot be served
  swarmboot backup --config FILE OUT
                                    copy the state database (machines, deployments, events,
                                    leases, hashes) to OUT while the daemon runs
  swarmboot demo                    create a small demo content set and serve config/example.yaml
  swarmboot --help | --version

Ports 67, 69 and 4011 (DHCP, TFTP, PXE) need root or CAP_NET_BIND_SERVICE.
Admin API token: SWARMBOOT_ADMIN_TOKEN, server.adminTokenFile, server.adminToken, or generated
into <dataDir>/admin.token on first start.
`;

async function serve(configFile: string, watch = true): Promise<number> {
  const logger = createLogger();
  let daemon;
  try {
    daemon = await startDaemon({ configFile, logger, watch });
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      return 1;
    }
    // Bind failures and other start-up errors: one clear line, no stack trace.
    logger.fatal({ code: (e as NodeJS.ErrnoException).code }, (e as Error).message);
    await new Promise((r) => setTimeout(r, 100));
    process.stderr.write(`swarmboot: ${(e as Error).message}\n`);
    return 2;
  }
  const d = daemon;
  process.on('SIGHUP', () => {
    void d.reload('SIGHUP').then((r) => logger.info({ result: r.result }, 'SIGHUP reload'));
  });
  await new Promise<void>((resolveStop) => {
    const stop = (sig: string) => {
      logger.info({ signal: sig }, 'shutting down');
      resolveStop();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  await d.close();
  return 0;
}

async function checkConfig(file: string): Promise<number> {
  try {
    const cfg = await loadConfigChecked(file);
    const assigned = cfg.hosts.filter((h) => h.sequence || h.group).length;
    process.stdout.write(
      `${cfg.file}: OK (${cfg.files.length} file${cfg.files.length === 1 ? '' : 's'}, ${cfg.hosts.length} hosts, ${assigned} with an assignment, ` +
        `${Object.keys(cfg.groups).length} groups, ${Object.keys(cfg.sequences).length} sequences, ${Object.keys(cfg.packages).length} packages, ` +
        `${Object.keys(cfg.profiles).length} boot profiles; unknown machines: ${cfg.defaultRule.action}${cfg.defaultRule.sequence ? ` ${cfg.defaultRule.sequence}` : ''})\n`,
    );
    return 0;
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

async function contentScan(file: string): Promise<number> {
  let cfg;
  try {
    cfg = await loadConfigChecked(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      return 1;
    }
    throw e;
  }
  const { openDatabase } = await import('./state/db.ts');
  const { scanContent } = await import('./content/scan.ts');
  const { createProgressRenderer } = await import('./content/progress.ts');
  const { packageSpecs } = await import('./server/content-service.ts');
  const logger = createLogger({ level: 'warn' });
  const db = openDatabase(cfg.server.dataDir);
  const progress = createProgressRenderer();
  const cat = await scanContent(packageSpecs(cfg), { db, logger, onProgress: progress.onProgress });
  progress.finish();
  const size = (n: number) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${n} B`);
  for (const p of cat.list()) {
    process.stdout.write(`${p.id.padEnd(24)} ${p.kind.padEnd(8)} ${String(p.files.length).padStart(5)} files ${size(p.totalSize).padStart(11)}  sha256:${p.sha256}\n`);
    for (const img of p.wim?.images ?? []) process.stdout.write(`${''.padEnd(34)}image ${img.index}: ${img.name}${img.edition ? ` (${img.edition})` : ''}, ${size(img.totalBytes)}\n`);
  }
  for (const [id, problem] of cat.problems()) process.stdout.write(`${id.padEnd(24)} UNAVAILABLE: ${problem}\n`);
  cat.close();
  db.close();
  return cat.problems().size > 0 ? 1 : 0;
}

/** An online copy of the state database: consistent even while the daemon writes (SQLite's backup API). */
async function backup(file: string, out: string): Promise<number> {
  let cfg;
  try {
    cfg = loadConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      return 1;
    }
    throw e;
  }
  const { openDatabase, DB_FILE } = await import('./state/db.ts');
  const { backup: sqliteBackup } = await import('node:sqlite');
  const { existsSync } = await import('node:fs');
  if (!existsSync(join(cfg.server.dataDir, DB_FILE))) {
    process.stderr.write(`swarmboot backup: no state database in ${cfg.server.dataDir} yet\n`);
    return 1;
  }
  if (existsSync(out)) {
    process.stderr.write(`swarmboot backup: ${out} exists; give a new file name\n`);
    return 1;
  }
  const db = openDatabase(cfg.server.dataDir);
  try {
    const pages = await sqliteBackup(db, resolve(out));
    process.stdout.write(`${resolve(out)}: ${pages} pages copied from ${join(cfg.server.dataDir, DB_FILE)}\n`);
  } finally {
    db.close();
  }
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      'no-watch': { type: 'boolean' },
      version: { type: 'boolean', short: 'v' },
    },
  });
  const [cmd, ...rest] = positionals;
  if (values.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (values.help || !cmd || cmd === 'help') {
    process.stdout.write(HELP);
    return cmd || values.help ? 0 : 1;
  }
  switch (cmd) {
    case 'serve': {
      const file = values.config ?? rest[0];
      if (!file) {
        process.stderr.write('swarmboot serve: --config FILE is required\n');
        return 64;
      }
      return serve(file, !values['no-watch']);
    }
    case 'check-config': {
      const file = rest[0] ?? values.config;
      if (!file) {
        process.stderr.write('swarmboot check-config: a config FILE is required\n');
        return 64;
      }
      return checkConfig(file);
    }
    case 'content': {
      const file = values.config ?? rest[1];
      if (rest[0] !== 'scan' || !file) {
        process.stderr.write('usage: swarmboot content scan --config FILE\n');
        return 64;
      }
      return contentScan(file);
    }
    case 'backup': {
      const file = values.config;
      const out = rest[0];
      if (!file || !out) {
        process.stderr.write('usage: swarmboot backup --config FILE OUT\n');
        return 64;
      }
      return backup(file, out);
    }
    case 'demo': {
      const { createDemo } = await import('./server/demo.ts');
      const configFile = resolve(root, 'config/example.yaml');
      await createDemo(configFile);
      return serve(configFile);
    }
    default:
      process.stderr.write(`swarmboot: unknown command "${cmd}"\n\n${HELP}`);
      return 64;
  }
}

/**
 * The daemon's young generation is kept small (server/v8-flags.ts says why). A V8 heap flag must be
 * given at start, so a long-running command re-executes itself with it, in the same process (same
 * PID, for systemd). An explicit --max-semi-space-size (command line or NODE_OPTIONS) is left alone.
 */
function withSmallYoungGeneration(argv: string[]): void {
  const cmd = argv.find((a) => !a.startsWith('-'));
  if (cmd !== 'serve' && cmd !== 'demo') return;
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => a.startsWith('--max-semi-space-size'));
  const execve = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
  if (given || !execve || !process.argv[1]) return;
  execve(process.execPath, [process.execPath, ...DAEMON_V8_FLAGS, ...process.execArgv, process.argv[1], ...argv], process.env);
}

withSmallYoungGeneration(process.argv.slice(2));

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`swarmboot: ${(err as Error).message}\n`);
    process.exit(70);
  },
);
