/**
 * How a file goes out over HTTP, for every route that sends files (/content and /tftp): validators
 * (a strong ETag, Last-Modified), If-None-Match / If-Modified-Since (304), one Range (206, 416),
 * If-Range, the SHA-256 when the file is the version that was hashed (`Repr-Digest`,
 * `X-Content-SHA256`), bandwidth limits, the shared chunk cache and event-loop gate, metrics and one
 * log line per transfer. The routes decide *which* file (and refuse what they must); this decides
 * *how* it is sent, so every file body the daemon sends behaves the same.
 *
 * One sender is shared by the routes of a server: the chunk cache, the per-client and per-subnet
 * buckets (a branch's link is one budget, whatever URL its machines fetch) and the turn gate are
 * per server, not per route. Limits may be given as a getter, read for each transfer, so a config
 * reload changes them for the next transfer.
 */
import { close, type BigIntStats } from 'node:fs';
import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { stampKey, stampOf } from '../../content/hash.ts';
import type { Logger } from '../log.ts';
import type { Counter, Gauge, Labels, Registry } from '../metrics.ts';
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
import { ChunkCache } from './content-chunks.ts';
import { BandwidthLimiter, type ContentLimits } from './content-limit.ts';
import { sendRange, stampCheck, type SendOutcome } from './content-send.ts';
import { TurnGate } from './content-turns.ts';

export interface FileSenderOptions {
  logger: Logger;
  metrics: Registry;
  /** Bandwidth caps, or a getter read per transfer (config reloads apply to the next one). */
  limits?: ContentLimits | (() => ContentLimits | undefined);
  /** Send buffer size; 1 MiB measured best (bench/http.ts). */
  chunkSize?: number;
  /** Recently sent chunks kept for other clients of the same file. Default 16 MiB. */
  cacheBytes?: number;
  /** Disconnect a client that accepts no data for this long. Default 120 s. */
  stallMs?: number;
  /** Event-loop sharing between bodies (content-turns.ts). */
  turns?: TurnGate;
}

/** The route a file is sent for: a metrics label and the log's wording. */
export type FileRoute = 'content' | 'tftp';

export interface OutgoingFile {
  /** Open file; `send` closes it, whatever happens. */
  fd: number;
  /** fstat of `fd`, taken when it was opened. */
  stat: BigIntStats;
  route: FileRoute;
  /** Path for Content-Type and logs (inside the package, or the TFTP name). */
  name: string;
  /** Package id, for /content (metrics and logs). */
  package?: string;
  /**
   * The SHA-256 of exactly this version (the catalogue hashed this inode with this stamp).
   * Without it the ETag is made from the stamp and no digest is sent.
   */
  sha256?: string;
  /** Called when the file changed during the transfer (the connection was cut short). */
  onChanged?: () => void;
}

/** Transfers at least this large are logged at info when they end; smaller ones at debug. */
const LOG_INFO_BYTES = 64 << 20;

export class FileSender {
  private readonly log: Logger;
  private readonly limitsOf: () => ContentLimits | undefined;
  private limiter: BandwidthLimiter;
  private limitsKey: string;
  private readonly cache: ChunkCache;
  private readonly turns: TurnGate;
  private readonly stallMs: number | undefined;
  private readonly requests: Counter;
  private readonly bytesSent: Counter;
  private readonly outcomes: Counter;
  private readonly active: Gauge;

  constructor(o: FileSenderOptions) {
    this.log = o.logger.child({ component: 'content' });
    const limits = o.limits;
    this.limitsOf = typeof limits === 'function' ? limits : () => limits;
    const first = this.limitsOf();
    this.limiter = new BandwidthLimiter(first);
    this.limitsKey = JSON.stringify(first ?? {});
    this.turns = o.turns ?? new TurnGate(4);
    this.stallMs = o.stallMs;
    const m = o.metrics;
    const readBytes = m.counter('swarmboot_content_read_bytes_total', 'Bytes read from disk or page cache for file bodies (less than sent when clients share chunks)');
    this.cache = new ChunkCache(o.chunkSize ?? 1 << 20, o.cacheBytes ?? 16 << 20, (n) => readBytes.inc({}, n));
    this.requests = m.counter('swarmboot_content_requests_total', 'File requests (/content and /tftp) by route, method and status');
    this.bytesSent = m.counter('swarmboot_content_bytes_sent_total', 'File body bytes written to clients, by route and package');
    this.outcomes = m.counter('swarmboot_content_transfers_total', 'File bodies by route and outcome (complete, client-gone, changed, stalled, read-error)');
    this.active = m.gauge('swarmboot_content_transfers_active', 'File bodies being sent now');
    const cache = this.cache;
    m.gauge('swarmboot_content_buffer_bytes', 'Bytes in file send buffers: all held (cache and spare) and busy (being written)').collect(() => [
      { labels: { state: 'held' }, value: cache.heldBytes() },
      { labels: { state: 'busy' }, value: cache.busyChunks() * cache.chunkSize },
    ]);
    this.active.set({}, 0);
  }

  /** Counts a request a route answered itself (a refusal, a listing). */
  count(route: FileRoute, method: string, status: number): void {
    this.requests.inc({ route, method, status });
  }

  /** Answers GET or HEAD for the open file and closes it. */
  async send(req: FastifyRequest, reply: FastifyReply, f: OutgoingFile): Promise<void> {
    let fdOpen = true;
    const closeFd = (): void => {
      if (fdOpen) close(f.fd, () => undefined);
      fdOpen = false;
    };
    try {
      const st = f.stat;
      const size = Number(st.size);
      const etag = f.sha256 ? etagForHash(f.sha256) : etagForStamp(size, st.mtimeNs, st.ino, st.ctimeNs);
      const mtimeMs = Number(st.mtimeNs / 1_000_000n);
      const lastModified = httpDate(mtimeMs);
      const headers: OutgoingHttpHeaders = {
        'accept-ranges': 'bytes',
        etag,
        'last-modified': lastModified,
        'content-type': contentType(f.name),
        // Revalidate every time: the ETag makes that a cheap 304, and a changed file is never
        // served from a cache.
        'cache-control': 'no-cache',
      };
      if (f.sha256) {
        headers['repr-digest'] = reprDigest(f.sha256);
        headers['x-content-sha256'] = f.sha256;
      }

      const inm = header(req, 'if-none-match');
      const ims = header(req, 'if-modified-since');
      if (inm !== undefined ? noneMatch(inm, etag) : ims !== undefined && notModifiedSince(ims, mtimeMs)) {
        return this.finishEmpty(req, reply, f.route, 304, headers, closeFd);
      }

      let status = 200;
      let start = 0;
      let end = size - 1;
      const ifRange = header(req, 'if-range');
      const range = ifRange === undefined || ifRangeMatches(ifRange, etag, lastModified) ? parseRange(header(req, 'range'), size) : { kind: 'none' as const };
      if (range.kind === 'unsatisfiable') {
        headers['content-range'] = `bytes */${size}`;
        headers['content-length'] = 0;
        return this.finishEmpty(req, reply, f.route, 416, headers, closeFd);
      }
      if (range.kind === 'range') {
        status = 206;
        start = range.start;
        end = range.end;
        headers['content-range'] = `bytes ${start}-${end}/${size}`;
      }
      headers['content-length'] = end - start + 1;
      if (req.method === 'HEAD') return this.finishEmpty(req, reply, f.route, status, headers, closeFd);

      this.count(f.route, req.method, status);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(status, headers);
      const started = performance.now();
      const { buckets, rate } = this.currentLimiter().bucketsFor(req.socket.remoteAddress ?? '');
      const labels: Labels = f.route === 'content' ? { route: f.route, package: f.package ?? '' } : { route: f.route };
      this.active.inc();
      let sent = 0;
      let outcome: SendOutcome;
      try {
        outcome = await sendRange({
          res,
          fd: f.fd,
          // The version open as fd: a rewrite in place with the old size and mtime put back moves
          // ctime, so it never shares chunks with the version it replaced.
          fileKey: stampKey(stampOf(st)),
          size,
          start,
          end,
          cache: this.cache,
          unchanged: stampCheck(f.fd, st.size, st.mtimeNs, st.ctimeNs),
          buckets,
          rate,
          ...(this.stallMs !== undefined ? { stallMs: this.stallMs } : {}),
          turns: this.turns,
          onBytes: (n) => {
            sent += n;
            this.bytesSent.inc(labels, n);
          },
        });
      } finally {
        this.active.dec();
        closeFd();
      }
      this.outcomes.inc({ route: f.route, outcome });
      const entry = {
        route: f.route,
        ...(f.package !== undefined ? { package: f.package } : {}),
        path: f.name,
        status,
        range: status === 206 ? `${start}-${end}` : undefined,
        bytes: sent,
        ms: Math.round(performance.now() - started),
        client: req.socket.remoteAddress,
        outcome,
      };
      if (outcome === 'changed') {
        this.log.warn(entry, 'file changed during transfer; connection closed so the client sees a short body, not a mix');
        f.onChanged?.();
      } else if (outcome === 'read-error') this.log.error(entry, 'file read failed');
      else this.log[sent >= LOG_INFO_BYTES ? 'info' : 'debug'](entry, 'file transfer ended');
    } catch (e) {
      closeFd();
      throw e;
    }
  }

  /** The limiter for the limits in force now; rebuilt (buckets start full) when they change. */
  private currentLimiter(): BandwidthLimiter {
    const limits = this.limitsOf();
    const key = JSON.stringify(limits ?? {});
    if (key !== this.limitsKey) {
      try {
        this.limiter = new BandwidthLimiter(limits);
        this.log.info({ limits: limits ?? {} }, 'HTTP bandwidth limits changed; they apply to transfers that start from now');
      } catch (err) {
        this.log.error({ err, limits }, 'HTTP bandwidth limits refused; the previous ones stay');
      }
      this.limitsKey = key;
    }
    return this.limiter;
  }

  private finishEmpty(req: FastifyRequest, reply: FastifyReply, route: FileRoute, status: number, headers: OutgoingHttpHeaders, closeFd: () => void): void {
    closeFd();
    this.count(route, req.method, status);
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
