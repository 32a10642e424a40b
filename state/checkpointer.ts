/**
 * WAL checkpoints off the event loop. SQLite normally checkpoints inside whichever commit pushes the
 * WAL past 1000 pages: copying those pages into the database file and two fsyncs, 8–16 ms on this
 * kind of disk, spent on the thread that answers DHCP and TFTP. A PXE storm of new machines (each
 * one a sighting written behind, state/machines.ts) made that a stall every few hundred
 * milliseconds. Here a worker thread with its own connection runs a PASSIVE checkpoint (never
 * blocks readers or the writer) once a second, and the daemon's connection stops checkpointing by
 * itself. If the worker fails, the connection goes back to SQLite's automatic checkpoints, so the
 * WAL can never grow without bound. The worker costs about 20 MB of RSS (a V8 isolate).
 *
 * The worker's thread runs at the lowest CPU priority (nice 19; Linux sets it per thread): a
 * checkpoint is background work, and on a busy core (or a daemon confined to one) the scheduler
 * would otherwise share the core half and half while it copies pages, delaying DHCP answers.
 */
import { Worker } from 'node:worker_threads';
import type { DatabaseSync } from 'node:sqlite';
import type { Logger } from '../server/log.ts';

/** SQLite's own default, restored when the worker is gone. */
const AUTO_CHECKPOINT_PAGES = 1000;

// CommonJS, evaluated: no file to find next to the compiled module, the same in src and dist.
const WORKER_SOURCE = `
const { DatabaseSync } = require('node:sqlite');
const { parentPort, workerData } = require('node:worker_threads');
let tid = 0, nice = null;
try {
  // /proc/thread-self names this thread; setpriority on a thread id renices that thread only.
  tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
  require('node:os').setPriority(tid, 19);
  nice = require('node:os').getPriority(tid);
} catch {}
parentPort.postMessage({ started: true, tid, nice });
const db = new DatabaseSync(workerData.file);
db.exec('PRAGMA busy_timeout = 5000');
db.exec('PRAGMA synchronous = FULL');
const st = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
let last = -1;
function run() {
  try {
    const t = performance.now();
    const r = st.get();
    // log: WAL frames; checkpointed: copied into the database. Nothing new since the last one: quiet.
    if (r.log !== last || r.checkpointed !== r.log) parentPort.postMessage({ ok: true, log: r.log, checkpointed: r.checkpointed, busy: r.busy, ms: performance.now() - t });
    last = r.log;
  } catch (e) {
    parentPort.postMessage({ ok: false, error: String(e && e.message || e) });
  }
}
const timer = setInterval(run, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m === 'stop') { clearInterval(timer); run(); db.close(); parentPort.close(); }
});
`;

export interface CheckpointResult {
  ok: boolean;
  log?: number;
  checkpointed?: number;
  busy?: number;
  ms?: number;
  error?: string;
}

export class Checkpointer {
  private readonly worker: Worker;
  private readonly db: DatabaseSync;
  private readonly log: Logger;
  private stopped = false;
  private failed = false;
  /** The worker's thread id and its nice value once it started (null: not Linux, or refused). */
  thread: { tid: number; nice: number | null } | undefined;
  /** The last checkpoint the worker reported (for metrics and tests). */
  last: CheckpointResult | undefined;
  checkpoints = 0;

  private constructor(db: DatabaseSync, file: string, log: Logger, intervalMs: number, onResult?: (r: CheckpointResult) => void) {
    this.db = db;
    this.log = log;
    db.exec('PRAGMA wal_autocheckpoint = 0');
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file, intervalMs }, name: 'sqlite-checkpoint' });
    this.worker.unref();
    this.worker.on('message', (r: CheckpointResult | { started: true; tid: number; nice: number | null }) => {
      if ('started' in r) {
        this.thread = { tid: r.tid, nice: r.nice };
        return;
      }
      this.last = r;
      onResult?.(r);
      if (r.ok) {
        this.checkpoints++;
        if ((r.ms ?? 0) > 1000) this.log.info({ frames: r.log, ms: Math.round(r.ms!) }, 'slow WAL checkpoint (off the event loop)');
      } else {
        this.log.warn({ err: r.error }, 'WAL checkpoint failed; retrying next second');
      }
    });
    this.worker.on('error', (e) => this.fallBack(e.message));
    this.worker.on('exit', (code) => {
      if (!this.stopped) this.fallBack(`worker exited with code ${code}`);
    });
  }

  /** Checkpoints for the database file `file`, which `db` (the daemon's connection) has open. */
  static start(db: DatabaseSync, file: string, log: Logger, opts: { intervalMs?: number; onResult?: (r: CheckpointResult) => void } = {}): Checkpointer {
    return new Checkpointer(db, file, log.child({ component: 'state' }), opts.intervalMs ?? 1000, opts.onResult);
  }

  private fallBack(why: string): void {
    if (this.failed || this.stopped) return;
    this.failed = true;
    try {
      this.db.exec(`PRAGMA wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
    } catch {
      // the database is closing
    }
    this.log.warn({ err: why }, 'WAL checkpoint worker stopped; SQLite checkpoints on the event loop again');
  }

  /** Stop the worker after a last checkpoint; the daemon's connection checkpoints again by itself. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      this.db.exec(`PRAGMA wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
    } catch {
      // the database is already closed
    }
    if (this.failed) return;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage('stop');
    const t = setTimeout(() => void this.worker.terminate(), 5000);
    await exited;
    clearTimeout(t);
  }
}
