/**
 * One package from spec to `PackageInfo`, in two halves around hashing: `planPackage` looks at the
 * disk (kind rules, file list, WIM header), `finishPackage` assembles the result once every file has
 * a hash. The scan runs the halves for all packages so it can show one progress total.
 */
import { open, realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute } from 'node:path';
import { sameStamp, sha256Hex, stampOf, type FileStamp } from './hash.ts';
import { compileModel } from './models.ts';
import { ContentError, type FileEntry, type PackageInfo, type PackageSpec, type WimInfo } from './types.ts';
import { walkFolder, type WalkEntry } from './walk.ts';
import { readWimInfo, selectImage } from './wim.ts';

/** Package ids appear as one URL path segment and in log lines: keep them plain. */
export const PACKAGE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface PackagePlan {
  spec: PackageSpec;
  single: boolean;
  root: string;
  entries: WalkEntry[];
  /** Directories the entries were found in (symlink-free), for change watching. */
  dirs: string[];
  wim?: WimInfo;
  /** Drivers archives: the format the first bytes say. */
  archive?: DriverArchive;
}

export type DriverArchive = 'zip' | 'cab';

export interface HashedFile {
  sha256: string;
  stamp: FileStamp;
}

function fail(spec: PackageSpec, msg: string): never {
  throw new ContentError(`package "${spec.id}" (${spec.kind}, ${spec.path}): ${msg}`, spec.id);
}

export async function planPackage(spec: PackageSpec, onSkip: (path: string, reason: string) => void): Promise<PackagePlan> {
  if (!PACKAGE_ID.test(spec.id)) {
    throw new ContentError(`package id "${spec.id}" must be 1-64 of A-Z a-z 0-9 . _ - and start with a letter or digit`, spec.id);
  }
  if (!isAbsolute(spec.path)) fail(spec, 'path must be absolute');
  if (spec.image !== undefined && spec.kind !== 'wim') fail(spec, '"image" applies only to wim packages');
  if (spec.models !== undefined && spec.kind !== 'drivers') fail(spec, '"models" applies only to drivers packages');
  if (spec.models?.some((m) => compileModel(m).text === '' && !m.trim().endsWith('*'))) fail(spec, 'a model name is empty');

  let real: string;
  try {
    real = await realpath(spec.path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    fail(spec, code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (e as Error).message})`);
  }
  const st = await stat(real, { bigint: true });
  const isDir = st.isDirectory();
  if (!isDir && !st.isFile()) fail(spec, 'is neither a regular file nor a directory');
  if ((spec.kind === 'wim' || spec.kind === 'file') && isDir) fail(spec, `a ${spec.kind} package must be a file, this is a directory`);
  if (spec.kind === 'folder' && !isDir) fail(spec, 'a folder package must be a directory, this is a file');

  if (!isDir) {
    const plan: PackagePlan = {
      spec,
      single: true,
      root: dirname(real),
      entries: [{ path: basename(spec.path), absPath: real, stat: st }],
      dirs: [dirname(real)],
    };
    if (spec.kind === 'drivers') {
      const head = await readHead(real, 8);
      const format = archiveFormat(head);
      if (typeof format !== 'string') fail(spec, format.problem);
      plan.archive = format;
    }
    if (spec.kind === 'wim') {
      try {
        plan.wim = await readWimInfo(real);
      } catch (e) {
        fail(spec, (e as Error).message);
      }
      if (spec.image !== undefined) {
        try {
          selectImage(plan.wim.images, spec.image);
        } catch (e) {
          fail(spec, (e as Error).message);
        }
      }
    }
    return plan;
  }
  const dirs = new Set<string>();
  const entries = await walkFolder(real, onSkip, (d) => dirs.add(d));
  if (entries.length === 0) fail(spec, 'the directory holds no files');
  if (spec.kind === 'drivers' && !entries.some((e) => /\.inf$/i.test(e.path))) {
    // DISM /Add-Driver /Recurse and pnputil find drivers by their INF files: without one, the
    // step would "succeed" and install nothing.
    fail(spec, 'the drivers folder holds no .inf files (unpack vendor archives or self-extracting packs into it first)');
  }
  return { spec, single: false, root: real, entries, dirs: [...dirs] };
}

async function readHead(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/**
 * A drivers archive must be one that Windows PE unpacks with its own tools: a cabinet (`expand -F:*`)
 * or a zip (`tar -xf`, or PowerShell's Expand-Archive). Anything else is refused by its magic
 * bytes, whatever the file is named, with what it looks like instead.
 */
export function archiveFormat(head: Buffer): DriverArchive | { problem: string } {
  const hex = head.toString('hex');
  if (/^504b(0304|0506|0708)/.test(hex)) return 'zip';
  if (hex.startsWith('4d53434600000000')) return 'cab';
  const why = 'a drivers package that is a file must be a .zip or .cab archive (or a folder of INF drivers)';
  if (hex.startsWith('377abcaf271c')) return { problem: `is a 7z archive, which Windows PE cannot unpack by itself; ${why}` };
  if (hex.startsWith('4d5a')) return { problem: `is a Windows executable (a self-extracting vendor pack?); unpack it into a folder: ${why}` };
  if (hex.startsWith('1f8b')) return { problem: `is a gzip file; ${why}` };
  if (hex.startsWith('526172211a07')) return { problem: `is a RAR archive; ${why}` };
  if (head.length === 0) return { problem: `is empty; ${why}` };
  return { problem: `is not a zip or cab archive (it starts with ${hex.slice(0, 16)}); ${why}` };
}

export function finishPackage(plan: PackagePlan, hashed: ReadonlyMap<string, HashedFile>): PackageInfo {
  const files: FileEntry[] = plan.entries.map((e) => {
    const h = hashed.get(e.absPath);
    if (!h) throw new Error(`internal: no hash for ${e.absPath}`);
    return { path: e.path, absPath: e.absPath, ...h.stamp, sha256: h.sha256 };
  });
  const { spec } = plan;
  const info: PackageInfo = {
    id: spec.id,
    kind: spec.kind,
    path: spec.path,
    single: plan.single,
    root: plan.root,
    files,
    totalSize: files.reduce((n, f) => n + f.size, 0),
    dirs: plan.dirs,
    sha256: plan.single ? files[0]!.sha256 : sha256Hex(manifestText(files)),
  };
  if (plan.wim) {
    info.wim = plan.wim;
    if (spec.image !== undefined) info.defaultImage = selectImage(plan.wim.images, spec.image);
  }
  if (spec.kind === 'drivers') {
    info.models = [...(spec.models ?? [])];
    if (!plan.single) info.infs = files.filter((f) => /\.inf$/i.test(f.path)).map((f) => f.path);
    if (plan.archive) info.archive = plan.archive;
  }
  return info;
}

/**
 * The manifest a folder package's SHA-256 is computed over: exactly what
 * `cd ROOT && find . -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 sha256sum` prints, so
 * `sha256sum -c` checks a copy and `… | sha256sum` reproduces the package hash.
 */
export function manifestText(files: readonly Pick<FileEntry, 'path' | 'sha256'>[]): string {
  return files.map((f) => `${f.sha256}  ${f.path}\n`).join('');
}

export function stampFromEntry(e: WalkEntry): FileStamp {
  return stampOf(e.stat);
}

/**
 * True when a fresh plan finds the package exactly as `info` describes it: same root, same files
 * at the same paths, each with the same stamp. Then nothing needs hashing and nothing changed.
 */
export function planMatches(info: PackageInfo, plan: PackagePlan): boolean {
  if (info.root !== plan.root || info.files.length !== plan.entries.length) return false;
  return plan.entries.every((e, i) => {
    const f = info.files[i]!;
    return f.path === e.path && f.absPath === e.absPath && sameStamp(f, stampOf(e.stat));
  });
}
