/** The content store's public surface, for the daemon and the CLI. */
export { Catalogue, type DriverMatch } from './catalogue.ts';
export { HashCache } from './hash-cache.ts';
export { hashFile, type HashResult } from './hash.ts';
export { joinModels, normaliseModel, splitModels } from './models.ts';
export { manifestText } from './package.ts';
export { barRenderer, createProgressRenderer, lineRenderer, type ProgressRenderer } from './progress.ts';
export { scanContent, type ScanOptions } from './scan.ts';
export { ContentError } from './types.ts';
export type { FileEntry, PackageInfo, PackageKind, PackageSpec, ScanProgress, WimImage, WimInfo } from './types.ts';
export { readWimInfo, selectImage, WimError } from './wim.ts';
export { PackageWatcher, watchTargets } from './watch.ts';
