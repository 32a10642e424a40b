import type { DatabaseSync } from 'node:sqlite';
import type { Logger } from '../server/log.ts';
import { Catalogue } from './catalogue.ts';
import { HashCache } from './hash-cache.ts';
import { hashPlans } from './hash-plan.ts';
import type { ProgressRenderer } from './progress.ts';
import { finishPackage, planPackage, type PackagePlan } from './package.ts';
import { ContentError, type PackageInfo, type PackageSpec, type ScanProgress } from './types.ts';

export interface ScanOptions {
  /** The state database; the scan keeps its hashes in the `content_hashes` table. */
  db: DatabaseSync;
  logger: Logger;
  /** Hashing progress; `progress.ts` has a terminal bar and a log-line renderer. */
  onProgress?: (p: ScanProgress) => void;
  signal?: AbortSignal;
  /** First retry delay when a package breaks on a re-scan (see Catalogue.check). */
  retryMs?: number;
  /** Progress of the catalogue's later background re-hashes (see Catalogue.check). */
  progress?: () => ProgressRenderer;
  /**
   * Tell running daemons sharing the database that fresh hashes are there (they re-check their
   * packages). Default true, for `swarmboot content scan`; the daemon's own scans pass false.
   */
  announce?: boolean;
}

/**
 * Scans every package: lists files, reads WIM headers, hashes what the cache does not know (the
 * same size, mtime and inode as last time means the same hash). A package that cannot be used is
 * left out and reported in `catalogue.problems()` with its path and the fix; the others still work,
 * so one missing share does not stop the daemon. An id declared twice makes neither usable.
 */
export async function scanContent(specs: readonly PackageSpec[], opts: ScanOptions): Promise<Catalogue> {
  const log = opts.logger.bindings().component ? opts.logger : opts.logger.child({ component: 'content' });
  const cache = new HashCache(opts.db);
  const problems = new Map<string, string>();
  const plans: PackagePlan[] = [];
  const count = new Map<string, number>();
  for (const s of specs) count.set(s.id, (count.get(s.id) ?? 0) + 1);
  const started = Date.now();
  for (const spec of specs) {
    opts.signal?.throwIfAborted();
    if (count.get(spec.id)! > 1) {
      problems.set(spec.id, `package id "${spec.id}" is declared ${count.get(spec.id)} times`);
      continue;
    }
    try {
      plans.push(await planPackage(spec, (path, reason) => log.warn({ package: spec.id, path, reason }, 'content file skipped')));
    } catch (e) {
      const msg = e instanceof ContentError ? e.message : `package "${spec.id}" (${spec.path}): ${(e as Error).message}`;
      problems.set(spec.id, msg);
      log.error({ package: spec.id }, msg);
    }
  }
  const { hashed, filesHashed, bytesHashed } = await hashPlans(plans, { cache, onProgress: opts.onProgress, signal: opts.signal });
  const packages: PackageInfo[] = [];
  for (const plan of plans) {
    const info = finishPackage(plan, hashed);
    packages.push(info);
    log.debug({ package: info.id, files: info.files.length, bytes: info.totalSize, sha256: info.sha256 }, 'content package ready');
  }
  log.info(
    { packages: packages.length, problems: problems.size, filesHashed, bytesHashed, ms: Date.now() - started },
    'content scan finished',
  );
  if (opts.announce !== false) cache.announceScan();
  return new Catalogue(specs, packages, problems, {
    cache,
    logger: log,
    ...(opts.retryMs !== undefined ? { retryMs: opts.retryMs } : {}),
    ...(opts.progress ? { progress: opts.progress } : {}),
  });
}
