/**
 * Leases for full mode, kept in the daemon's state database (`dhcp_leases`, one row per address) and
 * mirrored in memory so allocation never scans the table. The address is the primary key, so the
 * database itself refuses one address for two clients; every change is one transaction.
 *
 * Offers are held in memory only (`hold`): an offer needs no durability (after a restart the
 * client's REQUEST is checked again, or it starts over), and a synchronous commit per DISCOVER
 * would cap a boot storm at the disk's fsync rate. Bound, released and declined leases are written
 * before the answer goes out.
 *
 * An offer that ran out unanswered is forgotten (`hold` prunes them in the order they were made, a
 * few per call): it was never written, nobody holds it, and keeping it would grow the table, and
 * the heap the garbage collector walks, to the whole pool under a storm of one-off MACs (450 bytes
 * per address: hundreds of MB on a large pool, and 20–50 ms collector pauses). Its address is
 * handed out again once the range's never-used addresses are gone, like one never used.
 *
 * Allocation is O(log n) per DISCOVER whatever the pool size: per address range, a cursor to the
 * lowest address that never had a lease (rows are never deleted, so it only moves up), and a heap
 * of leases by expiry for reusing the one that has been free longest.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { ipToString, parseIp } from './ip.ts';

export type LeaseState = 'offered' | 'bound' | 'released' | 'declined';

export interface Lease {
  ip: number;
  /** Owner; empty for a declined address nobody owns. */
  mac: string;
  state: LeaseState;
  /** Unix ms after which the address is no longer held (offered/bound/declined). */
  expiresAt: number;
  hostname?: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS dhcp_leases (
  ip TEXT PRIMARY KEY,
  mac TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('offered', 'bound', 'released', 'declined')),
  expires_at INTEGER NOT NULL,
  hostname TEXT,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dhcp_leases_mac ON dhcp_leases (mac);
`;

interface Row {
  ip: string;
  mac: string;
  state: LeaseState;
  expires_at: number;
  hostname: string | null;
}

export class LeaseStore {
  private readonly db: DatabaseSync;
  private readonly byIp = new Map<number, Lease>();
  /**
   * Addresses per owner: the address itself while a MAC holds one (nearly every client; a Set per MAC
   * cost about 230 bytes of heap each, 23 MB per 100,000 machines of a boot storm, and the GC's time
   * to mark them), a Set once it holds more.
   */
  private readonly byMac = new Map<string, number | Set<number>>();
  private readonly upsert: StatementSync;
  /** Offers in the order they were made (their hold is one length, so also the order they expire). */
  private offerIp: number[] = [];
  private offerAt: number[] = [];
  private offerHead = 0;

  constructor(db: DatabaseSync) {
    this.db = db;
    db.exec(SCHEMA);
    this.upsert = db.prepare(
      `INSERT INTO dhcp_leases (ip, mac, state, expires_at, hostname, updated_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (ip) DO UPDATE SET mac = excluded.mac, state = excluded.state, expires_at = excluded.expires_at,
         hostname = excluded.hostname, updated_at = excluded.updated_at`,
    );
    for (const r of db.prepare('SELECT ip, mac, state, expires_at, hostname FROM dhcp_leases').all() as unknown as Row[]) {
      const ip = parseIp(r.ip);
      if (ip === undefined) continue;
      this.remember({ ip, mac: r.mac, state: r.state, expiresAt: Number(r.expires_at), ...(r.hostname ? { hostname: r.hostname } : {}) });
    }
  }

  private remember(l: Lease): void {
    const old = this.byIp.get(l.ip);
    if (old && old.mac !== l.mac) {
      // Drop the previous owner's entry, and the owner itself once it holds nothing: a flood of
      // one-off MACs must not grow memory beyond the pool's size.
      this.unlinkMac(old.mac, l.ip);
    }
    this.byIp.set(l.ip, l);
    if (l.mac) {
      const s = this.byMac.get(l.mac);
      if (s === undefined) this.byMac.set(l.mac, l.ip);
      else if (typeof s === 'object') s.add(l.ip);
      else if (s !== l.ip) this.byMac.set(l.mac, new Set([s, l.ip]));
    }
    for (const r of this.ranges.values()) {
      if (l.ip < r.start || l.ip > r.end) continue;
      if (!old) r.live++;
      r.heap.push(l.expiresAt, l.ip);
      if (r.heap.size > 2 * r.live + 1024) this.rebuild(r);
    }
  }

  private readonly ranges = new Map<string, RangeIndex>();

  private range(start: number, end: number): RangeIndex {
    const key = `${start}-${end}`;
    let r = this.ranges.get(key);
    if (!r) {
      r = { start, end, next: start, live: 0, heap: new ExpiryHeap(), returned: [], returnedHead: 0 };
      this.ranges.set(key, r);
      this.rebuild(r);
    }
    return r;
  }

  private rebuild(r: RangeIndex): void {
    r.heap = new ExpiryHeap();
    r.live = 0;
    for (const l of this.byIp.values()) {
      if (l.ip < r.start || l.ip > r.end) continue;
      r.live++;
      r.heap.push(l.expiresAt, l.ip);
    }
  }

  /** The lowest address in [start, end] that never had a lease, else one of a forgotten offer, leaving out those `skip` names (reserved, our own). */
  firstUnused(start: number, end: number, skip: (ip: number) => boolean): number | undefined {
    const r = this.range(start, end);
    while (r.next <= end && (this.byIp.has(r.next) || skip(r.next))) r.next++;
    if (r.next <= end) return r.next;
    // Then the addresses of forgotten offers (see prune): used once, free again, owned by nobody.
    // Left at the head until it is leased again: a caller that does not take it loses nothing.
    while (r.returnedHead < r.returned.length) {
      const ip = r.returned[r.returnedHead]!;
      if (!this.byIp.has(ip) && !skip(ip)) return ip;
      r.returnedHead++;
      if (r.returnedHead > 4096 && r.returnedHead * 2 > r.returned.length) {
        r.returned = r.returned.slice(r.returnedHead);
        r.returnedHead = 0;
      }
    }
    return undefined;
  }

  /** The address in [start, end] whose lease ended longest ago (released, or expired at `now`), leaving out those `skip` names. */
  oldestFree(start: number, end: number, now: number, skip: (ip: number) => boolean): number | undefined {
    const r = this.range(start, end);
    for (;;) {
      const top = r.heap.peek();
      if (!top) return undefined;
      const l = this.byIp.get(top.ip);
      // Entries of leases changed since are stale; skipped addresses are never handed out dynamically.
      if (!l || l.expiresAt !== top.at || skip(top.ip)) {
        r.heap.pop();
        continue;
      }
      return l.expiresAt <= now || l.state === 'released' ? top.ip : undefined;
    }
  }

  get(ip: number): Lease | undefined {
    return this.byIp.get(ip);
  }

  /** Is the address held by someone other than `mac` at `now`? */
  heldByOther(ip: number, mac: string, now: number): boolean {
    const l = this.byIp.get(ip);
    if (!l || l.expiresAt <= now || l.state === 'released') return false;
    return l.state === 'declined' || l.mac !== mac;
  }

  /** This MAC's most recent lease inside [start, end], any state but declined. */
  latestFor(mac: string, start: number, end: number): Lease | undefined {
    let best: Lease | undefined;
    const held = this.byMac.get(mac);
    for (const ip of held === undefined ? [] : typeof held === 'number' ? [held] : held) {
      if (ip < start || ip > end) continue;
      const l = this.byIp.get(ip)!;
      if (l.state === 'declined') continue;
      if (!best || l.expiresAt > best.expiresAt) best = l;
    }
    return best;
  }

  /** Keep an offer in memory only (see the top of this file); forgets a few offers that ran out unanswered. */
  hold(l: Lease, now: number): void {
    this.remember(l);
    if (l.state === 'offered') {
      this.offerIp.push(l.ip);
      this.offerAt.push(l.expiresAt);
    }
    this.prune(now, 16);
  }

  /**
   * Forgets up to `max` offers whose hold ended before `now` and that are still just that: an offer
   * since bound, released, declined or made again is another lease and stays.
   */
  prune(now: number, max = Infinity): number {
    let n = 0;
    while (n < max && this.offerHead < this.offerIp.length && this.offerAt[this.offerHead]! <= now) {
      const ip = this.offerIp[this.offerHead]!;
      const at = this.offerAt[this.offerHead]!;
      this.offerHead++;
      const l = this.byIp.get(ip);
      if (!l || l.state !== 'offered' || l.expiresAt !== at) continue;
      this.forget(l);
      n++;
    }
    if (this.offerHead > 4096 && this.offerHead * 2 > this.offerIp.length) {
      this.offerIp = this.offerIp.slice(this.offerHead);
      this.offerAt = this.offerAt.slice(this.offerHead);
      this.offerHead = 0;
    }
    return n;
  }

  /** `mac` no longer holds `ip`; a MAC that holds nothing is dropped. */
  private unlinkMac(mac: string, ip: number): void {
    const held = this.byMac.get(mac);
    if (held === ip || (typeof held === 'object' && held.delete(ip) && held.size === 0)) this.byMac.delete(mac);
  }

  private forget(l: Lease): void {
    this.byIp.delete(l.ip);
    this.unlinkMac(l.mac, l.ip);
    for (const r of this.ranges.values()) {
      if (l.ip < r.start || l.ip > r.end) continue;
      r.live--;
      r.returned.push(l.ip);
    }
  }

  /** Write one lease (insert or replace the row for its address) in a transaction. */
  put(l: Lease, now: number): void {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      this.upsert.run(ipToString(l.ip), l.mac, l.state, l.expiresAt, l.hostname ?? null, now);
      this.db.exec('COMMIT');
    } catch (e) {
      this.db.exec('ROLLBACK');
      throw e;
    }
    this.remember(l);
  }

  /** Count of leases per state that are live at `now` (released/expired as 'free'). */
  counts(now: number): Record<LeaseState | 'expired', number> {
    const c = { offered: 0, bound: 0, released: 0, declined: 0, expired: 0 };
    for (const l of this.byIp.values()) {
      if (l.state !== 'released' && l.expiresAt <= now) c.expired++;
      else c[l.state]++;
    }
    return c;
  }

  all(): Lease[] {
    return [...this.byIp.values()];
  }
}

interface RangeIndex {
  start: number;
  end: number;
  /** No address below this one is unused. */
  next: number;
  /** Addresses in the range with a lease (a bound on the heap's live entries). */
  live: number;
  heap: ExpiryHeap;
  /** Addresses of forgotten offers, handed out again once `next` has passed `end` (entries since leased again are skipped). */
  returned: number[];
  returnedHead: number;
}

/** A binary min-heap of (expiry, address) in two flat arrays; ties go to the lower address. */
class ExpiryHeap {
  private readonly at: number[] = [];
  private readonly ips: number[] = [];

  get size(): number {
    return this.at.length;
  }

  private less(i: number, j: number): boolean {
    const a = this.at[i]!, b = this.at[j]!;
    return a < b || (a === b && this.ips[i]! < this.ips[j]!);
  }

  private swap(i: number, j: number): void {
    const a = this.at[i]!, p = this.ips[i]!;
    this.at[i] = this.at[j]!;
    this.ips[i] = this.ips[j]!;
    this.at[j] = a;
    this.ips[j] = p;
  }

  push(at: number, ip: number): void {
    this.at.push(at);
    this.ips.push(ip);
    for (let i = this.at.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  peek(): { at: number; ip: number } | undefined {
    return this.at.length ? { at: this.at[0]!, ip: this.ips[0]! } : undefined;
  }

  pop(): void {
    const last = this.at.length - 1;
    if (last < 0) return;
    this.swap(0, last);
    this.at.pop();
    this.ips.pop();
    for (let i = 0; ;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < last && this.less(l, m)) m = l;
      if (r < last && this.less(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }
}
