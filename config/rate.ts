/** Bandwidth as admins write it: `50Mbit`, `100 Mbit/s`, `12.5MB/s`, `800kbit`, or a plain number of bytes per second. */

export const RATE_PATTERN = '^\\s*\\d+(\\.\\d+)?\\s*([kKMG]?bit|[kKMG]?B)?(/s)?\\s*$';

const UNITS: Record<string, number> = {
  bit: 1 / 8,
  kbit: 1000 / 8,
  Kbit: 1000 / 8,
  Mbit: 1e6 / 8,
  Gbit: 1e9 / 8,
  B: 1,
  kB: 1000,
  KB: 1000,
  MB: 1e6,
  GB: 1e9,
};

/** Bytes per second; undefined when the text is not a rate. */
export function parseRate(v: string | number): number | undefined {
  if (typeof v === 'number') return v > 0 ? v : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKMG]?bit|[kKMG]?B)?(?:\/s)?\s*$/.exec(v);
  if (!m) return undefined;
  const n = Number(m[1]) * (UNITS[m[2] ?? 'B'] ?? NaN);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}
