/**
 * Plain types at the content store's boundary. The lead maps the YAML config to `PackageSpec[]`;
 * everything the store learns from the disk comes back as `PackageInfo`.
 */

export type PackageKind = 'wim' | 'drivers' | 'boot' | 'file' | 'folder';

/** One content package as declared by the admin. */
export interface PackageSpec {
  id: string;
  kind: PackageKind;
  /**
   * Absolute path. `wim` and `file`: a regular file. `folder`: a directory. `drivers`: a directory
   * holding INF drivers, or one .zip or .cab archive. `boot`: a file or a directory.
   */
  path: string;
  /** `wim` only: the image a step gets when it names none, by 1-based index or by name. */
  image?: number | string;
  /** `drivers` only: SMBIOS model strings this package serves; a trailing `*` makes a prefix. */
  models?: string[];
}

/** One file of a package, as hashed. */
export interface FileEntry {
  /** Path inside the package, `/`-separated, no leading slash; for a single-file package its base name. */
  path: string;
  /** Absolute, symlink-free path on disk (inside the package root). */
  absPath: string;
  size: number;
  /** Nanoseconds since the epoch, from stat (bigint so it survives the round trip to SQLite). */
  mtimeNs: bigint;
  /** See FileStamp: an in-place rewrite with the old mtime put back still moves ctime. */
  ctimeNs: bigint;
  ino: bigint;
  dev: bigint;
  /** Lowercase hex SHA-256 of the content. */
  sha256: string;
}

/** One image inside a WIM, from the header and the XML resource. */
export interface WimImage {
  /** 1-based, as wimlib and DISM count. */
  index: number;
  name: string;
  description?: string;
  displayName?: string;
  /** `<WINDOWS><EDITIONID>`, e.g. `Professional`. */
  edition?: string;
  /** `<FLAGS>`, e.g. `Professional` (DISM shows it as the edition flag). */
  flags?: string;
  /** `<TOTALBYTES>`: the image's expanded size. */
  totalBytes: number;
  dirCount?: number;
  fileCount?: number;
  /** `<WINDOWS><ARCH>` mapped: 0 x86, 5 arm, 6 ia64, 9 x64, 12 arm64. */
  arch?: string;
  /** `<WINDOWS><VERSION>` as `major.minor.build.spbuild`. */
  windowsVersion?: string;
  languages?: string[];
  /** `<CREATIONTIME>` as an ISO string, when present. */
  created?: string;
}

/** What the WIM header says about the file as a whole. */
export interface WimInfo {
  /** Header version, e.g. 0x10d00. */
  version: number;
  flags: number;
  compression: 'none' | 'xpress' | 'lzx' | 'lzms' | 'unknown';
  chunkSize: number;
  guid: string;
  partNumber: number;
  totalParts: number;
  /** 0 when no image is bootable. */
  bootIndex: number;
  images: WimImage[];
}

/** A package after scanning: what the HTTP side serves and what sequences refer to. */
export interface PackageInfo {
  id: string;
  kind: PackageKind;
  /** The configured path (file or directory). */
  path: string;
  /** True when the package is one file (`/content/<id>/<basename>`). */
  single: boolean;
  /** Directory the files live under (the file's directory for a single-file package). */
  root: string;
  /** Sorted by path (byte order of the UTF-8 encoding). */
  files: FileEntry[];
  totalSize: number;
  /**
   * Package identity. A single file: the file's SHA-256. A directory: the SHA-256 of its manifest,
   * `sha256sum` output lines `<hex>  <path>\n` sorted by path in byte order (see `manifestText`).
   */
  sha256: string;
  /** `wim` only. */
  wim?: WimInfo;
  /** `wim` only: the configured default image, resolved. */
  defaultImage?: WimImage;
  /** `drivers` only: the configured model list, as given. */
  models?: string[];
  /** `drivers` folders: the INF files found (paths inside the package). */
  infs?: string[];
  /** `drivers` archives: the format, from the file's first bytes. */
  archive?: 'zip' | 'cab';
  /** Directories the files were found in (absolute, symlink-free): what change watching covers. */
  dirs: string[];
}

/** Progress of a scan, for the renderers in `progress.ts`. */
export interface ScanProgress {
  /** Package and file being hashed. */
  packageId: string;
  file: string;
  fileBytesDone: number;
  fileBytesTotal: number;
  /** Over every file that needs hashing in this scan (cached files excluded). */
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
  /** True on the last event of the scan. */
  finished: boolean;
}

/** A failure that names what is wrong in words an admin can act on. */
export class ContentError extends Error {
  override readonly name = 'ContentError';
  readonly packageId: string | undefined;
  constructor(message: string, packageId?: string) {
    super(message);
    this.packageId = packageId;
  }
}
