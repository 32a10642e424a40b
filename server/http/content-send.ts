/**
 * The send path for file bodies. Node has no sendfile, so this is the closest thing: positional
 * reads (libuv thread pool) of 1 MiB chunks through a shared chunk cache (`content-chunks.ts`:
 * clients fetching the same file at the same time share reads), written to the response with one
 * chunk of read-ahead while the kernel drains the previous one, and none once the socket pushes
 * back. Measured in bench/http.ts against nginx with sendfile; fs.createReadStream at its 64 KiB
 * default and @fastify/static reach about a third of nginx there.
 *
 * Memory per transfer is bounded by two chunks while the client keeps up and one chunk when it
 * does not: a stalled client holds one buffer (and the kernel's socket buffer), never a growing
 * queue, and is cut off after `stallMs` without progress.
 */
import { fstatSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import type { Chunk, ChunkCache } from './content-chunks.ts';
import type { TokenBucket } from './content-limit.ts';
import type { TurnGate } from './content-turns.ts';

export interface SendOptions {
  res: ServerResponse;
  fd: number;
  /** Identity of the file version open as `fd` (cache key), and its size. */
  fileKey: string;
  size: number;
  /** Inclusive byte range to send; `end < start` sends nothing. */
  start: number;
  end: number;
  cache: ChunkCache;
  /** Called after each chunk is read and before its bytes go out; false means the file changed: abort. */
  unchanged: () => boolean;
  buckets?: readonly TokenBucket[];
  /** Slowest bucket rate; writes shrink so one write is about 1/8 s at that rate. */
  rate?: number;
  onBytes?: (n: number) => void;
  /** A client that accepts nothing for this long is disconnected. Default 120 s. */
  stallMs?: number;
  /** Shared by all transfers of a server: how many may write a chunk per event-loop turn. */
  turns?: TurnGate;
}

export type SendOutcome = 'complete' | 'client-gone' | 'changed' | 'read-error' | 'stalled';

/** Streams `[start, end]` of the file into `res` (headers already written) and ends it. Never throws. */
export function sendRange(o: SendOptions): Promise<SendOutcome> {
  const { res, cache } = o;
  const C = cache.chunkSize;
  const stallMs = o.stallMs ?? 120_000;
  const piece = o.rate && Number.isFinite(o.rate) ? Math.max(16 << 10, Math.floor(o.rate / 8)) : Infinity;
  let closed = false;
  let wake: (() => void) | undefined;
  const onClose = (): void => {
    closed = true;
    wake?.();
  };
  res.once('close', onClose);

  const acquire = (i: number): Promise<Chunk | Error> => cache.acquire(o.fileKey, o.fd, o.size, i);
  const release = (i: number): void => cache.release(o.fileKey, i);

  /** Resolves on 'drain' or close (false), or after `ms` (true: timed out). */
  const waitFor = (event: 'drain' | null, ms: number): Promise<boolean> =>
    new Promise((resolve) => {
      let done = false;
      const finish = (timedOut: boolean): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (event) res.off(event, onEvent);
        wake = undefined;
        resolve(timedOut);
      };
      const onEvent = (): void => finish(false);
      const timer = setTimeout(() => finish(true), ms);
      if (event) res.on(event, onEvent);
      wake = () => finish(false);
    });

  /** Writes `data`; resolves false when the socket asked us to wait (or closed). */
  const write = (data: Buffer, cb: () => void): boolean => {
    const ok = res.write(data, cb);
    o.onBytes?.(data.length);
    return ok;
  };

  const run = async (): Promise<SendOutcome> => {
    if (o.end < o.start) {
      res.end();
      return 'complete';
    }
    const first = Math.floor(o.start / C);
    const last = Math.floor(o.end / C);
    let next: Promise<Chunk | Error> | undefined = acquire(first);
    for (let i = first; i <= last; i++) {
      const got = await next!;
      next = undefined;
      if (got instanceof Error) {
        // A short read means the file shrank: a change, not a disk error.
        const changed = /^short read/.test(got.message);
        res.destroy(changed ? undefined : got);
        return changed ? 'changed' : 'read-error';
      }
      if (closed) {
        release(i);
        return 'client-gone';
      }
      // Checked after the read: every byte sent was read before any change we could see.
      if (!o.unchanged()) {
        release(i);
        res.destroy();
        return 'changed';
      }
      const from = i === first ? o.start - i * C : 0;
      const to = i === last ? o.end + 1 - i * C : got.n;
      let ok = true;
      if (piece === Infinity && !o.buckets?.length) {
        ok = write(from === 0 && to === got.buf.length ? got.buf : got.buf.subarray(from, to), () => release(i));
      } else {
        // Rate-limited: the chunk goes out in paced pieces; it is released after the last one.
        for (let a = from; a < to; a += piece) {
          const b = Math.min(to, a + piece);
          const wait = Math.max(0, ...(o.buckets ?? []).map((k) => k.take(b - a)));
          if (wait > 0) await waitFor(null, wait);
          if (closed) {
            release(i);
            return 'client-gone';
          }
          ok = write(got.buf.subarray(a, b), b === to ? () => release(i) : noop);
          if (!ok && b < to) {
            const timedOut = await waitFor('drain', stallMs);
            if (closed) return 'client-gone';
            if (timedOut) {
              res.destroy();
              return 'stalled';
            }
          }
        }
      }
      if (i === last) break;
      if (!ok) {
        const timedOut = await waitFor('drain', stallMs);
        if (closed) return 'client-gone';
        if (timedOut) {
          res.destroy();
          return 'stalled';
        }
      }
      next = acquire(i + 1);
      // A cached chunk resolves at once, so without this a transfer whose socket keeps accepting
      // would loop through megabytes inside one event-loop turn while other requests wait; the
      // shared gate also keeps many transfers together from filling one turn (see content-turns.ts).
      await (o.turns ? o.turns.wait() : yieldToLoop());
    }
    if (closed) return 'client-gone';
    res.end();
    return 'complete';
  };

  return run()
    .catch((): SendOutcome => {
      res.destroy();
      return 'read-error';
    })
    .finally(() => res.off('close', onClose));
}

function noop(): void {}

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A check for `unchanged`: the fd still holds the bytes it held when opened. Size or mtime moving
 * means a write or truncate. ctime moving alone means metadata changed: harmless when the file was
 * unlinked or renamed over (nlink 0: we keep serving the old inode), but with links left it is
 * also what `rsync --inplace` or `cp -p` leave after rewriting the file and putting the old mtime
 * back, so that aborts too (a chmod during a transfer costs the client a resume, never a mix).
 */
export function stampCheck(fd: number, size: bigint, mtimeNs: bigint, ctimeNs: bigint): () => boolean {
  return () => {
    try {
      const st = fstatSync(fd, { bigint: true });
      if (st.size !== size || st.mtimeNs !== mtimeNs) return false;
      return st.ctimeNs === ctimeNs || st.nlink === 0n;
    } catch {
      return false;
    }
  };
}
