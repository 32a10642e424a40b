/**
 * Per-machine state: when it was seen, what it is, its current deployment and its event history.
 * Every change is one transaction; reads are plain. The deployment logic itself is pure (boot/);
 * this module only stores what it decided.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { transaction } from './db.ts';
import { MacSet } from './mac-set.ts';
import type { DeploymentRecord, DeploymentState } from '../boot/deployment.ts';

export interface MachineRow {
  mac: string;
  uuid: string | null;
  firstSeen: string | null;
  lastSeen: string | null;
  firmware: string | null;
  ip: string | null;
  model: string | null;
  deploymentKey: string | null;
  sequence: string | null;
  state: DeploymentState | null;
  generation: number;
  step: number | null;
  stepTotal: number | null;
  percent: number | null;
  resume: 'local' | 'pxe' | null;
  message: string | null;
  stateChangedAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface EventRow {
  id: number;
  at: string;
  generation: number | null;
  type: string;
  step: number | null;
  percent: number | null;
  message: string | null;
  state: string | null;
}

export interface SeenFacts {
  uuid?: string;
  firmware?: string;
  ip?: string;
  model?: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS machines (
  mac TEXT PRIMARY KEY,
  uuid TEXT,
  first_seen TEXT,
  last_seen TEXT,
  firmware TEXT,
  ip TEXT,
  model TEXT,
  deployment_key TEXT,
  sequence TEXT,
  state TEXT CHECK (state IS NULL OR state IN ('pending','booting','running','done','failed')),
  generation INTEGER NOT NULL DEFAULT 0,
  step INTEGER,
  step_total INTEGER,
  percent REAL,
  resume TEXT,
  message TEXT,
  state_changed_at TEXT,
  started_at TEXT,
  finished_at TEXT
);
CREATE TABLE IF NOT EXISTS machine_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  mac TEXT NOT NULL,
  at TEXT NOT NULL,
  generation INTEGER,
  type TEXT NOT NULL,
  step INTEGER,
  percent REAL,
  message TEXT,
  state TEXT
);
CREATE INDEX IF NOT EXISTS machine_events_mac ON machine_events (mac, id);
`;

type Row = Record<string, string | number | null>;

function toMachine(r: Row): MachineRow {
  return {
    mac: r.mac as string,
    uuid: r.uuid as string | null,
    firstSeen: r.first_seen as string | null,
    lastSeen: r.last_seen as string | null,
    firmware: r.firmware as string | null,
    ip: r.ip as string | null,
    model: r.model as string | null,
    deploymentKey: r.deployment_key as string | null,
    sequence: r.sequence as string | null,
    state: r.state as DeploymentState | null,
    generation: Number(r.generation ?? 0),
    step: r.step as number | null,
    stepTotal: r.step_total as number | null,
    percent: r.percent as number | null,
    resume: r.resume as 'local' | 'pxe' | null,
    message: r.message as string | null,
    stateChangedAt: r.state_changed_at as string | null,
    startedAt: r.started_at as string | null,
    finishedAt: r.finished_at as string | null,
  };
}

export function deploymentOf(m: MachineRow | undefined): DeploymentRecord | undefined {
  if (!m) return undefined;
  return { deploymentKey: m.deploymentKey, sequence: m.sequence, state: m.state, generation: m.generation, step: m.step, resume: m.resume };
}

/** Sightings are written at most this long after they happen, or when this many are waiting. */
const SEEN_FLUSH_MS = 20;
const SEEN_BATCH = 500;
/**
 * Sightings per upsert statement. One statement per row spent about as much in the call and its
 * binding as SQLite spent writing the row; with many rows per statement that share goes away
 * (a flush of 500 went from about 2.5 to 1.6 µs a row). SEEN_BATCH is a multiple, so a storm's
 * full batch is two statements bound straight from seenRows; a smaller flush adds at most one
 * statement per power of two below SEEN_CHUNK (writeSeen). Larger chunks measured no better.
 */
const SEEN_CHUNK = 250;
/** Values bound per sighting, in the column order of upsertSeen: mac, uuid, first_seen, last_seen, firmware, ip, model. */
const SEEN_COLS = 7;
/** How often a lookup checks whether another process changed the database (state/machines.ts `known`). */
const KNOWN_RECHECK_MS = 100;
const KNOWN_MAX = 500_000;

export class MachineStore {
  private readonly db: DatabaseSync;
  private readonly now: () => Date;

  constructor(db: DatabaseSync, now?: () => Date) {
    this.db = db;
    this.now = now ?? (() => new Date());
    this.realClock = !now;
    db.exec(SCHEMA);
  }

  private readonly statements = new Map<string, StatementSync>();
  /**
   * Pending sightings: the MAC's row number in `seenRows`, which holds each row as the values its
   * upsert binds (the latest time as first and last seen, every fact seen since the last write),
   * SEEN_CHUNK rows per array. A sighting allocates nothing but its map entry, and a full chunk is
   * bound as it is.
   */
  private readonly pendingSeen = new Map<string, number>();
  private readonly seenRows: Array<Array<string | null>> = [];
  /** The upsert of n sightings, by n (SEEN_CHUNK and the powers of two below it). */
  private readonly seenUpserts: StatementSync[] = [];
  private readonly realClock: boolean;
  private isoMs = -1;
  private iso = '';
  private flushTimer: NodeJS.Timeout | undefined;

  /** Prepared once per SQL text: DHCP and TFTP call seen() on every packet burst. */
  private q(sql: string): StatementSync {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  private ts(): string {
    if (!this.realClock) return this.now().toISOString();
    // One string per millisecond, not per sighting: a storm of DISCOVERs shares them.
    const ms = Date.now();
    if (ms !== this.isoMs) {
      this.isoMs = ms;
      this.iso = new Date(ms).toISOString();
    }
    return this.iso;
  }

  get(mac: string): MachineRow | undefined {
    if (this.pendingSeen.has(mac)) this.flush();
    else if (this.knownAbsent(mac)) return undefined;
    return this.row(mac);
  }

  /**
   * The MACs that have a row, so that looking up a machine never seen before (every DISCOVER of a
   * PXE storm of new machines) costs no query. This process creates every row it writes through
   * this class and rows are never deleted; a row another process (a script on the same database)
   * creates is noticed through SQLite's data_version, checked at most every `KNOWN_RECHECK_MS`,
   * and then the set is rebuilt. Past `KNOWN_MAX` machines the set is dropped and every lookup
   * queries.
   */
  private known: MacSet | undefined;
  private knownDisabled = false;
  private dataVersion = -1;
  private knownCheckedAt = 0;

  /** True only when `mac` certainly has no row. */
  private knownAbsent(mac: string): boolean {
    if (this.knownDisabled) return false;
    const t = performance.now();
    if (t - this.knownCheckedAt >= KNOWN_RECHECK_MS || !this.known) {
      this.knownCheckedAt = t;
      const v = Number((this.q('PRAGMA data_version').get() as Row).data_version);
      if (v !== this.dataVersion || !this.known) {
        this.dataVersion = v;
        const known = new MacSet();
        for (const r of this.q('SELECT mac FROM machines').iterate() as Iterable<Row>) known.add(r.mac as string);
        for (const m of this.pendingSeen.keys()) known.add(m);
        this.known = known;
      }
    }
    if (this.known!.size > KNOWN_MAX) {
      this.known = undefined;
      this.knownDisabled = true;
      return false;
    }
    return !this.known!.has(mac);
  }

  /** The stored row, pending sightings aside (safe inside a transaction). */
  private row(mac: string): MachineRow | undefined {
    const r = this.q('SELECT * FROM machines WHERE mac = ?').get(mac) as Row | undefined;
    return r ? toMachine(r) : undefined;
  }

  list(): MachineRow[] {
    this.flush();
    return (this.q('SELECT * FROM machines ORDER BY mac').all() as Row[]).map(toMachine);
  }

  countByState(): Array<{ state: string; count: number }> {
    this.flush();
    const rows = this.q("SELECT COALESCE(state, 'none') AS state, COUNT(*) AS n FROM machines GROUP BY 1").all() as Row[];
    return rows.map((r) => ({ state: String(r.state), count: Number(r.n) }));
  }

  /** The latest `limit` events (oldest first), or those before event id `before`. */
  events(mac: string, limit = 200, before?: number): EventRow[] {
    const rows = (
      before === undefined
        ? this.q('SELECT * FROM machine_events WHERE mac = ? ORDER BY id DESC LIMIT ?').all(mac, limit)
        : this.q('SELECT * FROM machine_events WHERE mac = ? AND id < ? ORDER BY id DESC LIMIT ?').all(mac, before, limit)
    ) as Row[];
    return rows.reverse().map((r) => ({
      id: Number(r.id),
      at: r.at as string,
      generation: r.generation as number | null,
      type: r.type as string,
      step: r.step as number | null,
      percent: r.percent as number | null,
      message: r.message as string | null,
      state: r.state as string | null,
    }));
  }

  /**
   * Record that the machine was seen (DHCP, TFTP, HTTP), creating it on first contact. Written
   * behind: sightings are gathered for up to `SEEN_FLUSH_MS` and written in one transaction that
   * does not wait for the disk (synchronous=NORMAL). A PXE storm of new machines would otherwise
   * cost a write, and an fsync, per DISCOVER on the event loop. A crash loses at most the last
   * moment's sightings; what protects a finished machine (its deployment) is written at once and
   * fully durable. `get` shows pending sightings; `list`, `countByState` and `flush` write them.
   */
  seen(mac: string, facts: SeenFacts = {}): void {
    this.known?.add(mac);
    const at = this.ts();
    let n = this.pendingSeen.get(mac);
    if (n === undefined) {
      n = this.pendingSeen.size;
      this.pendingSeen.set(mac, n);
      const v = (this.seenRows[(n / SEEN_CHUNK) | 0] ??= Array.from({ length: SEEN_CHUNK * SEEN_COLS }, () => null));
      const o = (n % SEEN_CHUNK) * SEEN_COLS;
      v[o] = mac;
      v[o + 1] = facts.uuid ?? null;
      v[o + 2] = at;
      v[o + 3] = at;
      v[o + 4] = facts.firmware ?? null;
      v[o + 5] = facts.ip ?? null;
      v[o + 6] = facts.model ?? null;
    } else {
      const v = this.seenRows[(n / SEEN_CHUNK) | 0]!;
      const o = (n % SEEN_CHUNK) * SEEN_COLS;
      v[o + 1] = facts.uuid ?? (v[o + 1] as string | null);
      v[o + 2] = at;
      v[o + 3] = at;
      v[o + 4] = facts.firmware ?? (v[o + 4] as string | null);
      v[o + 5] = facts.ip ?? (v[o + 5] as string | null);
      v[o + 6] = facts.model ?? (v[o + 6] as string | null);
    }
    if (this.pendingSeen.size >= SEEN_BATCH) this.flush();
    else if (!this.flushTimer) this.flushTimer = setTimeout(() => this.flush(), SEEN_FLUSH_MS).unref();
  }

  /** Write the pending sightings now (the daemon calls it before closing the database). */
  flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const n = this.pendingSeen.size;
    if (n === 0) return;
    // seenRows keeps the values until the next seen(), which cannot run before this returns.
    this.pendingSeen.clear();
    this.db.exec('PRAGMA synchronous = NORMAL');
    try {
      transaction(this.db, () => this.writeSeen(n));
    } finally {
      this.db.exec('PRAGMA synchronous = FULL');
    }
  }

  /** Write the first n rows of seenRows: whole chunks, then the rest of the last one in power-of-two pieces. */
  private writeSeen(n: number): void {
    for (let r = 0; r < n; ) {
      const left = n - r;
      const size = left >= SEEN_CHUNK ? SEEN_CHUNK : 1 << (31 - Math.clz32(left));
      const v = this.seenRows[(r / SEEN_CHUNK) | 0]!;
      const o = (r % SEEN_CHUNK) * SEEN_COLS;
      this.upsertSeen(size).run(...(size === SEEN_CHUNK ? v : v.slice(o, o + size * SEEN_COLS)));
      r += size;
    }
  }

  /**
   * The statement writing `rows` sightings. Anonymous `?` placeholders: with numbered ones (?NNN),
   * node:sqlite's binding slowed with the number of parameters (measured: over 20 µs a row at 500
   * rows). SQLite applies the upsert to the VALUES rows one after the other, as it would separate
   * statements (a MAC is in a batch once anyway: pendingSeen is keyed by it).
   */
  private upsertSeen(rows: number): StatementSync {
    let st = this.seenUpserts[rows];
    if (!st) {
      st = this.db.prepare(
        `INSERT INTO machines (mac, uuid, first_seen, last_seen, firmware, ip, model) VALUES ${Array(rows).fill('(?, ?, ?, ?, ?, ?, ?)').join(', ')}
         ON CONFLICT (mac) DO UPDATE SET
           last_seen = excluded.last_seen,
           first_seen = COALESCE(machines.first_seen, excluded.first_seen),
           uuid = COALESCE(excluded.uuid, machines.uuid),
           firmware = COALESCE(excluded.firmware, machines.firmware),
           ip = COALESCE(excluded.ip, machines.ip),
           model = COALESCE(excluded.model, machines.model)`,
      );
      this.seenUpserts[rows] = st;
    }
    return st;
  }

  /** Begin a new deployment (generation + 1, state pending) and log why. */
  startDeployment(mac: string, key: string, sequence: string, stepTotal: number, reason: string): MachineRow {
    return transaction(this.db, () => {
      const now = this.ts();
      this.known?.add(mac);
      this.q(
          `INSERT INTO machines (mac, generation) VALUES (?, 0) ON CONFLICT (mac) DO NOTHING`,
        )
        .run(mac);
      this.q(
          `UPDATE machines SET deployment_key = ?, sequence = ?, state = 'pending', generation = generation + 1,
             step = NULL, step_total = ?, percent = NULL, resume = NULL, message = ?, state_changed_at = ?,
             started_at = ?, finished_at = NULL WHERE mac = ?`,
        )
        .run(key, sequence, stepTotal, reason, now, now, mac);
      const m = this.row(mac)!;
      this.insertEvent(mac, now, m.generation, 'deployment-assigned', null, null, reason, 'pending');
      return m;
    });
  }

  /** Move the deployment to `state` when it is in one of `from` (compare-and-set); returns whether it moved. */
  transition(mac: string, from: DeploymentState[], state: DeploymentState, message: string): boolean {
    return transaction(this.db, () => {
      const m = this.row(mac);
      if (!m || !m.state || !from.includes(m.state)) return false;
      const now = this.ts();
      this.q('UPDATE machines SET state = ?, message = ?, state_changed_at = ? WHERE mac = ?').run(state, message, now, mac);
      this.insertEvent(mac, now, m.generation, `state-${state}`, m.step, null, message, state);
      return true;
    });
  }

  /**
   * Apply a progress event computed by boot/deployment.applyEvent, atomically with the read it was
   * computed from: `compute` runs inside the write transaction on the current row.
   */
  applyProgress<T extends { record?: DeploymentRecord; summary?: string; persist: boolean }>(
    mac: string,
    compute: (current: MachineRow | undefined) => T,
    ev: { type: string; step?: number; percent?: number; message?: string },
  ): T {
    return transaction(this.db, () => {
      const current = this.row(mac);
      const out = compute(current);
      if (!out.persist || !out.record || !current) return out;
      const r = out.record;
      const now = this.ts();
      const changed = r.state !== current.state;
      const finished = r.state === 'done' || r.state === 'failed';
      this.q(
          `UPDATE machines SET state = ?, step = ?, resume = ?, percent = ?, message = ?, last_seen = ?,
             state_changed_at = CASE WHEN ? THEN ? ELSE state_changed_at END,
             finished_at = CASE WHEN ? THEN ? ELSE finished_at END WHERE mac = ?`,
        )
        .run(r.state, r.step, r.resume, ev.percent ?? (ev.type === 'step-finished' ? 100 : ev.type === 'step-started' ? 0 : current.percent), out.summary ?? ev.message ?? null, now, changed ? 1 : 0, now, finished ? 1 : 0, now, mac);
      this.insertEvent(mac, now, current.generation, ev.type, ev.step ?? null, ev.percent ?? null, ev.message ?? null, r.state);
      return out;
    });
  }

  private insertEvent(mac: string, at: string, generation: number | null, type: string, step: number | null, percent: number | null, message: string | null, state: string | null): void {
    this.q('INSERT INTO machine_events (mac, at, generation, type, step, percent, message, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(mac, at, generation, type, step, percent, message, state);
  }
}
