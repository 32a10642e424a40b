/**
 * BOOTP/DHCP packet codec: pure Buffer ↔ object, every read bounds-checked. Decoding never trusts a
 * length byte; anything that does not fit throws a DhcpDecodeError whose `reason` becomes the
 * `swarmboot_dhcp_dropped_total{reason}` label.
 */
import { ipToString, parseIp } from './ip.ts';
import { Opt } from './options.ts';

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
export const MAGIC_COOKIE = 0x63825363;
/** Fixed BOOTP header (236) + magic cookie (4). */
export const HEADER_LEN = 240;
/** RFC 951 minimum BOOTP message; some relays and old ROMs drop anything shorter. */
export const MIN_REPLY_LEN = 300;
export const FLAG_BROADCAST = 0x8000;

const SNAME_OFF = 44;
const SNAME_LEN = 64;
const FILE_OFF = 108;
const FILE_LEN = 128;

export type DecodeReason =
  | 'truncated'
  | 'no_cookie'
  | 'bad_hlen'
  | 'option_overrun'
  | 'bad_overload'
  | 'too_large';

export class DhcpDecodeError extends Error {
  readonly reason: DecodeReason;
  constructor(reason: DecodeReason, detail: string) {
    super(`${reason}: ${detail}`);
    this.reason = reason;
  }
}

export interface DhcpPacket {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** Client hardware address, `hlen` bytes (a copy, safe to keep). */
  chaddr: Buffer;
  /** Server host name; empty when the field carries overloaded options. */
  sname: string;
  /** Boot file name; empty when the field carries overloaded options. */
  file: string;
  /** Option code → value. Repeated codes are concatenated (RFC 3396); values are views into the input. */
  options: Map<number, Buffer>;
}

/** Largest packet we accept: an Ethernet MTU's worth is plenty; jumbo garbage is refused early. */
const MAX_PACKET = 4096;

function readCString(buf: Buffer, off: number, len: number): string {
  const end = buf.indexOf(0, off);
  const stop = end < 0 || end > off + len ? off + len : end;
  return buf.toString('latin1', off, stop);
}

function readIp(buf: Buffer, off: number): string {
  return ipToString(buf.readUInt32BE(off));
}

/**
 * Parse one option area (options field, or file/sname when overloaded) into `into`; returns the
 * option 52 value when `allowOverload`. A missing end option is tolerated when the last option
 * ends exactly at the area's end (some firmwares do that); an option running past it is refused.
 */
function parseOptionArea(buf: Buffer, start: number, end: number, into: Map<number, Buffer>, allowOverload: boolean): number | undefined {
  let overload: number | undefined;
  let i = start;
  while (i < end) {
    const code = buf[i] as number;
    if (code === Opt.PAD) { i++; continue; }
    if (code === Opt.END) return overload;
    if (i + 1 >= end) throw new DhcpDecodeError('option_overrun', `option ${code} has no length byte at ${i}`);
    const len = buf[i + 1] as number;
    const vstart = i + 2;
    const vend = vstart + len;
    if (vend > end) throw new DhcpDecodeError('option_overrun', `option ${code} length ${len} runs past ${end}`);
    const value = buf.subarray(vstart, vend);
    if (code === Opt.OVERLOAD) {
      if (!allowOverload) { i = vend; continue; } // overload inside an overloaded area means nothing
      if (len !== 1 || (value[0] as number) < 1 || (value[0] as number) > 3) {
        throw new DhcpDecodeError('bad_overload', `option 52 length ${len} value ${value[0]}`);
      }
      overload = value[0] as number;
    } else {
      const prev = into.get(code);
      into.set(code, prev ? Buffer.concat([prev, value]) : value);
    }
    i = vend;
  }
  return overload;
}

export function decodePacket(buf: Buffer): DhcpPacket {
  if (buf.length < HEADER_LEN) throw new DhcpDecodeError('truncated', `${buf.length} bytes, need ${HEADER_LEN}`);
  if (buf.length > MAX_PACKET) throw new DhcpDecodeError('too_large', `${buf.length} bytes`);
  if (buf.readUInt32BE(236) !== MAGIC_COOKIE) throw new DhcpDecodeError('no_cookie', 'not a DHCP packet (plain BOOTP or garbage)');
  const hlen = buf[2] as number;
  if (hlen > 16) throw new DhcpDecodeError('bad_hlen', `hlen ${hlen}`);
  const options = new Map<number, Buffer>();
  const overload = parseOptionArea(buf, HEADER_LEN, buf.length, options, true);
  // RFC 2131 4.1: file is read before sname when both are overloaded.
  if (overload === 1 || overload === 3) parseOptionArea(buf, FILE_OFF, FILE_OFF + FILE_LEN, options, false);
  if (overload === 2 || overload === 3) parseOptionArea(buf, SNAME_OFF, SNAME_OFF + SNAME_LEN, options, false);
  return {
    op: buf[0] as number,
    htype: buf[1] as number,
    hlen,
    hops: buf[3] as number,
    xid: buf.readUInt32BE(4),
    secs: buf.readUInt16BE(8),
    flags: buf.readUInt16BE(10),
    ciaddr: readIp(buf, 12),
    yiaddr: readIp(buf, 16),
    siaddr: readIp(buf, 20),
    giaddr: readIp(buf, 24),
    chaddr: Buffer.from(buf.subarray(28, 28 + hlen)),
    sname: overload === 2 || overload === 3 ? '' : readCString(buf, SNAME_OFF, SNAME_LEN),
    file: overload === 1 || overload === 3 ? '' : readCString(buf, FILE_OFF, FILE_LEN),
    options,
  };
}

function writeIp(buf: Buffer, off: number, ip: string): void {
  if (ip === '0.0.0.0') { buf.writeUInt32BE(0, off); return; }
  const n = parseIp(ip);
  if (n === undefined) throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
  buf.writeUInt32BE(n, off);
}

/** Encoded length of the options (with RFC 3396 splitting of values over 255 bytes) plus the end byte. */
function optionsLength(options: Map<number, Buffer>): number {
  let n = 1;
  for (const v of options.values()) n += v.length === 0 ? 2 : v.length + 2 * Math.ceil(v.length / 255);
  return n;
}

/**
 * Encode a packet. Options go in map insertion order (put 53 first: some ROMs look only there);
 * values longer than 255 bytes are split into consecutive instances; the result is zero-padded to
 * 300 bytes. `sname`/`file` longer than their fields are refused rather than silently cut.
 */
export function encodePacket(p: DhcpPacket): Buffer {
  if (Buffer.byteLength(p.sname, 'latin1') > SNAME_LEN - 1) throw new Error(`sname longer than ${SNAME_LEN - 1} bytes`);
  if (Buffer.byteLength(p.file, 'latin1') > FILE_LEN - 1) throw new Error(`file longer than ${FILE_LEN - 1} bytes`);
  if (p.chaddr.length > 16) throw new Error('chaddr longer than 16 bytes');
  const len = Math.max(MIN_REPLY_LEN, HEADER_LEN + optionsLength(p.options));
  const buf = Buffer.alloc(len);
  buf[0] = p.op;
  buf[1] = p.htype;
  buf[2] = p.hlen;
  buf[3] = p.hops;
  buf.writeUInt32BE(p.xid >>> 0, 4);
  buf.writeUInt16BE(p.secs & 0xffff, 8);
  buf.writeUInt16BE(p.flags & 0xffff, 10);
  writeIp(buf, 12, p.ciaddr);
  writeIp(buf, 16, p.yiaddr);
  writeIp(buf, 20, p.siaddr);
  writeIp(buf, 24, p.giaddr);
  p.chaddr.copy(buf, 28);
  buf.write(p.sname, SNAME_OFF, 'latin1');
  buf.write(p.file, FILE_OFF, 'latin1');
  buf.writeUInt32BE(MAGIC_COOKIE, 236);
  let o = HEADER_LEN;
  for (const [code, value] of p.options) {
    if (code === Opt.PAD || code === Opt.END || code < 0 || code > 255) throw new Error(`cannot encode option code ${code}`);
    if (value.length === 0) { buf[o++] = code; buf[o++] = 0; continue; }
    for (let s = 0; s < value.length; s += 255) {
      const chunk = value.subarray(s, Math.min(value.length, s + 255));
      buf[o++] = code;
      buf[o++] = chunk.length;
      chunk.copy(buf, o);
      o += chunk.length;
    }
  }
  buf[o] = Opt.END;
  return buf;
}

// Typed option value helpers, shared by responders and test clients.

export function ipOption(...ips: string[]): Buffer {
  const b = Buffer.alloc(4 * ips.length);
  ips.forEach((ip, i) => writeIp(b, 4 * i, ip));
  return b;
}

export function u32Option(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export function u16Option(...ns: number[]): Buffer {
  const b = Buffer.alloc(2 * ns.length);
  ns.forEach((n, i) => b.writeUInt16BE(n & 0xffff, 2 * i));
  return b;
}

export function readIpOption(v: Buffer | undefined): string | undefined {
  return v && v.length === 4 ? ipToString(v.readUInt32BE(0)) : undefined;
}
