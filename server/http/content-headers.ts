/**
 * Pure HTTP header logic for content responses (RFC 9110 ranges and conditionals, RFC 9530
 * Repr-Digest), kept apart from sockets so every rule is a unit test.
 */

export type RangeResult =
  | { kind: 'none' }
  | { kind: 'range'; start: number; end: number }
  | { kind: 'unsatisfiable' };

/**
 * Evaluates a Range header against a representation of `size` bytes. Syntax we do not understand
 * (another unit, garbage) is ignored, as RFC 9110 §14.2 allows, and the whole file is sent.
 * Several ranges are merged when they overlap or touch; if they still form more than one range
 * the whole file is sent instead of multipart/byteranges, which no boot or download client uses.
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: 'none' };
  const m = /^\s*bytes\s*=\s*(.+)$/i.exec(header);
  if (!m) return { kind: 'none' };
  const specs = m[1]!.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (specs.length === 0 || specs.length > 100) return { kind: 'none' };
  const ranges: Array<[number, number]> = [];
  let satisfiable = false;
  for (const spec of specs) {
    const r = /^(\d*)\s*-\s*(\d*)$/.exec(spec);
    if (!r || (r[1] === '' && r[2] === '')) return { kind: 'none' };
    if (r[1] === '') {
      const suffix = Number(r[2]);
      if (!Number.isSafeInteger(suffix)) return { kind: 'none' };
      if (suffix === 0 || size === 0) continue;
      ranges.push([Math.max(0, size - suffix), size - 1]);
    } else {
      const first = Number(r[1]);
      const last = r[2] === '' ? Infinity : Number(r[2]);
      if (!Number.isSafeInteger(first) || (last !== Infinity && !Number.isSafeInteger(last))) return { kind: 'none' };
      if (last < first) return { kind: 'none' };
      if (first >= size) continue;
      ranges.push([first, Math.min(last, size - 1)]);
    }
    satisfiable = true;
  }
  if (!satisfiable) return { kind: 'unsatisfiable' };
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  if (merged.length !== 1) return { kind: 'none' };
  const [start, end] = merged[0]!;
  return { kind: 'range', start, end };
}

/** Strong ETag for a known SHA-256: the content's identity, stable across renames and rescans. */
export function etagForHash(sha256: string): string {
  return `"sha256-${sha256}"`;
}

/**
 * Strong ETag for a file whose hash is not known (it changed since the scan, or it is a boot file
 * under /tftp, which is not hashed): its stamp. ctime is in it because an in-place rewrite can keep
 * size, mtime and inode. Different from every hash ETag, so a client holding the old one never gets
 * a 304 or a range spliced onto the old bytes.
 */
export function etagForStamp(size: number, mtimeNs: bigint, ino: bigint, ctimeNs: bigint): string {
  return `"m-${size.toString(16)}-${mtimeNs.toString(16)}-${ino.toString(16)}-${ctimeNs.toString(16)}"`;
}

/** Splits an If-None-Match / If-Match list into entity-tags (keeps W/ prefixes), or ['*']. */
export function parseEtagList(header: string): string[] {
  if (header.trim() === '*') return ['*'];
  return header.match(/(?:W\/)?"[^"]*"/g) ?? [];
}

/** If-None-Match uses the weak comparison: W/"x" matches "x". */
export function noneMatch(header: string, etag: string): boolean {
  const tags = parseEtagList(header);
  const opaque = (t: string): string => (t.startsWith('W/') ? t.slice(2) : t);
  return tags.some((t) => t === '*' || opaque(t) === opaque(etag));
}

/**
 * If-Range: the range is honoured only when the validator still identifies this representation,
 * compared strongly (a weak tag never matches); a date must equal Last-Modified exactly.
 */
export function ifRangeMatches(header: string, etag: string, lastModified: string): boolean {
  const h = header.trim();
  if (h.startsWith('"')) return h === etag;
  if (h.startsWith('W/')) return false;
  const d = Date.parse(h);
  return !Number.isNaN(d) && d === Date.parse(lastModified);
}

/** If-Modified-Since: true when the file is not newer than the date (second precision). */
export function notModifiedSince(header: string, mtimeMs: number): boolean {
  const d = Date.parse(header);
  return !Number.isNaN(d) && Math.floor(mtimeMs / 1000) * 1000 <= d;
}

/** RFC 9530 `Repr-Digest` value for a hex SHA-256. */
export function reprDigest(sha256Hex: string): string {
  return `sha-256=:${Buffer.from(sha256Hex, 'hex').toString('base64')}:`;
}

export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

const TYPES: Record<string, string> = {
  '.txt': 'text/plain; charset=utf-8',
  '.ipxe': 'text/plain; charset=utf-8',
  '.cfg': 'text/plain; charset=utf-8',
  '.inf': 'text/plain',
  '.xml': 'application/xml',
  '.json': 'application/json',
  '.zip': 'application/zip',
  '.cab': 'application/vnd.ms-cab-compressed',
  '.iso': 'application/x-iso9660-image',
  '.torrent': 'application/x-bittorrent',
};

/** Content-Type by extension; everything else (WIMs, kernels, EFI binaries) is octet-stream. */
export function contentType(path: string): string {
  const dot = path.lastIndexOf('.');
  const ext = dot > path.lastIndexOf('/') ? path.slice(dot).toLowerCase() : '';
  return TYPES[ext] ?? 'application/octet-stream';
}
