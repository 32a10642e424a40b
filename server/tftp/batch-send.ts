/**
 * Sends a TFTP window in one syscall through the native addon native/udp_batch.c: UDP GSO (the kernel cuts one
 * buffer into the window's datagrams), else sendmmsg. Node's dgram costs a sendmsg per datagram, and that
 * per-packet send path was most of the server's CPU (see README, performance).
 *
 * The addon is optional: loaded (and built on first use when `npm ci` did not) once per process, and when it is
 * missing, fails to build or load, or the socket has no fd, every send goes through dgram as before.
 */
import type { Socket } from 'node:dgram';
import { type Addon, loadNativeUdp, stateOf, UdpReceiver, type UdpHandle } from '../native-udp.ts';

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
 * One transfer's batched sender, and optionally its receiver. `send` pushes a run of datagrams from a ring of equal
 * slots and returns how many bytes left. Before `receive`, the caller sends the rest (a full socket buffer, a closed
 * socket) through dgram, which queues them in order; while dgram has datagrams queued, nothing is sent around them
 * (0 is returned). After `receive` took the socket over, dgram must not send on it at all: `sendOne` and `sendTo`
 * serve, and a full send buffer is reported through the receiver's writable callback.
 */
export class PeerSender {
  private readonly addon: Addon;
  private readonly state: { handle: UdpHandle | null };
  private readonly sa: Buffer;
  private readonly socket: Socket | null;
  private gso: boolean;
  /** The peer as the receiver's meta words spell it: port, family, 4 address words. */
  private readonly peer: Int32Array;
  rx: UdpReceiver | null = null;

  constructor(addon: Addon, state: { handle: UdpHandle | null }, sa: Buffer, gso: boolean, socket: Socket | null = null) {
    this.addon = addon;
    this.state = state;
    this.sa = sa;
    this.gso = gso;
    this.socket = socket;
    // struct sockaddr_in / sockaddr_in6 as the addon built it: family in host order, then the port and address in
    // network order (IPv6: after 4 bytes of flow info, and the scope id in host order after the address).
    this.peer = new Int32Array(6);
    this.peer[0] = sa.readUInt16BE(2);
    if (sa.length >= 28) {
      this.peer[1] = 6;
      for (let w = 0; w < 4; w++) this.peer[2 + w] = sa.readInt32BE(8 + 4 * w);
    } else {
      this.peer[1] = 4;
      this.peer[2] = sa.readInt32BE(4);
    }
  }

  /**
   * Takes the socket's receiving over (see UdpReceiver): `onPackets(n)` per batch, `onWritable` after a send found the
   * buffer full. False: dgram keeps receiving, nothing changed.
   */
  receive(slot: number, max: number, onPackets: (n: number) => void, onWritable: () => void): boolean {
    this.rx = this.socket && UdpReceiver.start(this.addon, this.socket, { slot, max, onPackets, onWritable });
    return this.rx !== null;
  }

  /** Datagram i of the receiver's batch came from this transfer's peer. */
  fromPeer(i: number): boolean {
    const m = this.rx!.meta;
    const at = i * 8;
    const p = this.peer;
    if (m[at + 1] !== p[0] || m[at + 3] !== p[2]) return false;
    if (p[1] === 4) return m[at + 2] === 4;
    return m[at + 2] === 6 && m[at + 4] === p[3] && m[at + 5] === p[4] && m[at + 6] === p[5];
  }

  /** Hands the receiver the transfer's autopilot state and ring (see native-udp.ts AP): false if it cannot take it. */
  autopilot(ap: Float64Array, pool: Buffer): boolean {
    return this.rx?.autopilot(ap, pool, this.sa) ?? false;
  }

  /** A run of datagrams goes out as one GSO buffer (until a route refuses it), not datagram by datagram. */
  get cutsWindows(): boolean {
    return this.gso;
  }

  /** One datagram to the peer, natively (after `receive`): bytes sent, or -errno. */
  sendOne(buf: Buffer): number {
    const fd = this.state.handle?.fd;
    if (!this.rx?.active || typeof fd !== 'number' || fd < 0) return -9;
    return this.addon.sendGso(fd, this.sa, buf, 0, buf.length, Math.max(1, buf.length));
  }

  send(ring: Buffer, off: number, len: number, seg: number): number {
    // Read at each send, never cached: once the socket is closed its fd number may belong to another socket.
    const h = this.state.handle;
    const fd = h?.fd;
    if (!h || typeof fd !== 'number' || fd < 0 || (this.rx ? !this.rx.active : h.getSendQueueCount() !== 0)) return 0;
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

/** The process's batched sender, loaded once (see native-udp.ts). */
export function loadBatchSend(): Promise<BatchSend> {
  loading ??= load().catch((e: unknown) => dgramOnly(`load failed: ${(e as Error).message}`));
  return loading;
}

export function dgramOnly(detail: string): BatchSend {
  return { path: 'dgram', detail, forPeer: () => null };
}

async function load(): Promise<BatchSend> {
  const { addon, detail } = await loadNativeUdp();
  if (!addon) return dgramOnly(detail);
  const gso = await probeGso(addon);
  return {
    path: gso ? 'gso' : 'sendmmsg',
    detail: `${detail}${gso ? '' : '; this kernel refuses UDP_SEGMENT'}`,
    forPeer: (socket, address, port, useGso = gso) => {
      const state = stateOf(socket);
      if (!state || typeof state.handle?.fd !== 'number' || state.handle.fd < 0) return null;
      const sa = addon.sockaddr(address, port);
      return sa ? new PeerSender(addon, state, sa, useGso && gso, socket) : null;
    },
  };
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
