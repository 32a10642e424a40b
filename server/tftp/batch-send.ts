/**
 * Sends a TFTP window in one syscall through the native addon native/udp_batch.c: UDP GSO (the kernel cuts one
 * buffer into the window's datagrams), else sendmmsg. Node's dgram costs a sendmsg per datagram, and that
 * per-packet send path was most of the server's CPU (see README, performance).
 *
 * The addon is optional: loaded (and built on first use when `npm ci` did not) once per process, and when it is
 * missing, fails to build or load, or the socket has no fd, every send goes through dgram as before.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { Socket } from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface Addon {
  sockaddr(address: string, port: number): Buffer | null;
  sendGso(fd: number, sa: Buffer, ring: Buffer, off: number, len: number, seg: number): number;
  sendMmsg(fd: number, sa: Buffer, ring: Buffer, off: number, len: number, seg: number): number;
}

interface UdpHandle {
  fd?: number;
  getSendQueueCount(): number;
}

export type SendPath = 'gso' | 'sendmmsg' | 'dgram';

export interface BatchSend {
  /** What a window goes out as, unless a peer's route refuses GSO. */
  path: SendPath;
  /** Why the addon is not used (path 'dgram'), or how it was found. */
  detail: string;
  /**
   * A sender for one transfer's socket and peer, or null (no addon, no fd, address the addon cannot parse).
   * `gso: false` starts it on sendmmsg whatever the kernel supports.
   */
  forPeer(socket: Socket, address: string, port: number, gso?: boolean): PeerSender | null;
}

/** GSO refused for this route or kernel, not for this one send: EINVAL (no UDP_SEGMENT, segment above the MTU),
 *  EIO (device without checksum offload, xfrm), EMSGSIZE, ENOPROTOOPT, EOPNOTSUPP. */
const GSO_REFUSED = new Set([-22, -5, -90, -92, -95]);

/**
 * One transfer's batched sender. `send` pushes a run of datagrams from a ring of equal slots and returns how many
 * bytes left; the caller sends the rest (a full socket buffer, a closed socket) through dgram, which queues them in
 * order. While dgram has datagrams queued, nothing is sent around them: 0 is returned.
 */
export class PeerSender {
  private readonly addon: Addon;
  private readonly state: { handle: UdpHandle | null };
  private readonly sa: Buffer;
  private gso: boolean;

  constructor(addon: Addon, state: { handle: UdpHandle | null }, sa: Buffer, gso: boolean) {
    this.addon = addon;
    this.state = state;
    this.sa = sa;
    this.gso = gso;
  }

  send(ring: Buffer, off: number, len: number, seg: number): number {
    // Read at each send, never cached: once the socket is closed its fd number may belong to another socket.
    const h = this.state.handle;
    const fd = h?.fd;
    if (!h || typeof fd !== 'number' || fd < 0 || h.getSendQueueCount() !== 0) return 0;
    if (this.gso) {
      const r = this.addon.sendGso(fd, this.sa, ring, off, len, seg);
      if (r >= 0) return r;
      // Anything else (EAGAIN: the send buffer is full; EPERM: a firewall) is this send's fate, not GSO's.
      if (!GSO_REFUSED.has(r)) return 0;
      this.gso = false;
    }
    const r = this.addon.sendMmsg(fd, this.sa, ring, off, len, seg);
    return r > 0 ? r : 0;
  }
}

let loading: Promise<BatchSend> | null = null;

/** The process's batched sender, loaded once (building the addon first if needed, which takes about a second). */
export function loadBatchSend(): Promise<BatchSend> {
  loading ??= load().catch((e: unknown) => dgramOnly(`load failed: ${(e as Error).message}`));
  return loading;
}

export function dgramOnly(detail: string): BatchSend {
  return { path: 'dgram', detail, forPeer: () => null };
}

async function load(): Promise<BatchSend> {
  if (process.platform !== 'linux') return dgramOnly(`${process.platform}: GSO and sendmmsg are Linux only`);
  const dir = findNativeDir();
  if (!dir) return dgramOnly('native/udp_batch.c not found beside the server code');
  const src = readFileSync(path.join(dir, 'udp_batch.c'));
  const h = createHash('sha256').update(src).update(`${process.platform}-${process.arch}`).digest('hex').slice(0, 16);
  const file = path.join(dir, 'build', `udp_batch-${h}.node`);
  let how = 'prebuilt';
  if (!existsSync(file)) {
    how = 'built at first use';
    const err = await new Promise<string>((resolve) => {
      execFile(process.execPath, [path.join(dir, 'build.mjs')], { timeout: 120_000 }, (e, _out, stderr) => resolve(e ? e.message : stderr.trim()));
    });
    if (!existsSync(file)) return dgramOnly(err || 'native/build.mjs built nothing');
  }
  const mod = { exports: {} as Partial<Addon> };
  process.dlopen(mod, file);
  const addon = mod.exports;
  if (typeof addon.sendGso !== 'function' || typeof addon.sendMmsg !== 'function' || typeof addon.sockaddr !== 'function') {
    return dgramOnly(`${file} lacks sendGso/sendMmsg/sockaddr`);
  }
  const gso = await probeGso(addon as Addon);
  return {
    path: gso ? 'gso' : 'sendmmsg',
    detail: `${path.basename(file)}, ${how}${gso ? '' : '; this kernel refuses UDP_SEGMENT'}`,
    forPeer: (socket, address, port, useGso = gso) => {
      const state = stateOf(socket);
      if (!state || typeof state.handle?.fd !== 'number' || state.handle.fd < 0) return null;
      const sa = (addon as Addon).sockaddr(address, port);
      return sa ? new PeerSender(addon as Addon, state, sa, useGso && gso) : null;
    },
  };
}

/** Walks up from this module (server/tftp/ in the source tree, dist/server/tftp/ once built) to native/. */
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
function stateOf(socket: Socket): { handle: UdpHandle | null } | null {
  const sym = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol');
  const state = sym ? ((socket as unknown as Record<symbol, unknown>)[sym] as { handle: UdpHandle | null } | undefined) : undefined;
  return state && typeof state === 'object' && 'handle' in state ? state : null;
}

/** Sends two GSO segments to a socket of our own on loopback: kernels before 4.18 refuse the UDP_SEGMENT cmsg. */
async function probeGso(addon: Addon): Promise<boolean> {
  const dgram = await import('node:dgram');
  const rx = dgram.createSocket('udp4');
  const tx = dgram.createSocket('udp4');
  try {
    await new Promise<void>((r, j) => rx.once('error', j).bind(0, '127.0.0.1', () => r()));
    await new Promise<void>((r, j) => tx.once('error', j).bind(0, '127.0.0.1', () => r()));
    const got = new Promise<number>((resolve) => {
      let n = 0;
      rx.on('message', (m) => {
        if (m.length === 8 && ++n === 2) resolve(n);
      });
      setTimeout(() => resolve(n), 500).unref();
    });
    const fd = stateOf(tx)?.handle?.fd;
    const sa = addon.sockaddr('127.0.0.1', rx.address().port);
    if (typeof fd !== 'number' || !sa) return false;
    if (addon.sendGso(fd, sa, Buffer.alloc(16), 0, 16, 8) !== 16) return false;
    return (await got) === 2;
  } catch {
    return false;
  } finally {
    rx.close();
    tx.close();
  }
}
