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
 *   mixes two versions. (Chunks shared between clients are keyed by device, inode, size, mtime and
 *   ctime, and every transfer still runs its own check, so sharing cannot mix versions either.)
 * - The next request sees the new file. Its stamp (size, mtime, ctime, inode) no longer matches
 *   the catalogue, so it is served with an ETag made from that stamp and without the SHA-256
 *   headers, since its hash is not known yet, while the package is re-hashed in the background.
 *   The daemon usually knows before any request: it watches package folders and checks every
 *   package periodically (server/content-service.ts). From the moment a difference is seen until
 *   the new hash is known, sequences that need the package answer 503 ("being re-hashed"), so no
 *   sequence carries a size or SHA-256 that the URL no longer serves. Once done, responses carry
 *   the new SHA-256 and ETag and sequences hand it out. A package that cannot be re-scanned (file
 *   gone, or still being written) answers 404 and is retried with back-off until it settles.
 * - A client resuming with If-Range and the old ETag gets the whole new file (200), not a range
 *   of it (curl -C - then refuses to append: exit 33). A client resuming without If-Range gets a
 *   range of the new file, and the SHA-256 it was given with the URL no longer matches what it
 *   assembled, which the fetch agent reports as a failed download.
 * - Files added to a folder package appear once the change is noticed (watch, periodic check,
 *   SIGHUP); deleted ones answer 404 at once.
 *
 * Load: slow clients hold at most one 1 MiB chunk each (backpressure: nothing is read for a
 * socket that has not drained) and are dropped after `stallMs` without progress. Optional token
 * buckets per client address and per subnet (`limits`) cap bandwidth for small branch links. The
 * sending itself (headers, conditionals, ranges, limits, metrics) is content-sender.ts, shared
 * with /tftp.
 */
import { constants, fstatSync, open, close, realpath } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Catalogue } from '../../content/catalogue.ts';
import type { PackageInfo } from '../../content/types.ts';
import type { Logger } from '../log.ts';
import type { Registry } from '../metrics.ts';
import type { ContentLimits } from './content-limit.ts';
import { contentUrl, parseContentTarget } from './content-path.ts';
import { FileSender } from './content-sender.ts';
import type { TurnGate } from './content-turns.ts';

export interface ContentRoutesOptions {
  /** The catalogue, or a getter when the daemon swaps catalogues on reload. */
  catalogue: Catalogue | (() => Catalogue);
  logger: Logger;
  metrics: Registry;
  /**
   * How files go out; share one between /content and /tftp (daemon.ts). Without it the route makes
   * its own from the options below.
   */
  sender?: FileSender;
  /** Bandwidth caps, or a getter read per transfer so a config reload applies. */
  limits?: ContentLimits | (() => ContentLimits | undefined);
  /** Send buffer size; 1 MiB measured best (bench/http.ts). */
  chunkSize?: number;
  /** Recently sent chunks kept for other clients of the same file. Default 16 MiB. */
  cacheBytes?: number;
  /** Disconnect a client that accepts no data for this long. Default 120 s. */
  stallMs?: number;
  /** Event-loop sharing between bodies (content-turns.ts); shared with other body senders of the server. */
  turns?: TurnGate;
}

export async function contentRoutes(app: FastifyInstance, opts: ContentRoutesOptions): Promise<void> {
  const log = opts.logger.child({ component: 'content' });
  const catalogue = typeof opts.catalogue === 'function' ? opts.catalogue : () => opts.catalogue as Catalogue;
  const sender =
    opts.sender ??
    new FileSender({
      logger: opts.logger,
      metrics: opts.metrics,
      ...(opts.limits !== undefined ? { limits: opts.limits } : {}),
      ...(opts.chunkSize !== undefined ? { chunkSize: opts.chunkSize } : {}),
      ...(opts.cacheBytes !== undefined ? { cacheBytes: opts.cacheBytes } : {}),
      ...(opts.stallMs !== undefined ? { stallMs: opts.stallMs } : {}),
      ...(opts.turns !== undefined ? { turns: opts.turns } : {}),
    });

  app.route({
    method: ['GET', 'HEAD'],
    url: '/content/',
    handler: async (req) => {
      sender.count('content', req.method, 200);
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
        sender.count('content', req.method, 200);
        return { ...summary(pkg), ...(cat.isStale(pkg.id) ? { rehashing: true } : {}), files: pkg.files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256, url: contentUrl(pkg.id, f.path) })) };
      }
      const found = cat.lookup(target.packageId, target.path);
      if (!found) return refuse(req, reply, 404, `no file "${target.path}" in content package "${target.packageId}"`);
      await serveFile(req, reply, cat, found.pkg, found.file);
    },
  });

  function refuse(req: FastifyRequest, reply: FastifyReply, status: 400 | 404, reason: string): FastifyReply {
    sender.count('content', req.method, status);
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
    const gone = (): void => {
      void cat.check(pkg.id, `file "${file.path}" is gone`);
      refuse(req, reply, 404, `file "${file.path}" of content package "${pkg.id}" is gone`);
    };
    let fd: number;
    try {
      // O_NOFOLLOW: a symlink put where the file was is never followed.
      fd = await openNoFollow(file.absPath);
    } catch {
      return gone();
    }
    let st;
    try {
      st = fstatSync(fd, { bigint: true });
    } catch {
      close(fd, () => undefined);
      return gone();
    }
    const known =
      st.ino === file.ino && st.dev === file.dev && Number(st.size) === file.size && st.mtimeNs === file.mtimeNs && st.ctimeNs === file.ctimeNs;
    if (!known) {
      // Not the version the scan hashed: make sure the path still leads to itself, inside the root
      // (a directory on the way swapped for a symlink since the scan would change what realpath
      // says), then serve it without a hash while the package is checked again.
      if (!st.isFile() || (await realpathOf(file.absPath)) !== file.absPath) {
        close(fd, () => undefined);
        return gone();
      }
      void cat.check(pkg.id, `file "${file.path}" changed on disk (seen by a request)`);
    }
    await sender.send(req, reply, {
      fd,
      stat: st,
      route: 'content',
      name: file.path,
      package: pkg.id,
      ...(known ? { sha256: file.sha256 } : {}),
      onChanged: () => void cat.check(pkg.id, `file "${file.path}" changed during a transfer`),
    });
  }
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
