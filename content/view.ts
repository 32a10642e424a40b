/** The catalogue seen through boot/'s ContentView: what sequence resolution needs, nothing more. */
import type { ContentView } from '../boot/sequence.ts';
import type { Catalogue } from './catalogue.ts';

export function contentView(cat: Catalogue | undefined, scanning: boolean): ContentView {
  return {
    unavailable(id) {
      const problem = cat?.problems().get(id);
      if (problem) return problem;
      if (scanning) return 'content is being scanned and hashed; try again shortly';
      return 'not in the catalogue; run `swarmboot content scan` to see why';
    },
    lookup(id) {
      const p = cat?.get(id);
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
    driversFor(model) {
      return cat?.driversForModel(model)[0]?.package.id;
    },
  };
}
