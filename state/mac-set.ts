/**
 * A set of MAC address strings for MachineStore's `known` set, which in a PXE storm of new
 * machines gains one MAC per DISCOVER and is asked about each one. A Set<string> held every MAC
 * as a string object: each insert promoted it to the old generation and each lookup followed
 * pointers to compare strings, together about 1 µs a DISCOVER at tens of thousands of machines.
 * Here a MAC in the form the daemon stores (aa:bb:cc:dd:ee:ff, lower case) is a 48-bit number in
 * an open-addressing table of doubles: no object per MAC and one array to probe. Any other string
 * (a row another program wrote in another form) is kept in a plain Set, so membership is exactly
 * that of a Set<string>.
 */

/** The MAC as a number below 2^48 when `s` is in the stored form, else -1. */
function macKey(s: string): number {
  // Not a string: a NULL or BLOB key written by hand into the database (the column allows both).
  if (typeof s !== 'string' || s.length !== 17) return -1;
  let hi = 0;
  let lo = 0;
  for (let i = 0; i < 17; i++) {
    const c = s.charCodeAt(i);
    if (i % 3 === 2) {
      if (c !== 58 /* : */) return -1;
      continue;
    }
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
    if (d < 0) return -1;
    if (i < 5) hi = (hi << 4) | d;
    else lo = ((lo << 4) | d) >>> 0;
  }
  return hi * 0x1_0000_0000 + lo;
}

export class MacSet {
  /** key + 1 per slot, 0 = empty; at most half full, so probes stay short. */
  private slots = new Float64Array(1024);
  private count = 0;
  private readonly other = new Set<string>();

  get size(): number {
    return this.count + this.other.size;
  }

  has(mac: string): boolean {
    const k = macKey(mac);
    return k < 0 ? this.other.has(mac) : this.slots[this.slot(k)] !== 0;
  }

  add(mac: string): void {
    const k = macKey(mac);
    if (k < 0) {
      this.other.add(mac);
      return;
    }
    const i = this.slot(k);
    if (this.slots[i] !== 0) return;
    this.slots[i] = k + 1;
    if (++this.count * 2 > this.slots.length) this.grow();
  }

  /** The slot holding `k`, or the empty one where it belongs (linear probing). */
  private slot(k: number): number {
    const slots = this.slots;
    const mask = slots.length - 1;
    // Mix both halves: MACs of one vendor differ in their low bits, often consecutively.
    let h = Math.imul(k >>> 0 ^ Math.imul((k / 0x1_0000_0000) | 0, 0x9e3779b1), 0x85ebca6b);
    h ^= h >>> 15;
    let i = h & mask;
    const stored = k + 1;
    for (let v = slots[i]!; v !== 0 && v !== stored; v = slots[i]!) i = (i + 1) & mask;
    return i;
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Float64Array(old.length * 2);
    for (const v of old) if (v !== 0) this.slots[this.slot(v - 1)] = v;
  }
}
