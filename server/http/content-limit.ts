/**
 * Optional bandwidth limits for content transfers: a token bucket per client address and one per
 * configured subnet, shared by every client in it (a branch office behind a small link). A
 * transfer takes tokens from every bucket that applies and waits for the slowest.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';

export interface ContentLimits {
  /** Each client address on its own; unset means unlimited. */
  perClientBytesPerSec?: number;
  /** The most specific matching subnet applies, its bucket shared by all clients in it. */
  subnets?: Array<{ cidr: string; bytesPerSec: number }>;
}

/** Debt-style token bucket: taking more than is there is allowed and answered with a wait. */
export class TokenBucket {
  private tokens: number;
  private stamp: number;
  readonly rate: number;
  readonly burst: number;
  private readonly now: () => number;

  constructor(bytesPerSec: number, now: () => number = () => performance.now()) {
    this.rate = bytesPerSec;
    // A quarter second of burst: enough to keep a link busy between timer ticks, small enough
    // that a branch link is not flooded when a transfer starts.
    this.burst = Math.max(64 * 1024, bytesPerSec / 4);
    this.tokens = this.burst;
    this.now = now;
    this.stamp = now();
  }

  /** Takes `n` tokens; returns how many ms the caller must wait before sending them. */
  take(n: number): number {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.stamp) * this.rate) / 1000);
    this.stamp = t;
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : (-this.tokens * 1000) / this.rate;
  }

  /** True when the bucket is full again, i.e. forgetting it changes nothing. */
  idle(): boolean {
    return this.tokens + ((this.now() - this.stamp) * this.rate) / 1000 >= this.burst;
  }
}

interface SubnetRule {
  cidr: string;
  prefix: number;
  list: BlockList;
  family: 'ipv4' | 'ipv6';
  bucket: TokenBucket;
}

export class BandwidthLimiter {
  private readonly perClient: number | undefined;
  private readonly rules: SubnetRule[];
  private readonly clients = new Map<string, TokenBucket>();
  private lastSweep = performance.now();

  constructor(limits: ContentLimits = {}) {
    if (limits.perClientBytesPerSec !== undefined && !(limits.perClientBytesPerSec > 0)) {
      throw new Error(`perClientBytesPerSec must be a positive number, got ${limits.perClientBytesPerSec}`);
    }
    this.perClient = limits.perClientBytesPerSec;
    this.rules = (limits.subnets ?? []).map(({ cidr, bytesPerSec }) => {
      if (!(bytesPerSec > 0)) throw new Error(`subnet ${cidr}: bytesPerSec must be a positive number`);
      const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr.trim());
      const addr = m?.[1];
      const prefix = Number(m?.[2]);
      const family = addr && isIPv4(addr) ? 'ipv4' : addr && isIPv6(addr) ? 'ipv6' : undefined;
      if (!addr || !family || prefix > (family === 'ipv4' ? 32 : 128)) throw new Error(`"${cidr}" is not a CIDR subnet like 10.1.0.0/16`);
      const list = new BlockList();
      list.addSubnet(addr, prefix, family);
      return { cidr, prefix, list, family, bucket: new TokenBucket(bytesPerSec) };
    });
    this.rules.sort((a, b) => b.prefix - a.prefix);
  }

  get enabled(): boolean {
    return this.perClient !== undefined || this.rules.length > 0;
  }

  /** The buckets a transfer to `address` draws from, and the slowest rate among them. */
  bucketsFor(address: string): { buckets: TokenBucket[]; rate: number } {
    const addr = normaliseAddress(address);
    const buckets: TokenBucket[] = [];
    if (this.perClient !== undefined) {
      let b = this.clients.get(addr);
      if (!b) {
        // Forget idle clients now and then (no timer to stop: the limiter is replaced on reload).
        if (this.clients.size > 10_000 || performance.now() - this.lastSweep > 60_000) this.sweep();
        b = new TokenBucket(this.perClient);
        this.clients.set(addr, b);
      }
      buckets.push(b);
    }
    const family = isIPv4(addr) ? 'ipv4' : 'ipv6';
    const rule = this.rules.find((r) => r.family === family && r.list.check(addr, family));
    if (rule) buckets.push(rule.bucket);
    return { buckets, rate: Math.min(Infinity, ...buckets.map((b) => b.rate)) };
  }

  /** Drops per-client buckets that are full again (their clients are gone or idle). */
  sweep(): void {
    this.lastSweep = performance.now();
    for (const [k, b] of this.clients) if (b.idle()) this.clients.delete(k);
  }
}

/** `::ffff:10.0.0.1` (IPv4 on a dual-stack socket) → `10.0.0.1`. */
export function normaliseAddress(a: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return m ? m[1]! : a;
}
