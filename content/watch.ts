/**
 * Notices packages changing on disk, so the daemon re-hashes them without a restart: one
 * `fs.watch` (inotify) per directory a package's files live in, plus the directory holding the
 * package path itself (a WIM replaced by rename, a folder swapped for a new one, a missing package
 * appearing).
 *
 * Not `fs.watch(dir, { recursive: true })`: on Linux, Node 24 emulates that in JavaScript with one
 * watcher per file *and* directory and a synchronous walk (readdirSync/statSync) of the whole tree
 * on the event loop when it starts, which for a driver repository of tens of thousands of files
 * stalls DHCP and TFTP answers and spends that many inotify watches. A directory watch already
 * reports every change to the files in it, so one per directory is enough; new subdirectories are
 * picked up when the package is re-checked. When the kernel's watch limit is reached the rest is
 * left to the periodic check (server/content-service.ts), with one warning.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Logger } from '../server/log.ts';
import type { PackageInfo, PackageSpec } from './types.ts';

export interface WatchTarget {
  dir: string;
  /** Only these entries of the directory matter; undefined: all of them. */
  names?: string[];
}

/** What to watch for a package: where its files are, and the entry its configured path names. */
export function watchTargets(spec: PackageSpec, info: PackageInfo | undefined): WatchTarget[] {
  const out: WatchTarget[] = [{ dir: dirname(spec.path), names: [basename(spec.path)] }];
  if (info?.single) out.push({ dir: info.root, names: [basename(info.files[0]!.absPath)] });
  else if (info) for (const d of info.dirs) out.push({ dir: d });
  return out;
}

interface DirWatch {
  watcher: FSWatcher;
  /** Package id → the names it cares about (null: every name). */
  subs: Map<string, Set<string> | null>;
}

export class PackageWatcher {
  private readonly dirs = new Map<string, DirWatch>();
  private readonly byPackage = new Map<string, Set<string>>();
  private readonly onChange: (id: string, path: string) => void;
  private readonly log: Logger;
  private limitReported = false;

  /** `onChange(id, path)` is called for every relevant event; debouncing is the caller's job. */
  constructor(onChange: (id: string, path: string) => void, log: Logger) {
    this.onChange = onChange;
    this.log = log;
  }

  /** Replaces the package's watches (new directories may have appeared, old ones been swapped). */
  set(id: string, targets: readonly WatchTarget[]): void {
    this.remove(id);
    const mine = new Set<string>();
    for (const t of targets) {
      let d = this.dirs.get(t.dir);
      if (!d) {
        const w = this.open(t.dir);
        if (!w) continue;
        d = { watcher: w, subs: new Map() };
        this.dirs.set(t.dir, d);
      }
      const prev = d.subs.get(id);
      if (prev === null || !t.names) d.subs.set(id, null);
      else d.subs.set(id, new Set([...(prev ?? []), ...t.names]));
      mine.add(t.dir);
    }
    this.byPackage.set(id, mine);
  }

  remove(id: string): void {
    for (const dir of this.byPackage.get(id) ?? []) {
      const d = this.dirs.get(dir);
      if (!d) continue;
      d.subs.delete(id);
      if (d.subs.size === 0) this.drop(dir);
    }
    this.byPackage.delete(id);
  }

  /** Directories watched now. */
  count(): number {
    return this.dirs.size;
  }

  close(): void {
    for (const dir of [...this.dirs.keys()]) this.drop(dir);
    this.byPackage.clear();
  }

  private open(dir: string): FSWatcher | undefined {
    try {
      const w = watch(dir, { persistent: false }, (_event, name) => this.fire(dir, name?.toString()));
      w.on('error', (err) => {
        // The directory went away (or the watch broke): whoever watched it should look again.
        this.log.debug({ err, dir }, 'content watch ended');
        this.fire(dir, undefined);
        this.drop(dir);
      });
      return w;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EMFILE') {
        if (!this.limitReported) {
          this.limitReported = true;
          this.log.warn(
            { dir, code, watching: this.dirs.size },
            'cannot watch more content folders (inotify limit: sysctl fs.inotify.max_user_watches); changes there are found by the periodic check',
          );
        }
      } else if (code !== 'ENOENT' && code !== 'ENOTDIR') {
        this.log.warn({ dir, code }, 'cannot watch content folder; changes there are found by the periodic check');
      }
      return undefined;
    }
  }

  private drop(dir: string): void {
    const d = this.dirs.get(dir);
    if (!d) return;
    this.dirs.delete(dir);
    d.watcher.close();
  }

  private fire(dir: string, name: string | undefined): void {
    const d = this.dirs.get(dir);
    if (!d) return;
    for (const [id, names] of [...d.subs]) {
      if (names === null || name === undefined || names.has(name)) this.onChange(id, name === undefined ? dir : join(dir, name));
    }
  }
}
