/**
 * Shared read cache for the send path. A deployment is many machines fetching the same WIM at the
 * same time; reading each 1 MiB chunk once from the page cache and writing that one buffer to every
 * socket that wants it saves a copy per client (Node has no sendfile, so each byte already costs
 * a read copy and a write copy; nginx's sendfile costs neither on the send side).
 *
 * Chunks are keyed by the file version (dev, inode, size, mtime as fstat saw them when the
 * transfer opened the file) and the aligned chunk index, and reference-counted: a chunk is held
 * while a transfer writes it, then kept in an LRU window of `maxIdleBytes` for clients a little
 * behind. Concurrent requests for a chunk share one read. Memory is bounded by the window plus the
 * chunks transfers hold (at most two each: one being written, one read ahead).
 */
import { read } from 'node:fs';

export interface Chunk {
  buf: Buffer;
  /** Valid bytes (the last chunk of a file is short). */
  n: number;
}

interface Entry {
  chunk?: Chunk;
  loading?: Promise<Chunk | Error>;
  refs: number;
}

export class ChunkCache {
  readonly chunkSize: number;
  private readonly maxIdle: number;
  /** Map order is LRU order: touched entries are re-inserted at the end. */
  private readonly entries = new Map<string, Entry>();
  private readonly free: Buffer[] = [];
  private idle = 0;
  private total = 0;
  private readonly onRead: (bytes: number) => void;

  /** `onRead` is told about every read actually issued (misses), for the metrics. */
  constructor(chunkSize = 1 << 20, maxIdleBytes = 16 << 20, onRead: (bytes: number) => void = () => undefined) {
    this.chunkSize = chunkSize;
    this.maxIdle = Math.floor(maxIdleBytes / chunkSize);
    this.onRead = onRead;
  }

  /**
   * Chunk `index` of the file version `fileKey` (open as `fd`, `size` bytes); the caller must
   * `release` it once written. Resolves to an Error on a read failure or a short read (the file
   * shrank under us), which is never cached.
   */
  acquire(fileKey: string, fd: number, size: number, index: number): Promise<Chunk | Error> {
    const key = `${fileKey}#${index}`;
    let e = this.entries.get(key);
    if (e) {
      this.entries.delete(key);
      this.entries.set(key, e);
      if (e.refs++ === 0 && e.chunk) this.idle--;
      if (e.chunk) return Promise.resolve(e.chunk);
      return e.loading!;
    }
    const entry: Entry = { refs: 1 };
    e = entry;
    this.entries.set(key, entry);
    const want = Math.min(this.chunkSize, size - index * this.chunkSize);
    const buf = this.free.pop() ?? Buffer.allocUnsafeSlow(this.chunkSize);
    this.total++;
    this.onRead(want);
    entry.loading = new Promise((resolve) => {
      read(fd, buf, 0, want, index * this.chunkSize, (err, n) => {
        entry.loading = undefined;
        if (err || n !== want) {
          this.entries.delete(key);
          this.recycle(buf);
          resolve(err ?? new Error(`short read at chunk ${index}: ${n} of ${want} bytes`));
          return;
        }
        entry.chunk = { buf, n };
        if (entry.refs === 0) this.becameIdle();
        resolve(entry.chunk);
      });
    });
    return entry.loading;
  }

  release(fileKey: string, index: number): void {
    const key = `${fileKey}#${index}`;
    const e = this.entries.get(key);
    if (!e) return;
    if (--e.refs === 0 && e.chunk) this.becameIdle();
  }

  /** Chunks some transfer is writing now. */
  busyChunks(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.refs > 0) n++;
    return n;
  }

  /** Bytes in buffers now: cached, in use, and spare. */
  heldBytes(): number {
    return (this.total + this.free.length) * this.chunkSize;
  }

  private becameIdle(): void {
    this.idle++;
    if (this.idle <= this.maxIdle) return;
    for (const [k, e] of this.entries) {
      if (this.idle <= this.maxIdle) break;
      if (e.refs === 0 && e.chunk) {
        this.entries.delete(k);
        this.idle--;
        this.recycle(e.chunk.buf);
      }
    }
  }

  private recycle(buf: Buffer): void {
    this.total--;
    if (this.free.length < 4) this.free.push(buf);
  }
}
