/**
 * Option negotiation for a read request (RFC 2347/2348/2349/7440 and Microsoft's msftwindow).
 * Pure: takes the request's options and the server limits, returns what the transfer uses and the
 * OACK entries to send. Invalid values are ignored (the option is left out of the OACK) rather than
 * failing the transfer, which is what RFC 2347 allows and what keeps odd firmware booting.
 */
import { parseOptionInt } from './codec.ts';

export interface NegotiationLimits {
  maxBlksize: number;
  maxWindowsize: number;
}

export interface Negotiated {
  blksize: number;
  windowsize: number;
  /** Microsoft Variable Window Extension granted: each ACK's trailing byte sets the next window. */
  msftwindow: boolean;
  /** Client's RFC 2349 timeout in ms, when it sent a valid one: our retransmit timer never waits longer. */
  timeoutMs: number | undefined;
  tsizeRequested: boolean;
  /** OACK entries in the client's order; empty means no OACK (plain RFC 1350 transfer). */
  oack: Array<[string, string]>;
  /** Options we did not take up, for the debug log. */
  ignored: string[];
}

export const MSFT_REQUEST = '31416';
export const MSFT_GRANT = '27182';

/** RFC 2348 range. */
export const MIN_BLKSIZE = 8;
export const MAX_BLKSIZE = 65464;

/** `size` is the byte count to announce for tsize (after any netascii conversion). */
export function negotiate(options: ReadonlyMap<string, string>, size: number, limits: NegotiationLimits): Negotiated {
  const out: Negotiated = { blksize: 512, windowsize: 1, msftwindow: false, timeoutMs: undefined, tsizeRequested: false, oack: [], ignored: [] };
  for (const [name, value] of options) {
    switch (name) {
      case 'blksize': {
        const v = parseOptionInt(value);
        // Below 8 is outside RFC 2348: ignore the option and use 512. Above our limit: clamp down (allowed).
        if (!(v >= MIN_BLKSIZE)) {
          out.ignored.push(`${name}=${value}`);
          break;
        }
        out.blksize = Math.min(v, limits.maxBlksize, MAX_BLKSIZE);
        out.oack.push(['blksize', String(out.blksize)]);
        break;
      }
      case 'windowsize': {
        const v = parseOptionInt(value);
        // RFC 7440: valid 1..65535; outside that the option is ignored and the transfer is lock-step.
        if (!(v >= 1 && v <= 65535)) {
          out.ignored.push(`${name}=${value}`);
          break;
        }
        out.windowsize = Math.min(v, limits.maxWindowsize);
        out.oack.push(['windowsize', String(out.windowsize)]);
        break;
      }
      case 'tsize': {
        // RFC 2349: a read request sends 0; we answer with the real size whatever it sent.
        out.tsizeRequested = true;
        out.oack.push(['tsize', String(size)]);
        break;
      }
      case 'timeout': {
        const v = parseOptionInt(value);
        if (!(v >= 1 && v <= 255)) {
          out.ignored.push(`${name}=${value}`);
          break;
        }
        out.timeoutMs = v * 1000;
        out.oack.push(['timeout', String(v)]);
        break;
      }
      case 'msftwindow': {
        if (value !== MSFT_REQUEST) {
          out.ignored.push(`${name}=${value}`);
          break;
        }
        out.msftwindow = true;
        out.oack.push(['msftwindow', MSFT_GRANT]);
        break;
      }
      default:
        out.ignored.push(name);
    }
  }
  return out;
}

/** RFC 1350 netascii: LF → CR LF, CR → CR NUL. */
export function toNetascii(data: Buffer): Buffer {
  let extra = 0;
  for (let i = 0; i < data.length; i++) if (data[i] === 0x0a || data[i] === 0x0d) extra++;
  if (extra === 0) return data;
  const out = Buffer.allocUnsafe(data.length + extra);
  let o = 0;
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b === 0x0a) {
      out[o++] = 0x0d;
      out[o++] = 0x0a;
    } else if (b === 0x0d) {
      out[o++] = 0x0d;
      out[o++] = 0x00;
    } else out[o++] = b;
  }
  return out;
}
