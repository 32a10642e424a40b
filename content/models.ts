/**
 * Matching the model a machine reports (SMBIOS type 1 "Product Name", what Windows shows as
 * Win32_ComputerSystem.Model; Lenovo puts the friendly name in "Version") against the model lists of
 * driver packages.
 *
 * Normalisation, applied to both sides: Unicode NFKC, trimmed, runs of whitespace collapsed to one
 * space, case-insensitive (lower-cased). Vendors pad SMBIOS strings with spaces and vary case
 * between BIOS versions; nothing else is folded, so "T480" and "T480s" stay different.
 *
 * A list entry is an exact match unless it ends with `*`, which makes it a prefix ("20L5*" matches
 * "20L5S0AA00"); `*` alone matches every model (a fallback package). Exact matches rank before
 * prefixes, longer prefixes before shorter ones, then package id for a stable order.
 */

export function normaliseModel(s: string): string {
  return s.normalize('NFKC').trim().replace(/\s+/gu, ' ').toLowerCase();
}

export interface ModelPattern {
  /** As configured. */
  source: string;
  /** Normalised, without the trailing `*`. */
  text: string;
  prefix: boolean;
}

export function compileModel(source: string): ModelPattern {
  const trimmed = source.trim();
  const prefix = trimmed.endsWith('*');
  return { source, text: normaliseModel(prefix ? trimmed.slice(0, -1) : trimmed), prefix };
}

export interface ModelMatch {
  pattern: ModelPattern;
  /** The reported string that matched. */
  reported: string;
  exact: boolean;
}

/**
 * The best match of any reported string against the patterns, or undefined. `reported` may carry
 * several SMBIOS strings (product name, version, SKU); the best match over all of them wins.
 */
export function matchModel(patterns: readonly ModelPattern[], reported: string | readonly string[]): ModelMatch | undefined {
  const candidates = splitModels(reported);
  let best: ModelMatch | undefined;
  for (const r of candidates) {
    const n = normaliseModel(r);
    for (const p of patterns) {
      const hit = p.prefix ? n.startsWith(p.text) : n === p.text;
      if (!hit) continue;
      const m: ModelMatch = { pattern: p, reported: r, exact: !p.prefix };
      if (!best || rank(m) > rank(best)) best = m;
    }
  }
  return best;
}

/** Higher is better: any exact match beats any prefix; a longer prefix beats a shorter one. */
export function rank(m: ModelMatch): number {
  return m.exact ? Number.MAX_SAFE_INTEGER : m.pattern.text.length;
}

/**
 * Several SMBIOS strings (product name, version, SKU…) can travel as one string, one per line, where
 * a single model string is expected (the deployment state remembers a machine's `model`). Matching
 * collapses whitespace, so a line break is never part of a model name and splitting is lossless.
 */
export const MODEL_SEPARATOR = '\n';

/** The reported strings as one value: empty ones dropped, duplicates (after normalisation) once. */
export function joinModels(models: readonly string[]): string {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const m of models.flatMap((x) => x.split(MODEL_SEPARATOR))) {
    const n = normaliseModel(m);
    if (n === '' || seen.has(n)) continue;
    seen.add(n);
    out.push(m.trim());
  }
  return out.join(MODEL_SEPARATOR);
}

/** The reported strings inside a value made by `joinModels` (or one plain model string). */
export function splitModels(reported: string | readonly string[]): string[] {
  return (typeof reported === 'string' ? [reported] : reported).flatMap((r) => r.split(MODEL_SEPARATOR)).filter((r) => normaliseModel(r) !== '');
}
