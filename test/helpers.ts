/** Shared test helpers: temporary folders, configs, and a daemon on ephemeral ports. */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { silentLogger } from '../server/log.ts';
import { startDaemon, type Daemon } from '../server/daemon.ts';

export const ROOT = join(dirname(new URL(import.meta.url).pathname), '..');
export const NODE = process.execPath;

export function tempDir(prefix = 'sbt-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    const p = join(dir, name);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, text);
  }
}

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

/** A daemon with HTTP on an ephemeral loopback port, TFTP/DHCP off, silent logs. */
export async function daemonFor(configFile: string, env: NodeJS.ProcessEnv = { SWARMBOOT_ADMIN_TOKEN: ADMIN_TOKEN }): Promise<Daemon & { url: string }> {
  const d = await startDaemon({ configFile, logger: silentLogger(), ports: { http: 0 }, watch: false, env });
  return Object.assign(d, { url: `http://127.0.0.1:${d.httpAddress().port}` });
}

/** A config whose server section keeps everything on loopback and in `dir`. */
export function serverSection(extra = ''): string {
  return `server:
  address: 127.0.0.1
  dataDir: data
  contentDir: content
  http: { host: 127.0.0.1, port: 0 }
  tftp: { enabled: false }
  dhcp: { enabled: false }
${extra}`;
}

import { spawn, type ChildProcess } from 'node:child_process';

export interface CliDaemon {
  child: ChildProcess;
  url: string;
  logs: () => string;
  waitForLog: (re: RegExp, ms?: number) => Promise<string>;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** Run the real CLI (`swarmboot serve`) as a child process and find its HTTP port from its JSON logs. */
export async function startCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliDaemon> {
  const child = spawn(NODE, [join(ROOT, 'cli.ts'), ...args], {
    env: { ...process.env, SWARMBOOT_ADMIN_TOKEN: ADMIN_TOKEN, NODE_NO_WARNINGS: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const waitForLog = async (re: RegExp, ms = 15_000): Promise<string> => {
    const start = Date.now();
    while (Date.now() - start < ms) {
      const m = re.exec(out);
      if (m) return m[0];
      if (child.exitCode !== null) throw new Error(`daemon exited (${child.exitCode}) before /${re.source}/:\n${out}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`timed out waiting for /${re.source}/ in daemon output:\n${out}`);
  };
  const line = await waitForLog(/"listen":"[^"]+:(\d+)"/);
  const port = /:(\d+)"$/.exec(line)![1];
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    logs: () => out,
    waitForLog,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
