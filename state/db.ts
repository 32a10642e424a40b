/**
 * The embedded state database (Node's built-in node:sqlite): one file in the data directory, WAL
 * journal, synchronous=FULL so a committed write survives kill -9 and power loss alike (a lost
 * "done" would re-image a finished machine), and a busy timeout so a second process (the CLI while
 * the daemon runs) waits instead of failing. Each area creates its own tables idempotently.
 */
import { DatabaseSync } from 'node:sqlite';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export type { DatabaseSync };

export const DB_FILE = 'swarmboot.db';

export function openDatabase(dataDir: string, file = DB_FILE): DatabaseSync {
  mkdirSync(dataDir, { recursive: true });
  const db = new DatabaseSync(file === ':memory:' ? file : join(dataDir, file));
  db.exec('PRAGMA busy_timeout = 5000');
  db.exec('PRAGMA journal_mode = WAL');
  db.exec('PRAGMA synchronous = FULL');
  db.exec('PRAGMA foreign_keys = ON');
  return db;
}

/** Run `fn` in one write transaction (BEGIN IMMEDIATE: takes the write lock up front, no upgrade deadlock). */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE');
  try {
    const out = fn();
    db.exec('COMMIT');
    return out;
  } catch (e) {
    db.exec('ROLLBACK');
    throw e;
  }
}
