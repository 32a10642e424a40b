/**
 * Config checks that need the content itself, found by reading the WIM's header and XML (cheap: no
 * hashing): an `apply-image` step naming an image its WIM does not have is a config error, and so
 * is a step naming none when the WIM holds several (which edition would it apply?). A single-image
 * WIM needs no `image`: index 1 is used. A WIM that is not on disk yet is not an error here
 * (content may arrive after the config); it is reported by the content scan.
 */
import { existsSync } from 'node:fs';
import { readWimInfo, selectImage } from '../content/wim.ts';
import type { WimInfo } from '../content/types.ts';
import { ConfigError, loadConfig, type LoadedConfig } from './load.ts';
import { formatPath, type ConfigIssue } from './yaml-source.ts';

export async function checkContentRefs(cfg: LoadedConfig, readWim: (path: string) => Promise<WimInfo> = readWimInfo): Promise<ConfigIssue[]> {
  const issues: ConfigIssue[] = [];
  const wims = new Map<string, Promise<WimInfo | Error>>();
  for (const seq of Object.values(cfg.sequences)) {
    for (const [i, step] of seq.steps.entries()) {
      if (step.type !== 'apply-image') continue;
      const pkg = cfg.packages[step.package];
      if (!pkg || pkg.kind !== 'wim' || !existsSync(pkg.path)) continue;
      if (!wims.has(pkg.path)) wims.set(pkg.path, readWim(pkg.path).catch((e: Error) => e));
      const info = await wims.get(pkg.path)!;
      const path = ['sequences', seq.name, 'steps', i, 'image'];
      const stepPath = ['sequences', seq.name, 'steps', i];
      if (info instanceof Error) {
        issues.push({ ...cfg.locate(['packages', pkg.id, 'path']), key: formatPath(['packages', pkg.id, 'path']), message: `${pkg.path} is not a readable WIM: ${info.message}` });
        continue;
      }
      if (step.image === undefined) {
        if (info.images.length !== 1) {
          const list = info.images.map((img) => `${img.index} "${img.name}"`).join(', ');
          issues.push({
            ...cfg.locate(stepPath),
            key: formatPath(path),
            message: info.images.length
              ? `package "${pkg.id}" has ${info.images.length} images and the step names none; add image: with an index or name: ${list}`
              : `package "${pkg.id}" holds no images`,
          });
        }
        continue;
      }
      try {
        selectImage(info.images, step.image, `package "${pkg.id}"`);
      } catch (e) {
        issues.push({ ...cfg.locate(path), key: formatPath(path), message: (e as Error).message });
      }
    }
  }
  const seen = new Set<string>();
  return issues.filter((x) => (seen.has(x.key + x.message) ? false : (seen.add(x.key + x.message), true)));
}

/** loadConfig plus the content checks: what check-config, the daemon's start and its reloads use. */
export async function loadConfigChecked(file: string): Promise<LoadedConfig> {
  const cfg = loadConfig(file);
  const issues = await checkContentRefs(cfg);
  if (issues.length) throw new ConfigError(issues);
  return cfg;
}
