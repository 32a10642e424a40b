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
