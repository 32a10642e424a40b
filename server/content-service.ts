/**
 * The content store inside the daemon: scans packages in the background at start (DHCP, TFTP and
 * HTTP answer meanwhile; sequences that need unscanned content get a clear 503), rescans when the
 * config's packages change, and swaps catalogues atomically. Progress goes to the log.
 *
 * Keeping the catalogue true while the daemon runs (a WIM replaced, drivers added to a folder):
 * - change watching (content/watch.ts): an event on a package's files or path marks it for a check
 *   once the writes settle (`debounceMs` quiet, at most `maxDelayMs` after the first event);
 * - a periodic check every `sweepMs` (default 60 s): a stat walk of every package, the safety net
 *   for what inotify does not see (NFS and SMB shares changed from another host, the watch limit);
 * - `rescan(reason)`: the same check now, for every package, broken ones included (SIGHUP, and a
 *   finished `swarmboot content scan` in another process, noticed through the state database).
 * A check that finds a package as it was hashed costs only the stats; one that finds a difference
 * marks the package stale (sequences answer 503 for it), re-hashes what changed and swaps it in
 * (Catalogue.check).
 */
import type { Logger } from 'pino';
import type { DatabaseSync } from 'node:sqlite';
import type { LoadedConfig } from '../config/load.ts';
import { Catalogue } from '../content/catalogue.ts';
import { HashCache } from '../content/hash-cache.ts';
import { scanContent } from '../content/scan.ts';
import { createProgressRenderer } from '../content/progress.ts';
import type { PackageSpec } from '../content/types.ts';
import { contentView } from '../content/view.ts';
import { PackageWatcher, watchTargets } from '../content/watch.ts';
import type { ContentView } from '../boot/sequence.ts';

export function packageSpecs(cfg: LoadedConfig): PackageSpec[] {
  return Object.values(cfg.packages).map((p) => ({ id: p.id, kind: p.kind, path: p.path, ...(p.models.length ? { models: p.models } : {}) }));
}

export interface ContentServiceOptions {
  /** Period of the safety-net check of every package (stat only). Default 60 s; 0 turns it off. */
  sweepMs?: number;
  /** Quiet time after the last change event before a package is checked. Default 1 s. */
  debounceMs?: number;
  /** A package that keeps changing is checked at least this often. Default 30 s. */
  maxDelayMs?: number;
  /** How often the state database is polled for a finished `swarmboot content scan`. Default 2 s. */
  pollMs?: number;
  /** Watch package folders for changes (default true). */
  watch?: boolean;
}

export class ContentService {
  private cat: Catalogue;
  private readonly db: DatabaseSync;
  private readonly cache: HashCache;
  private readonly log: Logger;
  private readonly opts: Required<ContentServiceOptions>;
  private specsKey = '';
  private running: Promise<unknown> = Promise.resolve();
  private scans = 0;
  private abort = new AbortController();
  private watcher: PackageWatcher | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly pending = new Map<string, { timer: NodeJS.Timeout; first: number; path: string }>();
  private queuedRescan: { promise: Promise<RescanResult>; reasons: string[] } | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private scanGeneration: number;
  private sweeping = false;

  constructor(db: DatabaseSync, logger: Logger, opts: ContentServiceOptions = {}) {
    this.db = db;
    this.log = logger.child({ component: 'content' });
    this.opts = { sweepMs: 60_000, debounceMs: 1000, maxDelayMs: 30_000, pollMs: 2000, watch: true, ...opts };
    this.cache = new HashCache(db);
    this.scanGeneration = this.cache.scanGeneration();
    this.cat = new Catalogue([], [], new Map(), { cache: this.cache, logger: this.log });
    if (this.opts.sweepMs > 0) {
      this.timers.push(setInterval(() => void this.periodic(), this.opts.sweepMs).unref());
    }
    if (this.opts.pollMs > 0) {
      this.timers.push(setInterval(() => this.pollScans(), this.opts.pollMs).unref());
    }
  }

  get catalogue(): Catalogue {
    return this.cat;
  }

  get scanning(): boolean {
    return this.scans > 0;
  }

  view(): ContentView {
    return contentView(this.cat, this.scanning);
  }

  /** Scan when the configured packages differ from the last scan; scans run one at a time. */
  update(cfg: LoadedConfig, reason: string): Promise<void> {
    const specs = packageSpecs(cfg);
    const key = JSON.stringify(specs);
    if (key === this.specsKey) return this.running.then(() => undefined);
    this.specsKey = key;
    this.scans++;
    const signal = this.abort.signal;
    const run = this.running.then(async () => {
      try {
        if (signal.aborted) return;
        this.log.info({ packages: specs.length, reason }, 'content scan started');
        const progress = createProgressRenderer({ tty: false, logger: this.log });
        const next = await scanContent(specs, {
          db: this.db,
          logger: this.log,
          onProgress: progress.onProgress,
          signal,
          announce: false,
          progress: () => createProgressRenderer({ tty: false, logger: this.log }),
        });
        progress.finish();
        if (signal.aborted) {
          next.close();
          return;
        }
        const old = this.cat;
        this.install(next);
        old.close();
        for (const [id, problem] of next.problems()) this.log.warn({ package: id }, `content package unavailable: ${problem}`);
      } catch (e) {
        if (!signal.aborted) this.log.error({ err: e }, 'content scan failed');
      } finally {
        this.scans--;
      }
    });
    this.running = run;
    return run;
  }

  /**
   * Checks every package against the disk now (stat walk; re-hashes what changed), broken packages
   * included. For SIGHUP and for a `swarmboot content scan` run beside the daemon. Calls made while
   * one waits its turn share it.
   */
  rescan(reason: string): Promise<RescanResult> {
    if (this.queuedRescan) {
      if (!this.queuedRescan.reasons.includes(reason)) this.queuedRescan.reasons.push(reason);
      return this.queuedRescan.promise;
    }
    const reasons = [reason];
    const promise = this.running.then(async (): Promise<RescanResult> => {
      this.queuedRescan = undefined;
      const why = reasons.join('; ');
      if (this.abort.signal.aborted) return { checked: 0, changed: [] };
      this.log.info({ reason: why }, 'content re-check started');
      const started = Date.now();
      const r = await this.cat.sweep(why, true);
      this.log.info({ reason: why, checked: r.checked, changed: r.changed, ms: Date.now() - started }, 'content re-check finished');
      return r;
    });
    this.queuedRescan = { promise, reasons };
    this.running = promise.catch(() => undefined);
    return promise;
  }

  health(): { packages: number; unavailable: string[]; scanning: boolean; rehashing: string[]; watchedFolders: number } {
    const cat = this.cat;
    return {
      packages: cat.list().length,
      unavailable: [...cat.problems().keys()],
      scanning: this.scanning,
      rehashing: cat.specList().filter((s) => cat.isStale(s.id)).map((s) => s.id),
      watchedFolders: this.watcher?.count() ?? 0,
    };
  }

  async close(): Promise<void> {
    this.abort.abort();
    for (const t of this.timers) clearInterval(t);
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
    this.watcher?.close();
    this.unsubscribe?.();
    this.cat.close();
    await this.running.catch(() => undefined);
  }

  /** Makes `next` the catalogue and points the change watching at its packages. */
  private install(next: Catalogue): void {
    this.cat = next;
    this.unsubscribe?.();
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
    this.watcher?.close();
    this.watcher = undefined;
    if (this.opts.watch) {
      const watcher = new PackageWatcher((id, path) => this.changed(id, path), this.log);
      for (const spec of next.specList()) watcher.set(spec.id, watchTargets(spec, next.get(spec.id)));
      this.watcher = watcher;
      this.log.debug({ folders: watcher.count() }, 'watching content folders');
      // A re-hash can bring new folders (or a swapped one): watch what the package is now.
      this.unsubscribe = next.onChange((id, info) => {
        const spec = next.specList().find((s) => s.id === id);
        if (spec && this.watcher === watcher) watcher.set(id, watchTargets(spec, info));
      });
    }
  }

  /** A change event: check the package once writes have been quiet for a moment. */
  private changed(id: string, path: string): void {
    if (this.abort.signal.aborted) return;
    const now = Date.now();
    const p = this.pending.get(id);
    if (p) clearTimeout(p.timer);
    const first = p?.first ?? now;
    const wait = Math.max(0, Math.min(this.opts.debounceMs, first + this.opts.maxDelayMs - now));
    const cat = this.cat;
    const timer = setTimeout(() => {
      this.pending.delete(id);
      if (cat !== this.cat || this.abort.signal.aborted) return;
      void cat.check(id, `changed on disk: ${path}`);
    }, wait).unref();
    this.pending.set(id, { timer, first, path });
  }

  private periodic(): void {
    // Not behind a scan or another check: the next period comes soon enough.
    if (this.sweeping || this.scanning || this.queuedRescan || this.abort.signal.aborted) return;
    this.sweeping = true;
    const cat = this.cat;
    const started = Date.now();
    const run = cat
      .sweep('periodic check', false)
      .then((r) => this.log[r.changed.length ? 'info' : 'debug']({ checked: r.checked, changed: r.changed, ms: Date.now() - started }, 'content periodic check done'))
      .catch((err: unknown) => this.log.error({ err }, 'content periodic check failed'))
      .finally(() => (this.sweeping = false));
    this.running = this.running.then(() => run);
  }

  private pollScans(): void {
    try {
      const gen = this.cache.scanGeneration();
      if (gen === this.scanGeneration) return;
      this.scanGeneration = gen;
      void this.rescan('`swarmboot content scan` finished');
    } catch (err) {
      this.log.debug({ err }, 'cannot read the content scan generation');
    }
  }
}

export type RescanResult = { checked: number; changed: string[] };
