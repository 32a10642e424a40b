/**
 * Maps a TFTP request name onto a file under the TFTP root.
 * Windows asks for `\Boot\BCD` when the file is `boot/bcd`, firmware asks for `/ipxe.efi`: separators
 * are normalised, leading ones stripped, and each segment is matched case-insensitively. Whatever the
 * name, the result lies inside the root: `..`, drive letters, NUL and symlinks that leave the root are
 * refused.
 */
import { promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';

export type PathRefusal = 'nul' | 'dotdot' | 'drive' | 'empty' | 'too_long';

/** Result of normalising a request name: the relative segments, or why the name is refused outright. */
export type NormalizedName = { ok: true; segments: string[]; name: string } | { ok: false; reason: PathRefusal };

const MAX_NAME = 1024;

/** Pure: `\` → `/`, leading separators and `.` segments dropped, `..`/drive letters/NUL refused. */
export function normalizeName(raw: string): NormalizedName {
  if (raw.includes('\0')) return { ok: false, reason: 'nul' };
  if (raw.length > MAX_NAME) return { ok: false, reason: 'too_long' };
  const slashed = raw.replace(/\\/g, '/');
  // "C:/x", "c:x": a Windows drive path never names something under our root.
  if (/^[a-zA-Z]:/.test(slashed)) return { ok: false, reason: 'drive' };
  const segments: string[] = [];
  for (const seg of slashed.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') return { ok: false, reason: 'dotdot' };
    segments.push(seg);
  }
  if (segments.length === 0) return { ok: false, reason: 'empty' };
  return { ok: true, segments, name: segments.join('/') };
}

export type Resolved =
  | { ok: true; path: string; stat: Stats }
  | { ok: false; code: 'not_found' | 'denied'; reason: string };

/**
 * Resolves request names under one root. Directory listings are cached briefly so a hundred machines
 * asking for `\Boot\BCD` at once cost one readdir per directory, not a hundred.
 */
export class PathResolver {
  private readonly root: string;
  private realRoot: string | undefined;
  private readonly listings = new Map<string, { at: number; names: Promise<string[]> }>();
  private readonly listingTtlMs: number;

  constructor(root: string, opts: { listingTtlMs?: number } = {}) {
    this.root = path.resolve(root);
    this.listingTtlMs = opts.listingTtlMs ?? 2000;
  }

  async resolve(segments: readonly string[]): Promise<Resolved> {
    const realRoot = await this.rootReal();
    // Fast path: the exact spelling exists.
    let candidate: string | null = path.join(realRoot, ...segments);
    let real = await realpathOrNull(candidate);
    if (real === null) {
      candidate = await this.walkCaseInsensitive(realRoot, segments);
      if (candidate === null) return { ok: false, code: 'not_found', reason: 'no such file' };
      real = await realpathOrNull(candidate);
      if (real === null) return { ok: false, code: 'not_found', reason: 'dangling link' };
    }
    if (!isInside(realRoot, real)) return { ok: false, code: 'denied', reason: 'outside root' };
    let stat: Stats;
    try {
      stat = await fsp.stat(real);
    } catch {
      return { ok: false, code: 'not_found', reason: 'vanished' };
    }
    if (!stat.isFile()) return { ok: false, code: stat.isDirectory() ? 'denied' : 'not_found', reason: 'not a regular file' };
    return { ok: true, path: real, stat };
  }

  private async rootReal(): Promise<string> {
    if (this.realRoot === undefined) this.realRoot = await fsp.realpath(this.root);
    return this.realRoot;
  }

  /**
   * Finds the file whatever the case of each segment. When a folder holds names that differ only
   * by case (`Boot/BCD` beside `boot/x64/bootmgfw.efi`, as Windows media copied to Linux often
   * has), every spelling is tried, exact first, so a file inside either one is found.
   */
  private async walkCaseInsensitive(dir: string, segments: readonly string[], depth = 0): Promise<string | null> {
    if (depth === segments.length) return dir;
    const names = await this.list(dir);
    if (names === null) return null;
    const seg = segments[depth]!;
    const lower = seg.toLowerCase();
    // Sorted listing: among names that differ only by case, the order (and so the choice) is stable.
    const candidates = [...(names.includes(seg) ? [seg] : []), ...names.filter((n) => n !== seg && n.toLowerCase() === lower)];
    const last = depth + 1 === segments.length;
    for (const name of candidates) {
      const p = path.join(dir, name);
      if (last) {
        if (await isFile(p)) return p;
        continue;
      }
      const found = await this.walkCaseInsensitive(p, segments, depth + 1);
      if (found !== null) return found;
    }
    // No regular file: name the first match anyway, so the caller can say what it is (a folder).
    return last && candidates.length ? path.join(dir, candidates[0]!) : null;
  }

  private async list(dir: string): Promise<string[] | null> {
    const now = Date.now();
    let entry = this.listings.get(dir);
    if (!entry || now - entry.at > this.listingTtlMs) {
      entry = { at: now, names: fsp.readdir(dir).then((n) => n.sort()) };
      this.listings.set(dir, entry);
      // Keep the cache small; it only needs to cover a boot storm's few directories.
      if (this.listings.size > 256) {
        for (const [k, v] of this.listings) if (now - v.at > this.listingTtlMs) this.listings.delete(k);
        if (this.listings.size > 256) this.listings.clear();
        this.listings.set(dir, entry);
      }
    }
    try {
      return await entry.names;
    } catch {
      this.listings.delete(dir);
      return null;
    }
  }
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await fsp.stat(p)).isFile();
  } catch {
    return false;
  }
}

function isInside(root: string, p: string): boolean {
  if (p === root) return false;
  const prefix = root.endsWith(path.sep) ? root : root + path.sep;
  return p.startsWith(prefix);
}

async function realpathOrNull(p: string): Promise<string | null> {
  try {
    return await fsp.realpath(p);
  } catch {
    return null;
  }
}
