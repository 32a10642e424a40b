/**
 * Shared read-ahead for TFTP transfers: files are read in fixed-size chunks into one cache keyed by
 * (file identity, chunk index), so fifty machines pulling the same boot.wim read each chunk from disk
 * once. Memory is bounded: unpinned chunks are evicted beyond a byte budget, and each transfer pins
 * only the few chunks its current window and read-ahead cover.
 */
import fs from 'node:fs';
import type { Stats } from 'node:fs';

export interface BlockCacheOptions {
  /** Bytes per chunk read from disk (default 128 KiB). */
  chunkSize?: number;
  /** Byte budget for unpinned chunks kept for reuse (default 16 MiB). Pinned chunks may exceed it. */
  budgetBytes?: number;
  /** Chunks read ahead of a transfer's window (default 2). */
  readaheadChunks?: number;
}

/**
 * Reads what the page cache holds without blocking (the native addon's preadv2 with RWF_NOWAIT): bytes read, or
 * -errno (-11 EAGAIN: not all in memory; -95 EOPNOTSUPP: this kernel or file system cannot).
 */
export type ReadNow = (fd: number, buf: Buffer, off: number, len: number, pos: number) => number;

/** What a transfer reads from: a file on disk through the cache, or an in-memory buffer. */
export interface BlockReader {
  readonly size: number;
  /** Declares the byte range still needed: pins it (plus read-ahead), starts loading, releases what lies before. */
  want(start: number, end: number): void;
  /** Copies `len` bytes at `offset` into `dst` if loaded; false when not yet in memory. */
  copy(offset: number, len: number, dst: Buffer, dstOffset: number): boolean;
  /** Calls back once after the next chunk load this reader waits on finishes (or fails). */
  onReady(cb: (err: Error | null) => void): void;
  close(): void;
}

interface Chunk {
  file: CachedFile;
  index: number;
  buf: Buffer | null;
  len: number;
  pins: number;
  loaded: boolean;
  error: Error | null;
  waiters: Array<(err: Error | null) => void>;
  /** Position in the LRU of unpinned chunks (insertion-ordered Map), when unpinned and loaded. */
  inLru: boolean;
}

interface CachedFile {
  key: string;
  path: string;
  size: number;
  fd: number | null;
  opening: Array<(err: Error | null) => void> | null;
  refs: number;
  /** Disk reads in flight: the fd stays open until they finish, so a reused fd number is never read. */
  inflight: number;
  chunks: Map<number, Chunk>;
}

export interface CacheStats {
  files: number;
  openFds: number;
  chunks: number;
  bytes: number;
  pinnedChunks: number;
  hits: number;
  misses: number;
  diskReads: number;
  /** Of the reads, those the page cache answered at once, without a trip through the thread pool. */
  inlineReads: number;
}

export class BlockCache {
  readonly chunkSize: number;
  /** Chunks pinned ahead of a reader's window. */
  readonly readahead: number;
  private readonly budget: number;
  private readonly files = new Map<string, CachedFile>();
  private readonly lru = new Map<Chunk, true>();
  private readonly freeBufs: Buffer[] = [];
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private diskReads = 0;
  private inlineReads = 0;
  /**
   * Set when the native addon is loaded: a chunk already in the page cache is read at once, on the event loop
   * (a memory copy, never a wait), instead of through the thread pool, whose round trip costs two thread wakeups
   * per chunk and moves the event loop's thread between cores. What is not in memory is read from a thread as before.
   */
  readNow: ReadNow | null = null;

  constructor(opts: BlockCacheOptions = {}) {
    this.chunkSize = opts.chunkSize ?? 128 * 1024;
    this.budget = opts.budgetBytes ?? 16 * 1024 * 1024;
    this.readahead = opts.readaheadChunks ?? 2;
  }

  /** A reader over one file; the file is identified by inode and mtime so a replaced file is never served stale. */
  open(filePath: string, stat: Stats): BlockReader {
    const key = `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeMs}`;
    let file = this.files.get(key);
    if (!file) {
      file = { key, path: filePath, size: stat.size, fd: null, opening: null, refs: 0, inflight: 0, chunks: new Map() };
      this.files.set(key, file);
    }
    file.refs++;
    return new FileReader(this, file);
  }

  stats(): CacheStats {
    let chunks = 0;
    let pinned = 0;
    let fds = 0;
    for (const f of this.files.values()) {
      chunks += f.chunks.size;
      if (f.fd !== null) fds++;
      for (const c of f.chunks.values()) if (c.pins > 0) pinned++;
    }
    return { files: this.files.size, openFds: fds, chunks, bytes: this.bytes, pinnedChunks: pinned, hits: this.hits, misses: this.misses, diskReads: this.diskReads, inlineReads: this.inlineReads };
  }

  /** Drops every unpinned chunk (used at shutdown and by tests). */
  clear(): void {
    for (const c of [...this.lru.keys()]) this.evict(c);
    this.freeBufs.length = 0;
  }

  // ---- internals used by FileReader ----

  pin(file: CachedFile, index: number): Chunk {
    let c = file.chunks.get(index);
    if (c) {
      this.hits++;
      if (c.inLru) {
        this.lru.delete(c);
        c.inLru = false;
      }
      c.pins++;
      return c;
    }
    this.misses++;
    const start = index * this.chunkSize;
    const len = Math.max(0, Math.min(this.chunkSize, file.size - start));
    c = { file, index, buf: null, len, pins: 1, loaded: false, error: null, waiters: [], inLru: false };
    file.chunks.set(index, c);
    this.load(c);
    return c;
  }

  unpin(c: Chunk): void {
    if (--c.pins > 0) return;
    if (!c.loaded || c.error) {
      // A failed chunk is forgotten so the next reader retries; one still loading is dropped on arrival.
      if (c.error) this.forget(c);
      return;
    }
    c.inLru = true;
    this.lru.set(c, true);
    this.trim();
  }

  release(file: CachedFile): void {
    if (--file.refs > 0) return;
    this.maybeCloseFd(file);
    if (file.chunks.size === 0) this.files.delete(file.key);
  }

  private maybeCloseFd(file: CachedFile): void {
    if (file.refs > 0 || file.inflight > 0 || file.fd === null) return;
    const fd = file.fd;
    file.fd = null;
    fs.close(fd, () => {});
  }

  private trim(): void {
    if (this.bytes <= this.budget) return;
    for (const c of this.lru.keys()) {
      if (this.bytes <= this.budget) break;
      this.evict(c);
    }
  }

  private evict(c: Chunk): void {
    this.lru.delete(c);
    c.inLru = false;
    this.forget(c);
  }

  private forget(c: Chunk): void {
    const f = c.file;
    if (f.chunks.get(c.index) === c) f.chunks.delete(c.index);
    if (c.buf) {
      this.bytes -= c.buf.length;
      // Recycle full-size buffers: nobody can hold a reference to an unpinned chunk's memory.
      if (c.buf.length === this.chunkSize && this.freeBufs.length < 16) this.freeBufs.push(c.buf);
      c.buf = null;
    }
    if (f.refs === 0 && f.chunks.size === 0) this.files.delete(f.key);
  }

  private allocBuf(len: number): Buffer {
    if (len === this.chunkSize) {
      const b = this.freeBufs.pop();
      if (b) return b;
    }
    return Buffer.allocUnsafeSlow(len);
  }

  private withFd(file: CachedFile, cb: (err: Error | null) => void): void {
    if (file.fd !== null) return cb(null);
    if (file.opening) {
      file.opening.push(cb);
      return;
    }
    file.opening = [cb];
    fs.open(file.path, 'r', (err, fd) => {
      const waiters = file.opening ?? [];
      file.opening = null;
      if (err) {
        for (const w of waiters) w(err);
        return;
      }
      if (file.refs === 0) {
        // Every reader left while the file was opening.
        fs.close(fd, () => {});
        for (const w of waiters) w(new Error('file closed'));
        return;
      }
      file.fd = fd;
      for (const w of waiters) w(null);
    });
  }

  private load(c: Chunk): void {
    if (c.len === 0) {
      c.buf = Buffer.alloc(0);
      this.finish(c, null);
      return;
    }
    this.withFd(c.file, (err) => {
      if (err) return this.finish(c, err);
      const fd = c.file.fd;
      if (fd === null) return this.finish(c, new Error('file closed'));
      const buf = this.allocBuf(c.len);
      this.bytes += buf.length;
      c.buf = buf;
      this.diskReads++;
      let done = 0;
      if (this.readNow) {
        const n = this.readNow(fd, buf, 0, c.len, c.index * this.chunkSize);
        if (n === c.len) {
          this.inlineReads++;
          this.finish(c, null);
          return;
        }
        if (n > 0) done = n;
        // EOPNOTSUPP, ENOSYS, EINVAL: this kernel or file system cannot; anything else is the thread's read to report.
        else if (n === -95 || n === -38 || n === -22) this.readNow = null;
      }
      c.file.inflight++;
      this.readFully(fd, buf, c.len, c.index * this.chunkSize, done, (e) => {
        c.file.inflight--;
        this.maybeCloseFd(c.file);
        this.finish(c, e);
      });
    });
  }

  private readFully(fd: number, buf: Buffer, len: number, pos: number, done: number, cb: (err: Error | null) => void): void {
    fs.read(fd, buf, done, len - done, pos + done, (err, n) => {
      if (err) return cb(err);
      if (n === 0) return cb(new Error('file shrank while being served'));
      if (done + n < len) return this.readFully(fd, buf, len, pos, done + n, cb);
      cb(null);
    });
  }

  private finish(c: Chunk, err: Error | null): void {
    c.loaded = true;
    c.error = err;
    const waiters = c.waiters;
    c.waiters = [];
    if (c.pins === 0) {
      // Nobody wants it any more: cache it if good, forget it if not.
      if (err) this.forget(c);
      else {
        c.inLru = true;
        this.lru.set(c, true);
        this.trim();
      }
    }
    for (const w of waiters) w(err);
  }
}

/** One transfer's view of a cached file: the chunks it pins move forward with its window. */
class FileReader implements BlockReader {
  readonly size: number;
  private readonly cache: BlockCache;
  private readonly file: CachedFile;
  private readonly chunkSize: number;
  /** Pinned chunks, contiguous from `first`. */
  private pinned: Chunk[] = [];
  private first = 0;
  private closed = false;
  private pending: ((err: Error | null) => void) | null = null;

  constructor(cache: BlockCache, file: CachedFile) {
    this.cache = cache;
    this.file = file;
    this.size = file.size;
    this.chunkSize = cache.chunkSize;
  }

  want(start: number, end: number): void {
    if (this.closed) return;
    const cs = this.chunkSize;
    const lastChunk = Math.max(0, Math.ceil(this.size / cs) - 1);
    const from = Math.min(Math.floor(start / cs), lastChunk);
    const to = Math.min(Math.floor(Math.max(start, end - 1) / cs) + this.cache.readahead, lastChunk);
    // Release chunks before `from`.
    while (this.pinned.length > 0 && this.first < from) {
      this.cache.unpin(this.pinned.shift()!);
      this.first++;
    }
    if (this.pinned.length === 0) this.first = from;
    // Start can move backwards only by a go-back-N resend inside the pinned range; anything else restarts.
    if (from < this.first) {
      for (const c of this.pinned) this.cache.unpin(c);
      this.pinned = [];
      this.first = from;
    }
    for (let i = this.first + this.pinned.length; i <= to; i++) this.pinned.push(this.cache.pin(this.file, i));
  }


  copy(offset: number, len: number, dst: Buffer, dstOffset: number): boolean {
    const cs = this.chunkSize;
    let done = 0;
    while (done < len) {
      const pos = offset + done;
      const idx = Math.floor(pos / cs);
      const c = this.pinned[idx - this.first];
      if (!c || !c.loaded || c.error || !c.buf) return false;
      const inChunk = pos - idx * cs;
      const n = Math.min(len - done, c.len - inChunk);
      if (n <= 0) return false;
      c.buf.copy(dst, dstOffset + done, inChunk, inChunk + n);
      done += n;
    }
    return true;
  }

  onReady(cb: (err: Error | null) => void): void {
    if (this.closed) return;
    for (const c of this.pinned) {
      if (c.loaded && c.error) {
        queueMicrotask(() => cb(c.error));
        return;
      }
    }
    const waiting = this.pinned.find((c) => !c.loaded);
    if (!waiting) {
      queueMicrotask(() => cb(null));
      return;
    }
    this.pending = cb;
    waiting.waiters.push((err) => {
      if (this.closed || this.pending !== cb) return;
      this.pending = null;
      cb(err);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = null;
    for (const c of this.pinned) this.cache.unpin(c);
    this.pinned = [];
    this.cache.release(this.file);
  }
}

/** A reader over bytes already in memory (virtual files, netascii conversions). */
export class MemoryReader implements BlockReader {
  readonly size: number;
  private readonly data: Buffer;

  constructor(data: Buffer) {
    this.data = data;
    this.size = data.length;
  }

  want(): void {}

  copy(offset: number, len: number, dst: Buffer, dstOffset: number): boolean {
    this.data.copy(dst, dstOffset, offset, offset + len);
    return true;
  }

  onReady(cb: (err: Error | null) => void): void {
    queueMicrotask(() => cb(null));
  }

  close(): void {}
}
