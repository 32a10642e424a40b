import { hashFile } from './hash.ts';
import type { HashCache } from './hash-cache.ts';
import { stampFromEntry, type HashedFile, type PackagePlan } from './package.ts';
import type { ScanProgress } from './types.ts';

export interface HashPlanOptions {
  cache: HashCache;
  onProgress?: ((p: ScanProgress) => void) | undefined;
  signal?: AbortSignal | undefined;
}

export interface HashPlanResult {
  hashed: Map<string, HashedFile>;
  /** Files actually read (cache misses) and their bytes. */
  filesHashed: number;
  bytesHashed: number;
}

/**
 * Hashes every file of the plans that the cache does not already know for its exact stamp, one
 * file at a time (sequential reads are what disks like), and records the results. A file shared by
 * two packages is hashed once.
 */
export async function hashPlans(plans: readonly PackagePlan[], opts: HashPlanOptions): Promise<HashPlanResult> {
  const hashed = new Map<string, HashedFile>();
  const todo: Array<{ packageId: string; path: string; absPath: string; size: number }> = [];
  const queued = new Set<string>();
  for (const plan of plans) {
    for (const e of plan.entries) {
      if (hashed.has(e.absPath) || queued.has(e.absPath)) continue;
      const stamp = stampFromEntry(e);
      const sha256 = opts.cache.lookup(e.absPath, stamp);
      if (sha256) hashed.set(e.absPath, { sha256, stamp });
      else {
        queued.add(e.absPath);
        todo.push({ packageId: plan.spec.id, path: e.path, absPath: e.absPath, size: stamp.size });
      }
    }
  }
  const bytesTotal = todo.reduce((n, t) => n + t.size, 0);
  let bytesBefore = 0;
  let filesDone = 0;
  for (const t of todo) {
    opts.signal?.throwIfAborted();
    const r = await hashFile(t.absPath, {
      signal: opts.signal,
      onProgress: (done, total) =>
        opts.onProgress?.({
          packageId: t.packageId,
          file: t.path,
          fileBytesDone: done,
          fileBytesTotal: total,
          bytesDone: bytesBefore + done,
          // A file that grew since the listing must not push the bar past 100 %.
          bytesTotal: Math.max(bytesTotal, bytesBefore + total),
          filesDone,
          filesTotal: todo.length,
          finished: false,
        }),
    });
    opts.cache.store(t.absPath, r.stamp, r.sha256);
    hashed.set(t.absPath, r);
    bytesBefore += r.stamp.size;
    filesDone++;
  }
  if (todo.length) {
    const last = todo[todo.length - 1]!;
    opts.onProgress?.({
      packageId: last.packageId,
      file: last.path,
      fileBytesDone: last.size,
      fileBytesTotal: last.size,
      bytesDone: bytesBefore,
      bytesTotal: Math.max(bytesTotal, bytesBefore),
      filesDone,
      filesTotal: todo.length,
      finished: true,
    });
  }
  return { hashed, filesHashed: todo.length, bytesHashed: bytesBefore };
}
