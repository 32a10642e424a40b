import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { FileStamp } from './hash.ts';

/**
 * SHA-256 results kept in the state database, keyed by absolute path. A row is valid only for the
 * exact (size, mtime_ns, ctime_ns, inode) it was computed for; anything else is a miss and the file
 * is hashed again. The device number is not stored: paths are absolute, and a file moved to
 * another device gets a new inode and ctime in practice.
 *
 * The same database carries a scan generation: `swarmboot content scan` bumps it when it finishes,
 * and a running daemon, which polls it, re-checks its packages then (finding the fresh hashes here,
 * so it hashes nothing twice).
 */
export class HashCache {
  private readonly getStmt: StatementSync;
  private readonly putStmt: StatementSync;
  private readonly delStmt: StatementSync;
  private readonly genStmt: StatementSync;
  private readonly bumpStmt: StatementSync;

  constructor(db: DatabaseSync) {
    db.exec(`CREATE TABLE IF NOT EXISTS content_hashes (
      path TEXT PRIMARY KEY,
      size INTEGER NOT NULL,
      mtime_ns INTEGER NOT NULL,
      inode INTEGER NOT NULL,
      sha256 TEXT NOT NULL,
      hashed_at INTEGER NOT NULL,
      ctime_ns INTEGER NOT NULL DEFAULT -1
    ) STRICT`);
    // Databases from before ctime was part of the stamp: their rows (ctime -1) never match, so each
    // file is hashed once more after the upgrade.
    const cols = db.prepare('SELECT name FROM pragma_table_info(?)').all('content_hashes') as Array<{ name: string }>;
    if (!cols.some((c) => c.name === 'ctime_ns')) db.exec('ALTER TABLE content_hashes ADD COLUMN ctime_ns INTEGER NOT NULL DEFAULT -1');
    db.exec('CREATE TABLE IF NOT EXISTS content_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT');
    this.getStmt = db.prepare('SELECT size, mtime_ns, ctime_ns, inode, sha256 FROM content_hashes WHERE path = ?');
    this.getStmt.setReadBigInts(true);
    this.putStmt = db.prepare(
      `INSERT INTO content_hashes (path, size, mtime_ns, ctime_ns, inode, sha256, hashed_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns,
         inode = excluded.inode, sha256 = excluded.sha256, hashed_at = excluded.hashed_at`,
    );
    this.delStmt = db.prepare('DELETE FROM content_hashes WHERE path = ?');
    this.genStmt = db.prepare("SELECT value FROM content_meta WHERE key = 'scan_generation'");
    this.bumpStmt = db.prepare(
      "INSERT INTO content_meta (key, value) VALUES ('scan_generation', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1",
    );
  }

  /** The cached hash when the file is unchanged since it was hashed, else undefined. */
  lookup(path: string, stamp: FileStamp): string | undefined {
    const row = this.getStmt.get(path) as { size: bigint; mtime_ns: bigint; ctime_ns: bigint; inode: bigint; sha256: string } | undefined;
    if (!row) return undefined;
    if (row.size !== BigInt(stamp.size) || row.mtime_ns !== stamp.mtimeNs || row.ctime_ns !== stamp.ctimeNs || row.inode !== toInt64(stamp.ino)) {
      return undefined;
    }
    return row.sha256;
  }

  store(path: string, stamp: FileStamp, sha256: string): void {
    this.putStmt.run(path, BigInt(stamp.size), stamp.mtimeNs, stamp.ctimeNs, toInt64(stamp.ino), sha256, BigInt(Date.now()));
  }

  forget(path: string): void {
    this.delStmt.run(path);
  }

  /** How many announced scans have finished (0 when none ever did). */
  scanGeneration(): number {
    const row = this.genStmt.get() as { value: number } | undefined;
    return row?.value ?? 0;
  }

  /** Tells running daemons that a scan has finished and the hashes here are fresh. */
  announceScan(): void {
    this.bumpStmt.run();
  }
}

/** SQLite integers are signed 64-bit; inode numbers are unsigned. Wrap rather than fail. */
function toInt64(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}
