/**
 * TFTP packet codec (RFC 1350, 2347 OACK, Microsoft's trailing window byte on ACK).
 * Pure Buffer ↔ object functions: no sockets, no state. Decoding never throws; anything that is not
 * a well-formed packet comes back as `null` so the caller can drop and count it.
 */

export const OP_RRQ = 1;
export const OP_WRQ = 2;
export const OP_DATA = 3;
export const OP_ACK = 4;
export const OP_ERROR = 5;
export const OP_OACK = 6;

export const ERR_UNDEFINED = 0;
export const ERR_NOT_FOUND = 1;
export const ERR_ACCESS = 2;
export const ERR_DISK_FULL = 3;
export const ERR_ILLEGAL_OP = 4;
export const ERR_UNKNOWN_TID = 5;
export const ERR_EXISTS = 6;
export const ERR_NO_USER = 7;
export const ERR_OPTION = 8;

/** Longest request we parse; RFC 2347 caps requests at 512 bytes but real clients exceed it slightly. */
export const MAX_REQUEST_BYTES = 1024;
const MAX_STRING = 255;

export interface RequestPacket {
  op: typeof OP_RRQ | typeof OP_WRQ;
  filename: string;
  /** Lower-cased transfer mode ("octet", "netascii", "mail", or anything the client sent). */
  mode: string;
  /** Options by lower-cased name; the first occurrence of a name wins. Values keep their case. */
  options: Map<string, string>;
}

export interface DataPacket {
  op: typeof OP_DATA;
  block: number;
  data: Buffer;
}

export interface AckPacket {
  op: typeof OP_ACK;
  block: number;
  /** Microsoft variable window: the next window size carried in a trailing byte, when present. */
  nextWindow?: number;
}

export interface ErrorPacket {
  op: typeof OP_ERROR;
  code: number;
  message: string;
}

export interface OackPacket {
  op: typeof OP_OACK;
  options: Map<string, string>;
}

export type Packet = RequestPacket | DataPacket | AckPacket | ErrorPacket | OackPacket;

/** Decodes one datagram; `null` for anything malformed. */
export function decode(buf: Buffer): Packet | null {
  if (buf.length < 2) return null;
  const op = buf.readUInt16BE(0);
  switch (op) {
    case OP_RRQ:
    case OP_WRQ:
      return decodeRequest(op, buf);
    case OP_DATA:
      if (buf.length < 4) return null;
      return { op, block: buf.readUInt16BE(2), data: buf.subarray(4) };
    case OP_ACK:
      return decodeAck(buf);
    case OP_ERROR: {
      if (buf.length < 4) return null;
      const end = buf.indexOf(0, 4);
      // Some clients omit the terminating NUL; accept that, but cap the message.
      const stop = Math.min(end === -1 ? buf.length : end, 4 + 512);
      return { op, code: buf.readUInt16BE(2), message: buf.toString('latin1', 4, stop) };
    }
    case OP_OACK: {
      const options = decodeOptions(buf, 2);
      return options ? { op, options } : null;
    }
    default:
      return null;
  }
}

/** Fast path for the transfer socket: ACK only. Returns the 16-bit block, or -1 when `buf` is not an ACK. */
export function decodeAckBlock(buf: Buffer): number {
  if (buf.length < 4 || buf.length > 5 || buf[0] !== 0 || buf[1] !== OP_ACK) return -1;
  return (buf[2]! << 8) | buf[3]!;
}

function decodeAck(buf: Buffer): AckPacket | null {
  if (buf.length < 4) return null;
  const block = buf.readUInt16BE(2);
  if (buf.length === 5) return { op: OP_ACK, block, nextWindow: buf[4]! };
  // Anything longer is not an ACK any client sends; treat as malformed rather than guess.
  if (buf.length > 5) return null;
  return { op: OP_ACK, block };
}

function decodeRequest(op: typeof OP_RRQ | typeof OP_WRQ, buf: Buffer): RequestPacket | null {
  if (buf.length > MAX_REQUEST_BYTES) return null;
  const fEnd = buf.indexOf(0, 2);
  if (fEnd === -1 || fEnd - 2 > MAX_STRING) return null;
  const mEnd = buf.indexOf(0, fEnd + 1);
  if (mEnd === -1 || mEnd === fEnd + 1 || mEnd - fEnd - 1 > 32) return null;
  // latin1 keeps every byte one-to-one, so an odd byte cannot turn into a path separator.
  const filename = buf.toString('latin1', 2, fEnd);
  const mode = buf.toString('latin1', fEnd + 1, mEnd).toLowerCase();
  const options = decodeOptions(buf, mEnd + 1);
  if (!options) return null;
  return { op, filename, mode, options };
}

function decodeOptions(buf: Buffer, start: number): Map<string, string> | null {
  const options = new Map<string, string>();
  let pos = start;
  while (pos < buf.length) {
    const nEnd = buf.indexOf(0, pos);
    // A trailing unterminated fragment (some PXE ROMs pad requests) ends the option list.
    if (nEnd === -1) break;
    const vEnd = buf.indexOf(0, nEnd + 1);
    // A name without a value cannot be honoured; ignore it like any unknown option.
    if (vEnd === -1) break;
    if (nEnd === pos) {
      // Empty option name: tolerate zero padding after the last option.
      pos = vEnd + 1;
      continue;
    }
    if (nEnd - pos > MAX_STRING || vEnd - nEnd - 1 > MAX_STRING) return null;
    const name = buf.toString('latin1', pos, nEnd).toLowerCase();
    if (!options.has(name)) options.set(name, buf.toString('latin1', nEnd + 1, vEnd));
    pos = vEnd + 1;
  }
  return options;
}

/** Encodes an ERROR packet; the message is ASCII-only and truncated so the packet stays small. */
export function encodeError(code: number, message: string): Buffer {
  const msg = Buffer.from(message.replace(/[^\x20-\x7e]/g, '?').slice(0, 200), 'latin1');
  const out = Buffer.allocUnsafe(5 + msg.length);
  out.writeUInt16BE(OP_ERROR, 0);
  out.writeUInt16BE(code & 0xffff, 2);
  msg.copy(out, 4);
  out[4 + msg.length] = 0;
  return out;
}

export function encodeOack(options: ReadonlyMap<string, string> | Iterable<[string, string]>): Buffer {
  const parts: Buffer[] = [Buffer.from([0, OP_OACK])];
  for (const [k, v] of options) parts.push(Buffer.from(`${k}\0${v}\0`, 'latin1'));
  return Buffer.concat(parts);
}

export function encodeAck(block: number, nextWindow?: number): Buffer {
  const out = Buffer.allocUnsafe(nextWindow === undefined ? 4 : 5);
  out.writeUInt16BE(OP_ACK, 0);
  out.writeUInt16BE(block & 0xffff, 2);
  if (nextWindow !== undefined) out[4] = nextWindow & 0xff;
  return out;
}

export function encodeRequest(op: typeof OP_RRQ | typeof OP_WRQ, filename: string, mode: string, options: Iterable<[string, string]> = []): Buffer {
  let s = `${filename}\0${mode}\0`;
  for (const [k, v] of options) s += `${k}\0${v}\0`;
  const body = Buffer.from(s, 'latin1');
  const out = Buffer.allocUnsafe(2 + body.length);
  out.writeUInt16BE(op, 0);
  body.copy(out, 2);
  return out;
}

export function encodeData(block: number, data: Buffer): Buffer {
  const out = Buffer.allocUnsafe(4 + data.length);
  out.writeUInt16BE(OP_DATA, 0);
  out.writeUInt16BE(block & 0xffff, 2);
  data.copy(out, 4);
  return out;
}

/** Writes a DATA header in place (the hot path reuses preallocated packet buffers). */
export function writeDataHeader(out: Buffer, block: number): void {
  out[0] = 0;
  out[1] = OP_DATA;
  out[2] = (block >>> 8) & 0xff;
  out[3] = block & 0xff;
}

/** Parses a decimal option value strictly (digits only, no sign, no exponent); NaN when invalid. */
export function parseOptionInt(value: string): number {
  if (!/^[0-9]{1,10}$/.test(value)) return NaN;
  return Number(value);
}
