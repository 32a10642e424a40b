/**
 * Turns the raw request target after `/content/` into (package id, path inside the package).
 * The result is only ever a key into the catalogue, never joined onto a directory, so a path that
 * slips through can at worst name a catalogued file; still, anything that looks like an escape is
 * refused here with 400 so it shows in logs and metrics as what it is.
 */
import { PACKAGE_ID } from '../../content/package.ts';

export type ContentTarget =
  | { ok: true; packageId: string; path: string }
  | { ok: false; status: 400 | 404; reason: string };

/** `rest` is the raw (still percent-encoded) target after the `/content/` prefix, query included. */
export function parseContentTarget(rest: string): ContentTarget {
  const q = rest.search(/[?#]/);
  const raw = q >= 0 ? rest.slice(0, q) : rest;
  const slash = raw.indexOf('/');
  const rawId = slash >= 0 ? raw.slice(0, slash) : raw;
  const rawPath = slash >= 0 ? raw.slice(slash + 1) : '';
  const id = decode(rawId);
  if (id === undefined || !PACKAGE_ID.test(id)) return { ok: false, status: 404, reason: 'no such package' };
  if (rawPath === '') return { ok: true, packageId: id, path: '' };
  const segs: string[] = [];
  for (const rawSeg of rawPath.split('/')) {
    const seg = decode(rawSeg);
    if (seg === undefined) return { ok: false, status: 400, reason: 'bad percent-encoding' };
    if (seg === '') return { ok: false, status: 400, reason: 'empty path segment' };
    if (seg === '.' || seg === '..') return { ok: false, status: 400, reason: 'dot segment' };
    // An encoded slash would let one segment carry a path; backslash is a separator on Windows.
    if (/[/\\\0-\x1f\x7f]/.test(seg)) return { ok: false, status: 400, reason: 'separator or control character in path' };
    segs.push(seg);
  }
  return { ok: true, packageId: id, path: segs.join('/') };
}

function decode(s: string): string | undefined {
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/** The URL path of a package file (`path` '' gives the package's index), each segment encoded. */
export function contentUrl(packageId: string, path: string): string {
  return `/content/${encodeURIComponent(packageId)}/${path.split('/').map(encodeURIComponent).join('/')}`;
}
