/**
 * Leases for full mode, kept in the daemon's state database (`dhcp_leases`, one row per address) and
 * mirrored in memory so allocation never scans the table. The address is the primary key, so the
 * database itself refuses one address for two clients; every change is one transaction.
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
  private readonly byMac = new Map<string, Set<number>>();
  private readonly upsert: StatementSync;

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
    if (old && old.mac !== l.mac) this.byMac.get(old.mac)?.delete(l.ip);
    this.byIp.set(l.ip, l);
    if (l.mac) {
      let s = this.byMac.get(l.mac);
      if (!s) this.byMac.set(l.mac, (s = new Set()));
      s.add(l.ip);
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
    for (const ip of this.byMac.get(mac) ?? []) {
      if (ip < start || ip > end) continue;
      const l = this.byIp.get(ip)!;
      if (l.state === 'declined') continue;
      if (!best || l.expiresAt > best.expiresAt) best = l;
    }
    return best;
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
