/**
 * Holds the current config snapshot and swaps it atomically on reload (file change or SIGHUP).
 * A file that does not load is refused with its precise errors, and the last good snapshot keeps
 * serving. Watches the folders of every file the snapshot came from, since editors replace files
 * by rename and a watch on the old inode would go quiet.
 */
import { watch, type FSWatcher } from 'node:fs';
import { dirname, basename } from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, type LoadedConfig } from './load.ts';
import { loadConfigChecked } from './content-check.ts';
import { formatIssue } from './yaml-source.ts';

export type ReloadResult =
  | { result: 'applied'; digest: string }
  | { result: 'unchanged'; digest: string }
  | { result: 'refused'; errors: string[] };

export class ConfigHolder {
  private snapshot: LoadedConfig;
  private readonly log: Logger;
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners: Array<(cfg: LoadedConfig, previous: LoadedConfig) => void> = [];
  private readonly resultListeners: Array<(r: ReloadResult) => void> = [];
  loadedAt = new Date();
  lastError: string[] | null = null;
  reloads = { applied: 0, unchanged: 0, refused: 0 };

  constructor(initial: LoadedConfig, logger: Logger) {
    this.snapshot = initial;
    this.log = logger.child({ component: 'config' });
  }

  static async load(file: string, logger: Logger): Promise<ConfigHolder> {
    return new ConfigHolder(await loadConfigChecked(file), logger);
  }

  get current(): LoadedConfig {
    return this.snapshot;
  }

  /** Called with the new snapshot after each applied reload. */
  onChange(fn: (cfg: LoadedConfig, previous: LoadedConfig) => void): void {
    this.listeners.push(fn);
  }

  /** Called with the outcome of every reload attempt (for metrics). */
  onResult(fn: (r: ReloadResult) => void): void {
    this.resultListeners.push(fn);
  }

  /** Reloads run one at a time, in order: a quick second save never races the first. */
  private chain: Promise<unknown> = Promise.resolve();

  reload(reason: string): Promise<ReloadResult> {
    const run = this.chain.then(async () => {
      const r = await this.tryReload(reason);
      for (const fn of this.resultListeners) fn(r);
      return r;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async tryReload(reason: string): Promise<ReloadResult> {
    let next: LoadedConfig;
    try {
      next = await loadConfigChecked(this.snapshot.file);
    } catch (e) {
      const errors = e instanceof ConfigError ? e.issues.map(formatIssue) : [(e as Error).message];
      this.reloads.refused++;
      this.lastError = errors;
      this.log.error({ reason, errors }, `config reload refused; still serving the last good config:\n${errors.join('\n')}`);
      return { result: 'refused', errors };
    }
    this.lastError = null;
    if (next.digest === this.snapshot.digest) {
      this.reloads.unchanged++;
      return { result: 'unchanged', digest: next.digest };
    }
    const previous = this.snapshot;
    this.snapshot = next;
    this.loadedAt = new Date();
    this.reloads.applied++;
    this.log.info({ reason, digest: next.digest.slice(0, 12), hosts: next.hosts.length, sequences: Object.keys(next.sequences).length }, 'config reloaded');
    for (const fn of this.listeners) {
      try {
        fn(next, previous);
      } catch (err) {
        this.log.error({ err }, 'config change listener failed');
      }
    }
    if (next.files.join('\0') !== previous.files.join('\0')) this.watch();
    return { result: 'applied', digest: next.digest };
  }

  /** Watch the config files (and includes) for changes; reloads after writes settle. */
  watch(debounceMs = 250): void {
    this.unwatch();
    const dirs = new Map<string, Set<string>>();
    for (const f of this.snapshot.files) {
      const d = dirname(f);
      if (!dirs.has(d)) dirs.set(d, new Set());
      dirs.get(d)!.add(basename(f));
    }
    // Include patterns can gain files: watch their folders for any YAML.
    for (const [dir, names] of dirs) {
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => {
          if (name && !names.has(name.toString()) && !/\.ya?ml$/i.test(name.toString())) return;
          clearTimeout(this.timer);
          this.timer = setTimeout(() => void this.reload(`file changed: ${name ?? dir}`), debounceMs);
        });
        w.on('error', (err) => this.log.warn({ err, dir }, 'config watch failed; SIGHUP still reloads'));
        this.watchers.push(w);
      } catch (err) {
        this.log.warn({ err, dir }, 'cannot watch config folder; SIGHUP still reloads');
      }
    }
  }

  unwatch(): void {
    clearTimeout(this.timer);
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }
}
