/** Shared setup for content tests: temp dirs, an in-memory state DB, a served catalogue. */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { spawn, type SpawnOptions } from 'node:child_process';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Catalogue } from '../../content/catalogue.ts';
import { scanContent } from '../../content/scan.ts';
import type { PackageSpec } from '../../content/types.ts';
import { silentLogger } from '../../server/log.ts';
import { Registry } from '../../server/metrics.ts';
import { contentRoutes, type ContentRoutesOptions } from '../../server/http/content.ts';

export function tempDir(prefix = 'sb-content-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface Served {
  app: FastifyInstance;
  base: string;
  catalogue: Catalogue;
  metrics: Registry;
  db: DatabaseSync;
  close: () => Promise<void>;
}

export async function serve(specs: PackageSpec[], extra: Partial<ContentRoutesOptions> = {}, db = new DatabaseSync(':memory:')): Promise<Served> {
  const logger = silentLogger();
  const catalogue = await scanContent(specs, { db, logger });
  const metrics = new Registry();
  const app = Fastify({ logger: false, keepAliveTimeout: 65_000, requestTimeout: 0, connectionTimeout: 0 });
  app.get('/healthz', async () => ({ status: 'ok' }));
  await app.register(contentRoutes, { catalogue, logger, metrics, ...extra });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  if (!addr || typeof addr === 'string') throw new Error('no address');
  return {
    app,
    base: `http://127.0.0.1:${addr.port}`,
    catalogue,
    metrics,
    db,
    close: async () => {
      await app.close();
    },
  };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, collecting output (a real peer: curl, aria2c, wimcapture). */
export function run(cmd: string, args: string[], opts: SpawnOptions & { timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let stdout = '';
    let stderr = '';
    p.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = opts.timeoutMs ? setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs) : undefined;
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * Writes `size` bytes where every 4 KiB block starts with its own index, over random filler, so a
 * byte served from the wrong offset changes the hash. Returns the SHA-256.
 */
export function makeFile(path: string, size: number, seed = 1): string {
  const seg = Math.min(size, 64 << 20);
  const base = randomBytes(seg);
  const h = createHash('sha256');
  const fd = openSync(path, 'w');
  try {
    for (let off = 0; off < size; off += seg) {
      const n = Math.min(seg, size - off);
      const buf = base.subarray(0, n);
      for (let b = 0; b + 8 <= n; b += 4096) buf.writeBigUInt64LE(BigInt((off + b) / 4096) * 1000n + BigInt(seed), b);
      writeSync(fd, buf, 0, n, off);
      h.update(buf);
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

export function sha256File(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(4 << 20);
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

export async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One raw HTTP/1.1 exchange on a fresh socket (for targets curl would normalise). */
export function rawRequest(base: string, target: string, extra = '', method = 'GET'): Promise<{ status: number; head: string; body: Buffer }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(url.port), url.hostname);
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', reject);
    sock.on('close', () => {
      const all = Buffer.concat(chunks);
      const i = all.indexOf('\r\n\r\n');
      const head = all.subarray(0, i < 0 ? all.length : i).toString('latin1');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body: i < 0 ? Buffer.alloc(0) : all.subarray(i + 4) });
    });
    sock.write(`${method} ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${extra}\r\n`);
  });
}
