/**
 * Where the admin bearer token comes from, first found wins: the SWARMBOOT_ADMIN_TOKEN environment
 * variable, `server.adminTokenFile`, `server.adminToken`, else a random token generated once into
 * `<dataDir>/admin.token` (mode 0600) so a fresh install is never open.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import type { ServerSettings } from '../config/load.ts';

export interface TokenSource {
  token: string;
  source: 'environment' | 'adminTokenFile' | 'adminToken' | 'generated';
  file?: string;
}

export function resolveAdminToken(s: ServerSettings, env: NodeJS.ProcessEnv = process.env): TokenSource {
  const fromEnv = env.SWARMBOOT_ADMIN_TOKEN?.trim();
  if (fromEnv) return { token: fromEnv, source: 'environment' };
  if (s.adminTokenFile) {
    let t: string;
    try {
      t = readFileSync(s.adminTokenFile, 'utf8').trim();
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'the file does not exist' : (e as Error).message;
      throw new Error(`server.adminTokenFile: cannot read ${s.adminTokenFile}: ${why} (or set SWARMBOOT_ADMIN_TOKEN)`);
    }
    if (t.length < 16) throw new Error(`server.adminTokenFile: the token in ${s.adminTokenFile} is shorter than 16 characters`);
    return { token: t, source: 'adminTokenFile', file: s.adminTokenFile };
  }
  if (s.adminToken) return { token: s.adminToken, source: 'adminToken' };
  const file = join(s.dataDir, 'admin.token');
  if (existsSync(file)) {
    const t = readFileSync(file, 'utf8').trim();
    if (t.length >= 16) return { token: t, source: 'generated', file };
  }
  mkdirSync(s.dataDir, { recursive: true });
  const token = randomBytes(24).toString('base64url');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return { token, source: 'generated', file };
}
