import { readdir, realpath, stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { join, sep } from 'node:path';

export interface WalkEntry {
  /** Path inside the root, `/`-separated. */
  path: string;
  /** Symlink-free absolute path, always inside the root. */
  absPath: string;
  stat: BigIntStats;
}

/** Is `p` the directory `root` or below it? Both must be absolute and symlink-free. */
export function isInside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * Every regular file under `root` (already resolved with realpath). Symlinks are followed only when
 * their target stays inside the root; others are skipped and reported, as are sockets, devices and
 * names the HTTP side could never address (backslash, NUL, control characters). Symlink loops
 * are cut where they close. Empty directories carry no files and so do not exist for
 * the package.
 */
export async function walkFolder(
  root: string,
  onSkip: (path: string, reason: string) => void,
  /** Told every directory walked (symlink-free, inside the root): what a change watcher watches. */
  onDir?: (absDir: string) => void,
): Promise<WalkEntry[]> {
  const out: WalkEntry[] = [];
  // Directories on the current path: a symlink back to one of them is a loop. A link to a
  // sibling directory is not, and lists its files under both names, as the link says.
  const ancestors = new Set<string>();
  const visit = async (dirAbs: string, relDir: string): Promise<void> => {
    const st = await stat(dirAbs, { bigint: true });
    const key = `${st.dev}:${st.ino}`;
    if (ancestors.has(key)) {
      onSkip(relDir, 'symlink loop');
      return;
    }
    ancestors.add(key);
    onDir?.(dirAbs);
    const names = (await readdir(dirAbs)).sort();
    for (const name of names) {
      const rel = relDir ? `${relDir}/${name}` : name;
      if (/[\\\0-\x1f\x7f]/.test(name)) {
        onSkip(rel, 'name has a backslash or control character');
        continue;
      }
      let real: string;
      try {
        real = await realpath(join(dirAbs, name));
      } catch {
        onSkip(rel, 'broken symlink');
        continue;
      }
      if (!isInside(root, real)) {
        onSkip(rel, 'symlink leads outside the package root');
        continue;
      }
      let est: BigIntStats;
      try {
        est = await stat(real, { bigint: true });
      } catch (e) {
        onSkip(rel, (e as Error).message);
        continue;
      }
      if (est.isDirectory()) await visit(real, rel);
      else if (est.isFile()) out.push({ path: rel, absPath: real, stat: est });
      else onSkip(rel, 'not a regular file');
    }
    ancestors.delete(key);
  };
  await visit(root, '');
  out.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  return out;
}
