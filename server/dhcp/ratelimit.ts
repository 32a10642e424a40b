/**
 * Per-MAC token bucket, so one firmware stuck in a DHCP loop cannot flood the logs, the database or
 * the decider. It lives in fixed typed arrays (a 4-way set-associative table indexed by a hash of
 * the MAC): no allocation per packet and no growth, whatever a flood of random MACs does. When the
 * four slots of a set are busy, a refilled bucket (indistinguishable from a new one) or else the
 * least recently seen one is replaced; a client that keeps looping keeps its slot because it is
 * always the most recently seen.
 */
export interface RateLimiterOptions {
  burst: number;
  perSecond: number;
  /** Table size (rounded up to a power of two). Default 65,536 MACs. */
  slots?: number;
}

export type RateVerdict = 'ok' | 'limited' | 'limited-first';

const WAYS = 4;

export class RateLimiter {
  private readonly burst: number;
  private readonly perMs: number;
  private readonly fullMs: number;
  private readonly mask: number;
  /** MAC as a 48-bit number + 1; 0 marks an empty slot. */
  private readonly keys: Float64Array;
  private readonly tokens: Float64Array;
  private readonly last: Float64Array;
  /** 1 once we have said this MAC is limited, so the log line is written once per episode. */
  private readonly limited: Uint8Array;

  constructor(opts: RateLimiterOptions) {
    if (!(opts.burst >= 1) || !(opts.perSecond > 0)) throw new Error('rate limit: burst must be ≥ 1 and perSecond > 0');
    this.burst = opts.burst;
    this.perMs = opts.perSecond / 1000;
    this.fullMs = opts.burst / this.perMs;
    let size = WAYS;
    while (size < (opts.slots ?? 65_536)) size *= 2;
    this.mask = size / WAYS - 1;
    this.keys = new Float64Array(size);
    this.tokens = new Float64Array(size);
    this.last = new Float64Array(size);
    this.limited = new Uint8Array(size);
  }

  /** Take one token for the client with this 6-byte hardware address at time `now` (ms). */
  take(mac: Uint8Array, now: number): RateVerdict {
    const hi = ((mac[0]! << 8) | mac[1]!) >>> 0;
    const lo = ((mac[2]! << 24) | (mac[3]! << 16) | (mac[4]! << 8) | mac[5]!) >>> 0;
    const key = hi * 4294967296 + lo + 1;
    const base = ((Math.imul(lo, 0x9e3779b1) ^ Math.imul(hi, 0x85ebca6b)) >>> 0 & this.mask) * WAYS;
    let i = -1;
    let victim = base;
    for (let w = base; w < base + WAYS; w++) {
      if (this.keys[w] === key) { i = w; break; }
      if (this.keys[w] === 0 || now - this.last[w]! >= this.fullMs) victim = w;
      else if (this.keys[victim] !== 0 && now - this.last[victim]! < this.fullMs && this.last[w]! < this.last[victim]!) victim = w;
    }
    if (i < 0) {
      i = victim;
      this.keys[i] = key;
      this.tokens[i] = this.burst;
      this.limited[i] = 0;
    } else {
      this.tokens[i] = Math.min(this.burst, this.tokens[i]! + (now - this.last[i]!) * this.perMs);
    }
    this.last[i] = now;
    if (this.tokens[i]! >= 1) {
      this.tokens[i]! -= 1;
      this.limited[i] = 0;
      return 'ok';
    }
    if (this.limited[i]) return 'limited';
    this.limited[i] = 1;
    return 'limited-first';
  }
}

/**
 * The DHCP transactions seen lately (MAC, xid, message type, port), so a retransmission is logged at
 * debug and only the first packet of a transaction at info. A direct-mapped table of numbers: no
 * string built and hashed per packet (it was 5% of the handler's time in a storm). A newer
 * transaction that lands on the same slot evicts the older one, which at worst logs a later
 * retransmission of it at info again; with the default 16,384 slots that takes thousands of other
 * transactions in between.
 */
export class RecentTransactions {
  private readonly macs: Float64Array;
  private readonly keys: Float64Array;
  private readonly mask: number;

  constructor(slots = 16_384) {
    let size = 1;
    while (size < slots) size *= 2;
    this.mask = size - 1;
    this.macs = new Float64Array(size);
    this.keys = new Float64Array(size);
  }

  /** Remembers the transaction; true when it was not remembered already. `type` 0–255, `via` 0 or 1. */
  add(mac: Uint8Array, xid: number, type: number, via: number): boolean {
    const hi = ((mac[0]! << 8) | mac[1]!) >>> 0;
    const lo = ((mac[2]! << 24) | (mac[3]! << 16) | (mac[4]! << 8) | mac[5]!) >>> 0;
    const m = hi * 4294967296 + lo + 1;
    const k = (xid >>> 0) * 512 + type * 2 + via;
    // Each field multiplied by its own odd constant, then murmur3's finaliser: every input bit reaches the slot bits.
    let h = (Math.imul(lo, 0x9e3779b1) + Math.imul(xid | 0, 0x85ebca6b) + Math.imul(hi ^ (type << 17) ^ (via << 25), 0xc2b2ae35)) | 0;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    const i = ((h ^ (h >>> 16)) >>> 0) & this.mask;
    if (this.macs[i] === m && this.keys[i] === k) return false;
    this.macs[i] = m;
    this.keys[i] = k;
    return true;
  }
}
