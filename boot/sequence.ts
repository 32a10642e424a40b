/**
 * Turns a configured task sequence into what the deploying machine runs: steps with variables
 * filled in, and for each content package its URL, size and SHA-256 so the client verifies what it
 * downloaded. Pure: content facts come in through `lookup`.
 */
import type { SequenceDef, Vars } from '../config/load.ts';
import { renderTemplate } from '../config/template.ts';
import { splitModels } from '../content/models.ts';

export interface PackageFile {
  /** Path inside the package, `/`-separated. */
  path: string;
  size: number;
  sha256: string;
}

/** What boot/ needs to know of a content package. */
export interface PackageFacts {
  id: string;
  kind: string;
  size: number;
  sha256: string;
  files: PackageFile[];
}

/** The content store as sequence resolution sees it (content/view.ts adapts the catalogue). */
export interface ContentView {
  /** undefined when the package is not available (missing on disk, being hashed). */
  lookup(id: string): PackageFacts | undefined;
  /** Why a package is not available, in words an admin can act on. */
  unavailable(id: string): string;
  /** The WIM image a step names (index or name; none: the package default or its only image). */
  resolveImage(id: string, ref: number | string | undefined): { index: number; name: string } | { error: string };
  /** The drivers package for an SMBIOS model, by the packages' model lists. */
  driversFor(model: string): string | undefined;
}

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

export function resolveSequence(
  seq: SequenceDef,
  vars: Vars,
  content: ContentView,
  opts: { baseUrl: string; model?: string },
): ResolvedStep[] {
  const pkg = (id: string, stepIndex: number): ResolvedPackage => {
    const info = content.lookup(id);
    if (!info) throw new SequenceUnavailable(`step ${stepIndex}: package "${id}" is not available: ${content.unavailable(id)}`);
    const base = `${opts.baseUrl}/content/${encodeURIComponent(id)}`;
    const files = info.files.map((f) => ({ ...f, url: `${base}/${f.path.split('/').map(encodeURIComponent).join('/')}` }));
    return { id, kind: info.kind, url: files.length === 1 ? files[0]!.url : `${base}/`, size: info.size, sha256: info.sha256, files };
  };
  return seq.steps.map((s, index): ResolvedStep => {
    const base = { index, type: s.type, name: s.name ?? s.type, continueOnError: s.continueOnError ?? false };
    // `{{ step }}` is the index of the step whose text is rendered (what its progress events carry).
    const stepVars: Vars = { ...vars, step: String(index) };
    switch (s.type) {
      case 'apply-image': {
        const p = pkg(s.package, index);
        const image = content.resolveImage(s.package, s.image);
        if ('error' in image) throw new SequenceUnavailable(`step ${index}: ${image.error}`);
        return { ...base, package: p, image, disk: s.disk ?? 0 };
      }
      case 'drivers': {
        if (s.package !== 'auto') return { ...base, package: pkg(s.package, index) };
        if (!opts.model) return { ...base, package: null, note: 'the machine did not report its model (pass ?model=)' };
        const chosen = content.driversFor(opts.model);
        // Several SMBIOS strings travel one per line (content/models.ts joinModels).
        const shown = splitModels(opts.model).map((m) => `"${m}"`).join(' / ');
        if (!chosen) return { ...base, package: null, note: `no driver package lists model ${shown}` };
        return { ...base, package: pkg(chosen, index), note: `chosen for model ${shown}` };
      }
      case 'install-package':
        return { ...base, package: pkg(s.package, index), ...(s.command ? { command: renderTemplate(s.command, stepVars) } : {}) };
      case 'command':
        return { ...base, run: renderTemplate(s.run, stepVars) };
      case 'reboot':
        return { ...base, into: s.into ?? 'local' };
    }
  });
}
