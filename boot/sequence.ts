/**
 * Turns a configured task sequence into what the deploying machine runs: steps with variables
 * filled in, and for each content package its URL, size and SHA-256 so the client verifies what it
 * downloaded. Pure: content facts come in through `lookup`.
 */
import type { SequenceDef, Vars } from '../config/load.ts';
import { renderTemplate } from '../config/template.ts';

export interface PackageFile {
  /** Path inside the package, `/`-separated. */
  path: string;
  size: number;
  sha256: string;
}

export interface PackageInfo {
  id: string;
  kind: string;
  size: number;
  sha256: string;
  files: PackageFile[];
  /** WIM images, when the package is a WIM. */
  images?: Array<{ index: number; name: string }>;
  models: string[];
}

/** What content/ knows about a package; undefined when it is not available (missing, not hashed yet). */
export type PackageLookup = (id: string) => PackageInfo | undefined;

export interface ResolvedPackage {
  id: string;
  kind: string;
  url: string;
  size: number;
  sha256: string;
  files: Array<PackageFile & { url: string }>;
}

export interface ResolvedStep {
  index: number;
  type: string;
  name: string;
  continueOnError: boolean;
  package?: ResolvedPackage | null;
  image?: { index: number; name?: string };
  disk?: number;
  command?: string;
  run?: string;
  into?: 'local' | 'pxe';
  note?: string;
}

export class SequenceUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SequenceUnavailable';
  }
}

/** Built-in variables for a machine (see config/load.ts BUILTIN_VARIABLES). */
export function builtinVariables(o: { mac: string; ip?: string | null; uuid?: string | null; hostname?: string; serverAddress: string; baseUrl: string; sequence?: string; generation?: number }): Vars {
  return {
    mac: o.mac,
    mac_hyphen: o.mac.replace(/:/g, '-'),
    mac_hex: o.mac.replace(/:/g, ''),
    ip: o.ip ?? '',
    uuid: o.uuid ?? '',
    hostname: o.hostname ?? '',
    server: o.serverAddress,
    server_url: o.baseUrl,
    sequence: o.sequence ?? '',
    deployment: o.generation !== undefined ? String(o.generation) : '',
  };
}

function norm(model: string): string {
  return model.trim().replace(/\s+/g, ' ').toLowerCase();
}

/** The drivers package for an SMBIOS model: exact (case- and space-insensitive) match first, then the longest model that is a prefix. */
export function driversForModel(model: string | undefined, candidates: PackageInfo[]): PackageInfo | undefined {
  if (!model) return undefined;
  const m = norm(model);
  const exact = candidates.find((p) => p.models.some((x) => norm(x) === m));
  if (exact) return exact;
  let best: PackageInfo | undefined;
  let bestLen = 0;
  for (const p of candidates) for (const x of p.models) if (m.startsWith(norm(x)) && norm(x).length > bestLen) { best = p; bestLen = norm(x).length; }
  return best;
}

export function resolveSequence(
  seq: SequenceDef,
  vars: Vars,
  lookup: PackageLookup,
  opts: { baseUrl: string; model?: string; driverPackages: string[] },
): ResolvedStep[] {
  const pkg = (id: string, stepIndex: number): ResolvedPackage => {
    const info = lookup(id);
    if (!info) throw new SequenceUnavailable(`step ${stepIndex}: package "${id}" is not available yet (missing on disk or not hashed); see \`swarmboot content scan\``);
    const base = `${opts.baseUrl}/content/${encodeURIComponent(id)}`;
    const files = info.files.map((f) => ({ ...f, url: `${base}/${f.path.split('/').map(encodeURIComponent).join('/')}` }));
    return { id, kind: info.kind, url: files.length === 1 ? files[0]!.url : `${base}/`, size: info.size, sha256: info.sha256, files };
  };
  return seq.steps.map((s, index): ResolvedStep => {
    const base = { index, type: s.type, name: s.name ?? s.type, continueOnError: s.continueOnError ?? false };
    switch (s.type) {
      case 'apply-image': {
        const p = pkg(s.package, index);
        const info = lookup(s.package);
        let image: { index: number; name?: string } = { index: 1 };
        if (typeof s.image === 'number') image = { index: s.image, ...nameOf(info, s.image) };
        else if (typeof s.image === 'string') {
          const found = info?.images?.find((i) => i.name.toLowerCase() === s.image!.toString().toLowerCase());
          if (!found) throw new SequenceUnavailable(`step ${index}: image "${s.image}" is not in ${s.package} (has: ${(info?.images ?? []).map((i) => `${i.index} ${i.name}`).join(', ') || 'no images'})`);
          image = { index: found.index, name: found.name };
        } else image = { index: 1, ...nameOf(info, 1) };
        return { ...base, package: p, image, disk: s.disk ?? 0 };
      }
      case 'drivers': {
        if (s.package !== 'auto') return { ...base, package: pkg(s.package, index) };
        const candidates = opts.driverPackages.map((id) => lookup(id)).filter((x): x is PackageInfo => x !== undefined);
        const chosen = driversForModel(opts.model, candidates);
        if (!chosen) return { ...base, package: null, note: opts.model ? `no driver package lists model "${opts.model}"` : 'the machine did not report its model (pass ?model=)' };
        return { ...base, package: pkg(chosen.id, index), note: `chosen for model "${opts.model}"` };
      }
      case 'install-package':
        return { ...base, package: pkg(s.package, index), ...(s.command ? { command: renderTemplate(s.command, vars) } : {}) };
      case 'command':
        return { ...base, run: renderTemplate(s.run, vars) };
      case 'reboot':
        return { ...base, into: s.into ?? 'local' };
    }
  });
}

function nameOf(info: PackageInfo | undefined, index: number): { name?: string } {
  const n = info?.images?.find((i) => i.index === index)?.name;
  return n ? { name: n } : {};
}
