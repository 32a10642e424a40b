/** The catalogue seen through boot/'s ContentView: what sequence resolution needs, nothing more. */
import type { ContentView } from '../boot/sequence.ts';
import type { Catalogue } from './catalogue.ts';

/**
 * Packages come through `Catalogue.fresh`: one that changed on disk and is being re-hashed is
 * unavailable (the sequence answers 503 saying so) until its new size and SHA-256 are known, so a
 * sequence never carries a hash that the bytes behind its URL no longer have.
 */
export function contentView(cat: Catalogue | undefined, scanning: boolean): ContentView {
  return {
    unavailable(id) {
      const stale = cat?.staleness(id);
      if (stale) return stale;
      const problem = cat?.problems().get(id);
      if (problem) return problem;
      if (scanning) return 'content is being scanned and hashed; try again shortly';
      return 'not in the catalogue; run `swarmboot content scan` to see why';
    },
    lookup(id) {
      const p = cat?.fresh(id);
      if (!p) return undefined;
      return { id: p.id, kind: p.kind, size: p.totalSize, sha256: p.sha256, files: p.files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256 })) };
    },
    resolveImage(id, ref) {
      if (!cat) return { error: `package "${id}" is not available yet (content is being scanned)` };
      try {
        const img = cat.resolveImage(id, ref);
        return { index: img.index, name: img.name };
      } catch (e) {
        return { error: (e as Error).message };
      }
    },
    /** `model`: one SMBIOS string, several, or several joined by `joinModels` (content/models.ts). */
    driversFor(model: string | readonly string[]) {
      return cat?.driversForModel(model)[0]?.package.id;
    },
  };
}
