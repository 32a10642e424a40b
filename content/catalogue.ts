import { statSync, type BigIntStats } from 'node:fs';
import type { Logger } from '../server/log.ts';
import { sameStamp, stampOf } from './hash.ts';
import type { HashCache } from './hash-cache.ts';
import { hashPlans } from './hash-plan.ts';
import { compileModel, matchModel, rank, type ModelPattern } from './models.ts';
import { finishPackage, planMatches, planPackage } from './package.ts';
import { fmtBytes, type ProgressRenderer } from './progress.ts';
import { ContentError, type FileEntry, type PackageInfo, type PackageSpec, type WimImage } from './types.ts';
import { selectImage } from './wim.ts';

export interface DriverMatch {
  package: PackageInfo;
  /** The package's model entry that matched, as configured. */
  pattern: string;
  /** The reported SMBIOS string that matched. */
  reported: string;
  exact: boolean;
}

export interface CatalogueDeps {
  cache: HashCache;
  logger: Logger;
  /** First retry delay after a failed re-scan, doubled up to 5 minutes. Default 30 s. */
  retryMs?: number;
  /** Progress of background re-hashes (the daemon logs lines); one renderer per re-hash. */
  progress?: () => ProgressRenderer;
}

interface Indexed {
  info: PackageInfo;
  byPath: Map<string, FileEntry>;
  /** Lower-cased path → entry, only for paths whose lower-case form is unique. */
  byFolded: Map<string, FileEntry>;
  patterns: ModelPattern[];
}

/**
 * The scanned packages. Immutable per package: a change (a file re-hashed after it changed on disk)
 * swaps in a new `PackageInfo`, so a reader holding one never sees it half-updated.
 */
export class Catalogue {
  private readonly specs = new Map<string, PackageSpec>();
  private readonly pkgs = new Map<string, Indexed>();
  private readonly broken = new Map<string, string>();
  private readonly checking = new Map<string, Promise<PackageInfo | undefined>>();
  private readonly again = new Set<string>();
  private readonly stale = new Map<string, { since: number; bytesDone: number; bytesTotal: number }>();
  private readonly closed = new AbortController();
  private readonly listeners = new Set<(id: string, info: PackageInfo | undefined) => void>();
  private readonly duplicates = new Set<string>();
  private readonly retries = new Map<string, { timer: NodeJS.Timeout; delayMs: number }>();
  private readonly deps: CatalogueDeps;

  constructor(specs: readonly PackageSpec[], packages: readonly PackageInfo[], problems: ReadonlyMap<string, string>, deps: CatalogueDeps) {
    for (const s of specs) {
      if (this.specs.has(s.id)) this.duplicates.add(s.id);
      else this.specs.set(s.id, s);
    }
    for (const p of packages) this.pkgs.set(p.id, index(p));
    for (const [id, msg] of problems) this.broken.set(id, msg);
    this.deps = deps;
  }

  /** Every usable package, in configuration order. */
  list(): PackageInfo[] {
    return [...this.specs.keys()].flatMap((id) => {
      const p = this.pkgs.get(id);
      return p ? [p.info] : [];
    });
  }

  /** The configured packages (an id declared twice is left out), in configuration order. */
  specList(): PackageSpec[] {
    return [...this.specs.values()].filter((s) => !this.duplicates.has(s.id));
  }

  get(id: string): PackageInfo | undefined {
    return this.pkgs.get(id)?.info;
  }

  /** Packages that could not be scanned, id → reason (with path and what to fix). */
  problems(): ReadonlyMap<string, string> {
    return this.broken;
  }

  /** The package, or a ContentError saying why there is none. */
  require(id: string): PackageInfo {
    const p = this.pkgs.get(id);
    if (p) return p.info;
    const why = this.broken.get(id);
    if (why) throw new ContentError(`package "${id}" is unavailable: ${why}`, id);
    throw new ContentError(`no content package "${id}"${this.suggest(id)}`, id);
  }

  /**
   * The WIM image a step asks for: by index or name, or, when `ref` is undefined, the package's
   * configured default, or its only image. Errors name the package and list its images.
   */
  resolveImage(id: string, ref?: number | string): WimImage {
    const p = this.require(id);
    if (p.kind !== 'wim' || !p.wim) throw new ContentError(`package "${id}" is a ${p.kind} package, not a wim`, id);
    const what = `package "${id}" (${p.path})`;
    try {
      if (ref !== undefined) return selectImage(p.wim.images, ref, what);
      if (p.defaultImage) return p.defaultImage;
      if (p.wim.images.length === 1) return p.wim.images[0]!;
      throw new Error(`${what} has ${p.wim.images.length} images and neither the step nor the package names one`);
    } catch (e) {
      throw new ContentError((e as Error).message, id);
    }
  }

  /**
   * Driver packages for the model a machine reports (one SMBIOS string, or several such as
   * product name and version), best first; see `models.ts` for normalisation and ranking.
   * `among` restricts the search to these package ids (a step's list), else all drivers packages.
   */
  driversForModel(reported: string | readonly string[], among?: readonly string[]): DriverMatch[] {
    const ids = among ?? [...this.specs.keys()];
    const out: Array<DriverMatch & { r: number }> = [];
    for (const id of ids) {
      const p = this.pkgs.get(id);
      if (!p || p.info.kind !== 'drivers') continue;
      const m = matchModel(p.patterns, reported);
      if (m) out.push({ package: p.info, pattern: m.pattern.source, reported: m.reported, exact: m.exact, r: rank(m) });
    }
    out.sort((a, b) => b.r - a.r || (a.package.id < b.package.id ? -1 : a.package.id > b.package.id ? 1 : 0));
    return out.map(({ r: _r, ...m }) => m);
  }

  /**
   * The file a URL path names inside a package: exact path first, then the same path ignoring
   * case when that is unambiguous (files copied from Windows media vary in case).
   */
  lookup(id: string, path: string): { pkg: PackageInfo; file: FileEntry } | undefined {
    const p = this.pkgs.get(id);
    if (!p) return undefined;
    const file = p.byPath.get(path) ?? p.byFolded.get(path.toLowerCase());
    return file ? { pkg: p.info, file } : undefined;
  }

  /**
   * Looks at one package on disk again (walk and stat; WIM header) and, when it differs from what
   * was hashed, re-hashes it (cached hashes make unchanged files free) and swaps the result in.
   * From the moment a difference is seen until the new hash is known the package is `stale`:
   * sequence resolution (`fresh`, content/view.ts) treats it as unavailable, so nobody is handed a
   * size or SHA-256 that no longer matches the bytes /content serves. A check asked for while one
   * runs makes that one look again when it ends, so a change during a re-hash is never lost.
   */
  check(id: string, reason = 'changed on disk'): Promise<PackageInfo | undefined> {
    const running = this.checking.get(id);
    if (running) {
      this.again.add(id);
      return running;
    }
    const spec = this.specs.get(id);
    if (!spec || this.duplicates.has(id)) return Promise.resolve(undefined);
    const run = (async (): Promise<PackageInfo | undefined> => {
      let out: PackageInfo | undefined;
      do {
        this.again.delete(id);
        out = await this.checkOnce(spec, reason);
      } while (this.again.has(id) && !this.closed.signal.aborted);
      return out;
    })().finally(() => this.checking.delete(id));
    this.checking.set(id, run);
    return run;
  }

  /**
   * Checks every package, one after the other (sequential reads are what disks like). `force`
   * includes packages that are broken and waiting for their retry timer.
   */
  async sweep(reason: string, force = true): Promise<{ checked: number; changed: string[] }> {
    const changed: string[] = [];
    let checked = 0;
    for (const id of this.specs.keys()) {
      if (this.closed.signal.aborted) break;
      if (this.duplicates.has(id)) continue;
      if (!force && this.retries.has(id)) continue;
      const before = this.pkgs.get(id)?.info;
      const after = await this.check(id, reason);
      checked++;
      if (before !== after) changed.push(id);
    }
    return { checked, changed };
  }

  /**
   * The package for handing out in a sequence, or undefined while it is stale (being re-hashed) or
   * broken. A single-file package (a WIM, typically) is stat'ed right here, so a file replaced a
   * moment ago is caught even before the change watcher has said so.
   */
  fresh(id: string): PackageInfo | undefined {
    const p = this.pkgs.get(id);
    if (!p || this.stale.has(id)) return undefined;
    if (p.info.single) {
      const f = p.info.files[0]!;
      let st: BigIntStats | undefined;
      try {
        st = statSync(p.info.path, { bigint: true });
      } catch {
        st = undefined;
      }
      if (!st || !sameStamp(stampOf(st), f)) {
        this.stale.set(id, { since: Date.now(), bytesDone: 0, bytesTotal: st ? Number(st.size) : 0 });
        void this.check(id, 'changed on disk (seen while resolving a sequence)');
        return undefined;
      }
    }
    return p.info;
  }

  /** Why `fresh` refuses a package that exists: it is being re-hashed. Undefined otherwise. */
  staleness(id: string): string | undefined {
    const s = this.stale.get(id);
    if (!s) return undefined;
    const pct = s.bytesTotal > 0 ? ` (${Math.floor((s.bytesDone / s.bytesTotal) * 100)}% of ${fmtBytes(s.bytesTotal)})` : '';
    return `package "${id}" changed on disk and is being re-hashed${pct}; try again shortly`;
  }

  /** True while a package's new version is known to differ from its hash (see `check`). */
  isStale(id: string): boolean {
    return this.stale.has(id);
  }

  private async checkOnce(spec: PackageSpec, reason: string): Promise<PackageInfo | undefined> {
    const id = spec.id;
    const log = this.deps.logger;
    const skipped: Array<{ path: string; reason: string }> = [];
    const retry = this.retries.get(id);
    if (retry) clearTimeout(retry.timer);
    try {
      const plan = await planPackage(spec, (path, why) => skipped.push({ path, reason: why }));
      const current = this.pkgs.get(id)?.info;
      if (current && planMatches(current, plan)) {
        this.stale.delete(id);
        this.retries.delete(id);
        return current;
      }
      for (const k of skipped) log.warn({ package: id, ...k }, 'content file skipped');
      const total = plan.entries.reduce((n, e) => n + Number(e.stat.size), 0);
      this.stale.set(id, { since: Date.now(), bytesDone: 0, bytesTotal: total });
      log.info({ package: id, reason, files: plan.entries.length, bytes: total }, 'content package changed on disk; re-scanning');
      const progress = this.deps.progress?.();
      const { hashed, bytesHashed, filesHashed } = await hashPlans([plan], {
        cache: this.deps.cache,
        signal: this.closed.signal,
        onProgress: (p) => {
          const s = this.stale.get(id);
          if (s) {
            s.bytesDone = p.bytesDone;
            s.bytesTotal = p.bytesTotal;
          }
          progress?.onProgress(p);
        },
      });
      progress?.finish();
      const info = finishPackage(plan, hashed);
      const before = current?.sha256;
      this.pkgs.set(id, index(info));
      this.broken.delete(id);
      this.stale.delete(id);
      this.retries.delete(id);
      log.info({ package: id, sha256: info.sha256, previous: before, size: info.totalSize, filesHashed, bytesHashed }, 'content package re-scanned');
      this.emit(id, info);
      return info;
    } catch (e) {
      this.stale.delete(id);
      if (this.closed.signal.aborted) return undefined;
      const msg = e instanceof ContentError ? e.message : `package "${id}": ${(e as Error).message}`;
      const had = this.pkgs.has(id);
      const same = this.broken.get(id) === msg;
      this.pkgs.delete(id);
      this.broken.set(id, msg);
      // Often a copy still in progress: try again later, backing off to every 5 minutes, so the
      // package comes back by itself once the file settles (a change watcher usually sooner).
      const delayMs = retry ? Math.min(300_000, retry.delayMs * 2) : (this.deps.retryMs ?? 30_000);
      const timer = setTimeout(() => void this.check(id, 'retry after a failed re-scan'), delayMs).unref();
      this.retries.set(id, { timer, delayMs });
      // The same failure again (a share still missing) is not worth an error line every retry.
      log[same ? 'debug' : 'error']({ package: id, err: msg, retryInSec: delayMs / 1000 }, 'content package unavailable after re-scan');
      if (had || !same) this.emit(id, undefined);
      return undefined;
    }
  }

  /** Stops background retries and re-hashing (call when this catalogue is replaced or the daemon stops). */
  close(): void {
    this.closed.abort();
    for (const r of this.retries.values()) clearTimeout(r.timer);
    this.retries.clear();
    this.listeners.clear();
  }

  /** Called with the new info (or undefined when the package broke) after a check changed it. */
  onChange(fn: (id: string, info: PackageInfo | undefined) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(id: string, info: PackageInfo | undefined): void {
    for (const fn of this.listeners) {
      try {
        fn(id, info);
      } catch (e) {
        this.deps.logger.error({ err: e }, 'content change listener failed');
      }
    }
  }

  private suggest(id: string): string {
    const l = id.toLowerCase();
    const near = [...this.specs.keys()].find((k) => k.toLowerCase() === l);
    return near ? ` (did you mean "${near}"?)` : '';
  }
}

function index(info: PackageInfo): Indexed {
  const byPath = new Map<string, FileEntry>();
  const folded = new Map<string, FileEntry | null>();
  for (const f of info.files) {
    byPath.set(f.path, f);
    const k = f.path.toLowerCase();
    folded.set(k, folded.has(k) ? null : f);
  }
  const byFolded = new Map<string, FileEntry>();
  for (const [k, f] of folded) if (f) byFolded.set(k, f);
  return { info, byPath, byFolded, patterns: (info.models ?? []).map(compileModel) };
}
