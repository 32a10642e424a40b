import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, statSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { tempDir } from '../helpers.ts';
import { DB_FILE, openDatabase } from '../../state/db.ts';
import { Checkpointer, type CheckpointResult } from '../../state/checkpointer.ts';
import { MachineStore } from '../../state/machines.ts';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, new Writable({ write(c, _e, cb) { for (const l of String(c).split('\n')) if (l) lines.push(JSON.parse(l)); cb(); } }));
  return { logger, lines };
}

const autoPages = (db: DatabaseSync) => Number((db.prepare('PRAGMA wal_autocheckpoint').get() as Record<string, unknown>).wal_autocheckpoint);

async function until<T>(what: string, f: () => T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('WAL checkpoints run in the worker: the daemon connection never checkpoints, the WAL is copied back, data intact', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const { logger } = capture();
  const db = openDatabase(dir);
  const results: CheckpointResult[] = [];
  const ck = Checkpointer.start(db, join(dir, DB_FILE), logger, { intervalMs: 50, onResult: (r) => results.push(r) });
  assert.equal(autoPages(db), 0, 'the daemon connection does not checkpoint by itself');
  const store = new MachineStore(db);
  // Well past SQLite's 1000-page automatic threshold: with it off, only the worker copies pages back.
  for (let i = 0; i < 30_000; i++) store.seen(`02:00:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, { firmware: 'bios' });
  store.flush();
  const frames = await until('a checkpoint of the whole WAL', () => {
    const r = results.at(-1);
    return r?.ok && r.log! > 1000 && r.checkpointed === r.log ? r.log : undefined;
  });
  assert.ok(frames > 1000, `the WAL held ${frames} frames, more than SQLite's automatic threshold`);
  assert.ok(results.every((r) => r.ok), JSON.stringify(results.filter((r) => !r.ok)));
  // Another connection reading only the main database file (WAL ignored) sees the rows: they were copied back.
  assert.ok(statSync(join(dir, DB_FILE)).size > 1_000_000, 'pages were written into the database file');
  await ck.stop();
  assert.equal(autoPages(db), 1000, 'after stop, SQLite checkpoints by itself again');
  assert.equal(store.list().length, 30_000);
  db.close();
  const again = openDatabase(dir);
  assert.equal(Number((again.prepare('SELECT COUNT(*) AS n FROM machines').get() as { n: number }).n), 30_000, 'every row is there after reopening');
  again.close();
});

test('a worker that dies hands checkpoints back to SQLite and says so', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const { logger, lines } = capture();
  const db = openDatabase(dir);
  const ck = Checkpointer.start(db, join(dir, DB_FILE), logger, { intervalMs: 50 });
  assert.equal(autoPages(db), 0);
  // What an out-of-memory or a crash of the worker looks like to the daemon.
  await (ck as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
  await until('the fallback', () => autoPages(db) === 1000);
  assert.ok(lines.some((l) => l.level === 40 && /checkpoint worker stopped/.test(String(l.msg))), 'a warning names the fallback');
  await ck.stop();
  db.close();
});

test('the checkpoint worker runs at the lowest CPU priority (nice 19), on its own thread only', { skip: process.platform !== 'linux' && 'per-thread nice is Linux' }, async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const db = openDatabase(dir);
  const ck = Checkpointer.start(db, join(dir, DB_FILE), capture().logger, { intervalMs: 50 });
  try {
    const th = await until('the worker to start', () => ck.thread);
    assert.ok(th.tid > 0 && th.tid !== process.pid, `worker thread id ${th.tid}`);
    assert.equal(th.nice, 19);
    // As the kernel sees it: field 19 of the thread's stat is its nice value; the process's main thread keeps its own.
    const nice = (tid: number) => Number(readFileSync(`/proc/${process.pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]);
    assert.equal(nice(th.tid), 19);
    assert.equal(nice(process.pid), (await import('node:os')).getPriority(0));
    assert.notEqual(nice(process.pid), 19);
  } finally {
    await ck.stop();
    db.close();
  }
});
