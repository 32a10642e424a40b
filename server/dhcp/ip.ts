/** IPv4 helpers: addresses as unsigned 32-bit integers, so subnet tests are two ANDs. */

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parse dotted-quad; returns undefined for anything that is not a strict IPv4 address. */
export function parseIp(s: string): number | undefined {
  const m = IPV4.exec(s);
  if (!m) return undefined;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const o = Number(m[i]);
    if (o > 255) return undefined;
    n = n * 256 + o;
  }
  return n >>> 0;
}

export function ipToString(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function prefixToMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export interface Cidr {
  network: number;
  prefix: number;
  mask: number;
  broadcast: number;
}

/** `10.0.0.0/24` → network, mask, broadcast; host bits in the address are cleared. */
export function parseCidr(s: string): Cidr | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const addr = parseIp(s.slice(0, slash));
  const p = s.slice(slash + 1);
  if (addr === undefined || !/^\d{1,2}$/.test(p)) return undefined;
  const prefix = Number(p);
  if (prefix > 32) return undefined;
  const mask = prefixToMask(prefix);
  const network = (addr & mask) >>> 0;
  return { network, prefix, mask, broadcast: (network | ~mask) >>> 0 };
}

export function inSubnet(ip: number, c: Cidr): boolean {
  return ((ip & c.mask) >>> 0) === c.network;
}

/** Number of leading one bits of a dotted netmask, or undefined if it is not contiguous. */
export function maskToPrefix(mask: string): number | undefined {
  const n = parseIp(mask);
  if (n === undefined) return undefined;
  let prefix = 0;
  while (prefix < 32 && (n & (0x80000000 >>> prefix)) !== 0) prefix++;
  return prefixToMask(prefix) === n ? prefix : undefined;
}

/** Lowercase `aa:bb:cc:dd:ee:ff` from 6 bytes. */
export function macToString(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) {
    const v = b[i] as number;
    s += (i ? ':' : '') + (v < 16 ? '0' : '') + v.toString(16);
  }
  return s;
}

/** Accepts `aa:bb:..`, `aa-bb-..`, or 12 hex digits; returns the normalised form or undefined. */
export function normaliseMac(s: string): string | undefined {
  const hex = s.trim().toLowerCase().replace(/[:\-.]/g, '');
  if (!/^[0-9a-f]{12}$/.test(hex)) return undefined;
  return hex.match(/../g)!.join(':');
}
