import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';

/**
 * The identity of a file's version on disk: what the hash cache, the catalogue and the HTTP side
 * compare. ctime is part of it because size and mtime are not enough: `rsync --inplace`, `cp -p`
 * or `touch -r` rewrite a file and put its old mtime back, and only ctime (which no one can set
 * back) moves. The price: a chmod or a new hard link also re-hashes the file once.
 */
export interface FileStamp {
  size: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
  dev: bigint;
}

export function stampOf(st: BigIntStats): FileStamp {
  return { size: Number(st.size), mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, dev: st.dev };
}

export function sameStamp(a: FileStamp, b: FileStamp): boolean {
  return a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.ino === b.ino && a.dev === b.dev;
}

/** A key naming one version of one file (chunk cache, logs). */
export function stampKey(s: FileStamp): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
}

export interface HashOptions {
  /** Called after every chunk with bytes hashed so far and the file size. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface HashResult {
  sha256: string;
  /** Stamp of the file as it was while hashed (checked before and after). */
  stamp: FileStamp;
}

const CHUNK = 4 << 20;
const TRIES = 3;

/**
 * Streaming SHA-256 of one file. Reads the next chunk while hashing the current one. A file that
 * changes while it is hashed (size, mtime, ctime or inode moves) is hashed again, up to three times, so a
 * hash is never recorded against a stamp it does not belong to.
 */
export async function hashFile(path: string, opts: HashOptions = {}): Promise<HashResult> {
  for (let attempt = 1; ; attempt++) {
    const fh = await open(path, 'r');
    try {
      const before = stampOf(await fh.stat({ bigint: true }));
      const sha256 = await hashHandle(fh, before.size, opts);
      const after = stampOf(await fh.stat({ bigint: true }));
      if (sameStamp(before, after)) return { sha256, stamp: before };
      if (attempt >= TRIES) throw new Error(`${path} keeps changing while it is hashed`);
    } finally {
      await fh.close();
    }
  }
}

async function hashHandle(fh: FileHandle, size: number, opts: HashOptions): Promise<string> {
  const h = createHash('sha256');
  const bufs = [Buffer.allocUnsafeSlow(CHUNK), Buffer.allocUnsafeSlow(CHUNK)];
  let pos = 0;
  let turn = 0;
  let pending = size > 0 ? fh.read(bufs[0]!, 0, Math.min(CHUNK, size), 0) : null;
  opts.onProgress?.(0, size);
  while (pending) {
    const { bytesRead, buffer } = await pending;
    opts.signal?.throwIfAborted();
    if (bytesRead === 0) break; // truncated under us; the stamp check after hashing catches it
    pos += bytesRead;
    turn ^= 1;
    pending = pos < size ? fh.read(bufs[turn]!, 0, Math.min(CHUNK, size - pos), pos) : null;
    h.update(buffer.subarray(0, bytesRead));
    opts.onProgress?.(pos, size);
  }
  if (pending) await pending.catch(() => undefined);
  return h.digest('hex');
}

/** SHA-256 of a string or buffer, hex. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
