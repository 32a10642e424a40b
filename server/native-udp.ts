/**
 * The native UDP addon (native/udp_batch.c), shared by TFTP and DHCP: loading it (building it first when `npm ci`
 * did not), and taking over the receiving side of a bound dgram socket.
 *
 * Why receive natively: Node's dgram costs, per datagram, a 64 KiB malloc, a Buffer, an address object with a new
 * string, an EventEmitter dispatch and one more recvmsg that finds the socket empty. At a TFTP lock-step ACK or a
 * DHCP DISCOVER that is most of the user-space time per packet (perf on a lock-step transfer: 22% of the server's
 * CPU in user space against dnsmasq's 3%). A `UdpReceiver` drains the socket with recvmmsg into a ring of slots
 * it owns and calls back once per batch with the count; lengths and source addresses are in an Int32Array.
 *
 * The addon is optional: without it (no compiler, not Linux, no fd) callers keep using dgram as before.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { Socket } from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Addon {
  sockaddr(address: string, port: number): Buffer | null;
  sendGso(fd: number, sa: Buffer, ring: Buffer, off: number, len: number, seg: number): number;
  sendMmsg(fd: number, sa: Buffer, ring: Buffer, off: number, len: number, seg: number): number;
  sendTo(fd: number, buf: Buffer, off: number, len: number, address: string, port: number): number;
  recvDispatch(fn: (k: number) => void, events: Int32Array): void;
  recvStart(fd: number, ring: Buffer, slot: number, meta: Int32Array, max: number, id: number): object;
  recvStop(handle: object): void;
  recvWantWritable(handle: object): void;
  recvAutopilot(handle: object, ap: Float64Array, pool: Buffer, sockaddr: Buffer): number;
  preadNowait(fd: number, buf: Buffer, off: number, len: number, pos: number): number;
  recvSpin(us: number): void;
  spinStats(): [spins: number, misses: number, caught: number, ms: number];
  sendBatching(on: boolean): [sends: number, calls: number, failed: number, state: number];
  batchStats(): [sends: number, calls: number, failed: number, state: number];
}

export interface NativeUdp {
  /** null when the addon is not in use; `why` says why, or how it was found. */
  addon: Addon | null;
  detail: string;
}

export interface UdpHandle {
  fd?: number;
  getSendQueueCount(): number;
  /** Node's UDPWrap has both (dgram's own reading); optional so that a handle without them is left to dgram. */
  recvStart?(): number;
  recvStop?(): number;
}

/** Words per datagram in a receiver's meta array (native/udp_batch.c META_WORDS). */
export const META_WORDS = 8;
export const EAGAIN = -11;

/**
 * Words of a TFTP transfer's autopilot state (native/udp_batch.c, enum AP_*; same order): the addon answers the ACK
 * that closes a window with the next window when its packets are ready in the ring. See Transfer.syncOut.
 */
export const AP = {
  ON: 0,
  EXPECT16: 1,
  WIN_FROM: 2,
  WIN_END: 3,
  NEXT: 4,
  SENT_MAX: 5,
  ACKED: 6,
  READY_FROM: 7,
  READY: 8,
  WS: 9,
  LAST_BLOCK: 10,
  LAST_LEN: 11,
  SEG: 12,
  SLOTS: 13,
  WIN_SENT_AT: 14,
  PROGRESS_AT: 15,
  SRTT: 16,
  RTTVAR: 17,
  RTO: 18,
  MIN_RTO: 19,
  MAX_RTO: 20,
  GIVE_UP: 21,
  DEADLINE: 22,
  HANDLED: 23,
  CLOCK: 24,
  WORDS: 25,
} as const;

/** performance.now() minus uv_hrtime() in ms: the autopilot keeps its times in the transfer's clock. */
export const AP_CLOCK = performance.now() - Number(process.hrtime.bigint()) / 1e6;

let loading: Promise<NativeUdp> | null = null;

/** The process's addon, loaded once (building it first if needed, which takes about a second). */
export function loadNativeUdp(): Promise<NativeUdp> {
  loading ??= load().catch((e: unknown) => ({ addon: null, detail: `load failed: ${(e as Error).message}` }));
  return loading;
}

const REQUIRED = ['sockaddr', 'sendGso', 'sendMmsg', 'sendTo', 'recvDispatch', 'recvStart', 'recvStop', 'recvWantWritable', 'recvAutopilot', 'preadNowait', 'recvSpin', 'spinStats', 'sendBatching', 'batchStats'] as const;

async function load(): Promise<NativeUdp> {
  if (process.platform !== 'linux') return { addon: null, detail: `${process.platform}: GSO, sendmmsg and recvmmsg are Linux only` };
  const dir = findNativeDir();
  if (!dir) return { addon: null, detail: 'native/udp_batch.c not found beside the server code' };
  const src = readFileSync(path.join(dir, 'udp_batch.c'));
  const h = createHash('sha256').update(src).update(`${process.platform}-${process.arch}`).digest('hex').slice(0, 16);
  const file = path.join(dir, 'build', `udp_batch-${h}.node`);
  let how = 'prebuilt';
  if (!existsSync(file)) {
    how = 'built at first use';
    const err = await new Promise<string>((resolve) => {
      execFile(process.execPath, [path.join(dir, 'build.mjs')], { timeout: 120_000 }, (e, _out, stderr) => resolve(e ? e.message : stderr.trim()));
    });
    if (!existsSync(file)) return { addon: null, detail: err || 'native/build.mjs built nothing' };
  }
  const mod = { exports: {} as Partial<Addon> };
  process.dlopen(mod, file);
  const addon = mod.exports;
  const missing = REQUIRED.filter((k) => typeof addon[k] !== 'function');
  if (missing.length > 0) return { addon: null, detail: `${file} lacks ${missing.join(', ')}` };
  (addon as Addon).recvDispatch(dispatch, events);
  return { addon: addon as Addon, detail: `${path.basename(file)}, ${how}` };
}

/** Receivers by the id the addon reports them under. */
const receivers = new Map<number, UdpReceiver>();
let nextId = 1;
/** Filled by the addon before each dispatch: per receiver, its id, datagrams in its ring, and 1 if it became writable. */
const EVENT_WORDS = 3;
const events = new Int32Array(EVENT_WORDS * 1024);

/**
 * The addon's one call per loop iteration (see native/udp_batch.c, recvDispatch). A listener that throws does not
 * keep the others from their datagrams: the first exception is thrown once all have been served, and reaches
 * `uncaughtException` like one thrown by a dgram listener.
 */
function dispatch(k: number): void {
  let error: unknown = null;
  for (let i = 0; i < k; i++) {
    const r = receivers.get(events[i * EVENT_WORDS]!);
    if (!r) continue;
    const n = events[i * EVENT_WORDS + 1]!;
    try {
      if (events[i * EVENT_WORDS + 2] === 1) r.opts.onWritable?.();
      if (n > 0 && r.active) r.opts.onPackets(n);
    } catch (e) {
      error ??= e;
    }
  }
  if (error !== null) throw error;
}

/** Walks up from this module (server/ in the source tree, dist/server/ once built) to native/. */
function findNativeDir(): string | null {
  let d = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const n = path.join(d, 'native');
    if (existsSync(path.join(n, 'udp_batch.c'))) return n;
    d = path.dirname(d);
  }
  return null;
}

/** dgram keeps its libuv handle (which has the fd on Unix) under a symbol-keyed state object. */
export function stateOf(socket: Socket): { handle: UdpHandle | null } | null {
  const sym = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol');
  const state = sym ? ((socket as unknown as Record<symbol, unknown>)[sym] as { handle: UdpHandle | null } | undefined) : undefined;
  return state && typeof state === 'object' && 'handle' in state ? state : null;
}

export interface ReceiverOptions {
  /** Bytes per slot: a longer datagram is reported truncated (length -1). */
  slot: number;
  /** Slots: datagrams taken per recvmmsg (at most 64). */
  max: number;
  /** `n` datagrams are in the ring: datagram i at i * slot, described by `meta` words i * META_WORDS …. */
  onPackets: (n: number) => void;
  /** The socket can take sends again after one returned EAGAIN and `wantWritable` was called. */
  onWritable?: () => void;
}

/**
 * Receives a bound dgram socket's datagrams through the addon. Once started, the socket must not be sent on
 * through dgram (libuv's own watcher for the fd would take the poll over): send with `sendTo` or the addon's other
 * send calls on `fd`. `stop` must come before the socket is closed; the socket's close() is wrapped to ensure it.
 */
export class UdpReceiver {
  readonly ring: Buffer;
  readonly meta: Int32Array;
  readonly slot: number;
  readonly fd: number;
  readonly opts: ReceiverOptions;
  private readonly addon: Addon;
  private readonly id: number;
  private handle: object | null = null;

  private constructor(addon: Addon, fd: number, ring: Buffer, meta: Int32Array, opts: ReceiverOptions, id: number) {
    this.addon = addon;
    this.fd = fd;
    this.ring = ring;
    this.meta = meta;
    this.slot = opts.slot;
    this.opts = opts;
    this.id = id;
  }

  /** Takes the socket's receiving over, or returns null and leaves dgram receiving (no fd, already polled). */
  static start(addon: Addon, socket: Socket, o: ReceiverOptions): UdpReceiver | null {
    const h = stateOf(socket)?.handle;
    const fd = h?.fd;
    if (!h || typeof fd !== 'number' || fd < 0 || typeof h.recvStop !== 'function' || h.getSendQueueCount() !== 0) return null;
    const max = Math.max(1, Math.min(64, o.max));
    const ring = Buffer.allocUnsafeSlow(max * o.slot);
    const meta = new Int32Array(max * META_WORDS);
    h.recvStop();
    // Ids are never reused while the process lives (2^31 of them): a dispatch never reaches a newer receiver
    // with what an older one, stopped during the same dispatch, had read.
    const id = nextId;
    nextId = nextId >= 0x7fffffff ? 1 : nextId + 1;
    const r = new UdpReceiver(addon, fd, ring, meta, o, id);
    try {
      r.handle = addon.recvStart(fd, ring, o.slot, meta, max, id);
    } catch {
      h.recvStart?.();
      return null;
    }
    receivers.set(id, r);
    const close = socket.close;
    socket.close = function (this: Socket, ...args: unknown[]) {
      r.stop();
      return (close as (...a: unknown[]) => Socket).apply(this, args);
    } as Socket['close'];
    return r;
  }

  get active(): boolean {
    return this.handle !== null;
  }

  stop(): void {
    if (!this.handle) return;
    this.addon.recvStop(this.handle);
    this.handle = null;
    receivers.delete(this.id);
  }

  /**
   * Lets the addon answer window-closing ACKs from `pool` to the peer `sockaddr` (see AP). False when stopped, or
   * when the addon's state has another size than this module's (a stale build).
   */
  autopilot(ap: Float64Array, pool: Buffer, sockaddr: Buffer): boolean {
    if (!this.handle) return false;
    return this.addon.recvAutopilot(this.handle, ap, pool, sockaddr) === AP.WORDS;
  }

  /** Asks for onWritable once the socket's send buffer has room. */
  wantWritable(): void {
    if (this.handle) this.addon.recvWantWritable(this.handle);
  }

  /** One datagram to a numeric address: bytes sent, or -errno (EAGAIN: send buffer full). */
  sendTo(buf: Buffer, address: string, port: number, off = 0, len = buf.length - off): number {
    if (!this.handle) return -9; // EBADF: stopped, the socket is closing
    return this.addon.sendTo(this.fd, buf, off, len, address, port);
  }

  /** Length of datagram i (-1: longer than a slot, truncated). */
  length(i: number): number {
    return this.meta[i * META_WORDS]!;
  }

  port(i: number): number {
    return this.meta[i * META_WORDS + 1]!;
  }

  /** Source address of datagram i as Node's dgram spells it. */
  address(i: number): string {
    return formatAddress(this.meta, i * META_WORDS);
  }
}

/** `meta[at + 2..]`: family, then address words, as native/udp_batch.c writes them. */
export function formatAddress(meta: Int32Array, at: number): string {
  if (meta[at + 2] === 4) {
    const a = meta[at + 3]! >>> 0;
    return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
  }
  const w = [meta[at + 3]! >>> 0, meta[at + 4]! >>> 0, meta[at + 5]! >>> 0, meta[at + 6]! >>> 0];
  const scope = meta[at + 7]! >>> 0;
  let s: string;
  if (w[0] === 0 && w[1] === 0 && w[2] === 0xffff) {
    const a = w[3]!;
    s = `::ffff:${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
  } else {
    const g = w.flatMap((x) => [x >>> 16, x & 0xffff]);
    // RFC 5952: the longest run of two or more zero groups (the first of equals) becomes '::'.
    let best = -1;
    let bestLen = 1;
    for (let i = 0; i < 8; ) {
      if (g[i] !== 0) {
        i++;
        continue;
      }
      let j = i;
      while (j < 8 && g[j] === 0) j++;
      if (j - i > bestLen) {
        best = i;
        bestLen = j - i;
      }
      i = j;
    }
    const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(':');
    s = best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
  }
  return scope ? `${s}%${scope}` : s;
}
