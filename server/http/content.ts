/**
 * `GET`/`HEAD /content/<package>/<path>`: package files over HTTP with ranges, validators and the
 * SHA-256 in every response, so iPXE, wimboot, curl, aria2c and the fetch agent can resume and
 * verify. `GET /content/` lists packages and `GET /content/<package>/` describes one (JSON, with
 * each file's size, SHA-256 and URL). A single-file package is `/content/<id>/<file name>`.
 *
 * Headers: Accept-Ranges, Content-Length, Last-Modified, a strong ETag (`"sha256-<hex>"` when the
 * hash is known), `Repr-Digest: sha-256=:<base64>:` and `X-Content-SHA256: <hex>` (of the whole
 * file, also on 206). One range per request (overlapping or adjacent ranges are merged; disjoint
 * ones get the whole file, 200); an unsatisfiable range → 416 with the file size in Content-Range
 * (RFC 9110 §15.5.17).
 * If-None-Match (weak compare) and If-Modified-Since → 304; If-Range (strong ETag or exact date)
 * that does not match → the whole file, 200.
 *
 * Confinement: only files in the catalogue are served; the URL path is a key into the package's
 * file list, never joined onto a directory. `..`, `%2e%2e`, encoded slashes, backslashes, NUL and
 * control characters are refused with 400; unknown paths (absolute ones included) are 404. Files
 * are opened by their symlink-free path with O_NOFOLLOW, and a file that is no longer the inode
 * the scan saw must still resolve to itself inside the root, so a symlink swapped in later leads
 * nowhere.
 *
 * When a file changes on disk (decision, for the README):
 * - A transfer in flight keeps the file it opened. If the file is replaced the usual way, by
 *   writing a new file and renaming it over the old one (or deleting the old one), the transfer
 *   finishes with the old bytes, all of them, matching the ETag and SHA-256 in its headers.
 * - If the file is modified in place (written, truncated, or rewritten with its mtime put back),
 *   the transfer is cut off: after reading each 1 MiB chunk and before sending it, the server
 *   checks the open file's size, mtime and ctime, and on any change closes the connection short
 *   of Content-Length. The client sees a truncated transfer (curl: exit 18), never a body that
 *   mixes two versions. (Chunks shared between clients are keyed by inode, size and mtime, and
 *   every transfer still runs its own check, so sharing cannot mix versions either.)
 * - The next request sees the new file. Its stamp (size, mtime, inode) no longer matches the
 *   catalogue, so it is served with an ETag made from that stamp and without the SHA-256 headers,
 *   since its hash is not known yet, while the package is re-hashed in the background. Once done,
 *   responses carry the new SHA-256 and ETag and the catalogue's change listeners fire, so
 *   sequences hand out the new hash. A package that cannot be re-scanned (file gone, or still
 *   being written) answers 404 and is retried with back-off until it settles.
 * - A client resuming with If-Range and the old ETag gets the whole new file (200), not a range
 *   of it (curl -C - then refuses to append: exit 33). A client resuming without If-Range gets a
 *   range of the new file, and the SHA-256 it was given with the URL no longer matches what it
 *   assembled, which the fetch agent reports as a failed download.
 * - Files added to a folder package appear after the next scan; deleted ones answer 404.
 *
 * Load: slow clients hold at most one 1 MiB chunk each (backpressure: nothing is read for a
 * socket that has not drained) and are dropped after `stallMs` without progress. Optional token
 * buckets per client address and per subnet (`limits`) cap bandwidth for small branch links.
 */
import { constants, fstatSync, open, close, realpath } from 'node:fs';
import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Catalogue } from '../../content/catalogue.ts';
import type { PackageInfo } from '../../content/types.ts';
import type { Logger } from '../log.ts';
import type { Registry } from '../metrics.ts';
import {
  contentType,
  etagForHash,
  etagForStamp,
  httpDate,
  ifRangeMatches,
  noneMatch,
  notModifiedSince,
  parseRange,
  reprDigest,
} from './content-headers.ts';
import { BandwidthLimiter, type ContentLimits } from './content-limit.ts';
import { contentUrl, parseContentTarget } from './content-path.ts';
import { ChunkCache } from './content-chunks.ts';
import { sendRange, stampCheck, type SendOutcome } from './content-send.ts';
import { TurnGate } from './content-turns.ts';

export interface ContentRoutesOptions {
  /** The catalogue, or a getter when the daemon swaps catalogues on reload. */
  catalogue: Catalogue | (() => Catalogue);
  logger: Logger;
  metrics: Registry;
  limits?: ContentLimits;
  /** Send buffer size; 1 MiB measured best (bench/http.ts). */
  chunkSize?: number;
  /** Recently sent chunks kept for other clients of the same file. Default 16 MiB. */
  cacheBytes?: number;
  /** Disconnect a client that accepts no data for this long. Default 120 s. */
  stallMs?: number;
  /** Event-loop sharing between bodies (content-turns.ts); shared with other body senders of the server. */
  turns?: TurnGate;
}

/** Transfers at least this large are logged at info when they end; smaller ones at debug. */
const LOG_INFO_BYTES = 64 << 20;

export async function contentRoutes(app: FastifyInstance, opts: ContentRoutesOptions): Promise<void> {
  const log = opts.logger.child({ component: 'content' });
  const catalogue = typeof opts.catalogue === 'function' ? opts.catalogue : () => opts.catalogue as Catalogue;
  const limiter = new BandwidthLimiter(opts.limits);
  const turns = opts.turns ?? new TurnGate(4);
  const m = opts.metrics;
  const readBytes = m.counter('swarmboot_content_read_bytes_total', 'Bytes read from disk or page cache for content bodies (less than sent when clients share chunks)');
  const cache = new ChunkCache(opts.chunkSize ?? 1 << 20, opts.cacheBytes ?? 16 << 20, (n) => readBytes.inc({}, n));
  const requests = m.counter('swarmboot_content_requests_total', 'Content requests by method and status');
  const bytesSent = m.counter('swarmboot_content_bytes_sent_total', 'Content body bytes written to clients, by package');
  const outcomes = m.counter('swarmboot_content_transfers_total', 'Content bodies by outcome (complete, client-gone, changed, stalled, read-error)');
  const active = m.gauge('swarmboot_content_transfers_active', 'Content bodies being sent now');
  m.gauge('swarmboot_content_buffer_bytes', 'Bytes in content send buffers: all held (cache and spare) and busy (being written)').collect(() => [
    { labels: { state: 'held' }, value: cache.heldBytes() },
    { labels: { state: 'busy' }, value: cache.busyChunks() * cache.chunkSize },
  ]);
  active.set({}, 0);

  const sweep = limiter.enabled ? setInterval(() => limiter.sweep(), 60_000).unref() : undefined;
  app.addHook('onClose', async () => clearInterval(sweep));

  app.route({
    method: ['GET', 'HEAD'],
    url: '/content/',
    handler: async (req) => {
      requests.inc({ method: req.method, status: 200 });
      // Problems stay in the logs and the CLI: their messages carry server paths.
      return { packages: catalogue().list().map((p) => summary(p)), unavailable: [...catalogue().problems().keys()] };
    },
  });

  app.route({
    method: ['GET', 'HEAD'],
    url: '/content/:package/*',
    handler: async (req, reply) => {
      const routeUrl = req.routeOptions.url ?? '/content/:package/*';
      const base = routeUrl.slice(0, routeUrl.indexOf(':package'));
      const rawUrl = req.raw.url ?? '';
      const target = rawUrl.startsWith(base) ? parseContentTarget(rawUrl.slice(base.length)) : undefined;
      if (!target) return refuse(req, reply, 404, 'no such package');
      if (!target.ok) return refuse(req, reply, target.status, target.reason);
      const cat = catalogue();
      if (target.path === '') {
        const pkg = cat.get(target.packageId);
        if (!pkg) return refuse(req, reply, 404, `no content package "${target.packageId}"`);
        requests.inc({ method: req.method, status: 200 });
        return { ...summary(pkg), files: pkg.files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256, url: contentUrl(pkg.id, f.path) })) };
      }
      const found = cat.lookup(target.packageId, target.path);
      if (!found) return refuse(req, reply, 404, `no file "${target.path}" in content package "${target.packageId}"`);
      await serveFile(req, reply, cat, found.pkg, found.file);
    },
  });

  function refuse(req: FastifyRequest, reply: FastifyReply, status: 400 | 404, reason: string): FastifyReply {
    requests.inc({ method: req.method, status });
    log.debug({ url: req.url, status, reason }, 'content request refused');
    return reply.code(status).send({ error: reason });
  }

  async function serveFile(
    req: FastifyRequest,
    reply: FastifyReply,
    cat: Catalogue,
    pkg: PackageInfo,
    file: PackageInfo['files'][number],
  ): Promise<void> {
    let fd: number;
    try {
      fd = await openNoFollow(file.absPath);
    } catch {
      void cat.refresh(pkg.id);
      refuse(req, reply, 404, `file "${file.path}" of content package "${pkg.id}" is gone`);
      return;
    }
    let fdOpen = true;
    const closeFd = (): void => {
      if (fdOpen) close(fd, () => undefined);
      fdOpen = false;
    };
    try {
      const st = fstatSync(fd, { bigint: true });
      const size = Number(st.size);
      const known = st.ino === file.ino && st.dev === file.dev && Number(st.size) === file.size && st.mtimeNs === file.mtimeNs;
      if (!known) {
        // Not the inode the scan hashed: make sure the path still leads to itself, inside the root
        // (a symlink swapped in since the scan would change what realpath says).
        if (!st.isFile() || (await realpathOf(file.absPath)) !== file.absPath) {
          closeFd();
          void cat.refresh(pkg.id);
          refuse(req, reply, 404, `file "${file.path}" of content package "${pkg.id}" is gone`);
          return;
        }
        void cat.refresh(pkg.id);
      }
      const etag = known ? etagForHash(file.sha256) : etagForStamp(size, st.mtimeNs, st.ino);
      const mtimeMs = Number(st.mtimeNs / 1_000_000n);
      const lastModified = httpDate(mtimeMs);
      const headers: OutgoingHttpHeaders = {
        'accept-ranges': 'bytes',
        etag,
        'last-modified': lastModified,
        'content-type': contentType(file.path),
        // Revalidate every time: the ETag makes that a cheap 304, and a changed file is never
        // served from a cache.
        'cache-control': 'no-cache',
      };
      if (known) {
        headers['repr-digest'] = reprDigest(file.sha256);
        headers['x-content-sha256'] = file.sha256;
      }

      const inm = header(req, 'if-none-match');
      const ims = header(req, 'if-modified-since');
      if (inm !== undefined ? noneMatch(inm, etag) : ims !== undefined && notModifiedSince(ims, mtimeMs)) {
        return finishEmpty(req, reply, 304, headers, closeFd);
      }

      let status = 200;
      let start = 0;
      let end = size - 1;
      const ifRange = header(req, 'if-range');
      const range = ifRange === undefined || ifRangeMatches(ifRange, etag, lastModified) ? parseRange(header(req, 'range'), size) : { kind: 'none' as const };
      if (range.kind === 'unsatisfiable') {
        headers['content-range'] = `bytes */${size}`;
        headers['content-length'] = 0;
        return finishEmpty(req, reply, 416, headers, closeFd);
      }
      if (range.kind === 'range') {
        status = 206;
        start = range.start;
        end = range.end;
        headers['content-range'] = `bytes ${start}-${end}/${size}`;
      }
      headers['content-length'] = end - start + 1;
      if (req.method === 'HEAD') return finishEmpty(req, reply, status, headers, closeFd);

      requests.inc({ method: req.method, status });
      reply.hijack();
      const res = reply.raw;
      res.writeHead(status, headers);
      const started = performance.now();
      const { buckets, rate } = limiter.bucketsFor(req.socket.remoteAddress ?? '');
      active.inc();
      let sent = 0;
      let outcome: SendOutcome;
      try {
        outcome = await sendRange({
          res,
          fd,
          fileKey: `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`,
          size,
          start,
          end,
          cache,
          unchanged: stampCheck(fd, st.size, st.mtimeNs, st.ctimeNs),
          buckets,
          rate,
          stallMs: opts.stallMs,
          turns,
          onBytes: (n) => {
            sent += n;
            bytesSent.inc({ package: pkg.id }, n);
          },
        });
      } finally {
        active.dec();
        closeFd();
      }
      outcomes.inc({ outcome });
      const entry = {
        package: pkg.id,
        path: file.path,
        status,
        range: status === 206 ? `${start}-${end}` : undefined,
        bytes: sent,
        ms: Math.round(performance.now() - started),
        client: req.socket.remoteAddress,
        outcome,
      };
      if (outcome === 'changed') {
        log.warn(entry, 'content file changed during transfer; connection closed so the client sees a short body, not a mix');
        void cat.refresh(pkg.id);
      } else if (outcome === 'read-error') log.error(entry, 'content read failed');
      else log[sent >= LOG_INFO_BYTES ? 'info' : 'debug'](entry, 'content transfer ended');
    } catch (e) {
      closeFd();
      throw e;
    }
  }

  function finishEmpty(req: FastifyRequest, reply: FastifyReply, status: number, headers: OutgoingHttpHeaders, closeFd: () => void): void {
    closeFd();
    requests.inc({ method: req.method, status });
    if (status === 304) {
      // RFC 9110 §15.4.5: a 304 carries validators, not representation metadata.
      delete headers['content-type'];
      delete headers['content-length'];
    }
    reply.hijack();
    reply.raw.writeHead(status, headers);
    reply.raw.end();
  }
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

function summary(p: PackageInfo): Record<string, unknown> {
  return {
    id: p.id,
    kind: p.kind,
    sha256: p.sha256,
    size: p.totalSize,
    fileCount: p.files.length,
    url: p.single ? contentUrl(p.id, p.files[0]!.path) : contentUrl(p.id, ''),
    ...(p.wim ? { images: p.wim.images } : {}),
    ...(p.defaultImage ? { defaultImage: p.defaultImage.index } : {}),
    ...(p.models ? { models: p.models } : {}),
  };
}

function openNoFollow(path: string): Promise<number> {
  return new Promise((resolve, reject) => open(path, constants.O_RDONLY | constants.O_NOFOLLOW, (err, fd) => (err ? reject(err) : resolve(fd))));
}

function realpathOf(path: string): Promise<string | undefined> {
  return new Promise((resolve) => realpath(path, (err, p) => resolve(err ? undefined : p)));
}
