/** Shared shapes of the responders: what came in, and what to send where. */
import type { PxeDecider, PxeFacts } from '../../boot/types.ts';
import { BOOTREPLY, type DhcpPacket } from './codec.ts';
import type { Link, Topology } from './networks.ts';
import type { MsgTypeName } from './options.ts';
import { Opt } from './options.ts';
import type { PxeMenu } from './types.ts';

export interface Inbound {
  packet: DhcpPacket;
  type: MsgTypeName;
  mac: string;
  /** 'dhcp' = the DHCP port (67), 'pxe' = the boot server discovery port (4011). */
  via: 'dhcp' | 'pxe';
  source: { address: string; port: number };
  /** Set when the packet was unicast to one of our interface addresses (its socket tells us which). */
  local?: Link;
}

export type Destination =
  /** Broadcast on one link, or (proxy mode, link unknown) on every link, each with its own server address. */
  | { kind: 'broadcast'; link: Link }
  | { kind: 'relay'; address: string }
  | { kind: 'client'; address: string }
  /** Straight back to the sender's address and port (the 4011 exchange). */
  | { kind: 'source'; address: string; port: number };

export interface Reply {
  type: 'OFFER' | 'ACK' | 'NAK';
  packet: DhcpPacket;
  to: Destination;
}

/** One transaction's result: what we sent (maybe nothing) and why, for the single log line. */
export interface Outcome {
  replies: Reply[];
  /** Set when nothing was answered: the `swarmboot_dhcp_dropped_total{reason}` label. */
  drop?: string;
  /** Human-readable why, for the log. */
  why: string;
  /** Debug-level outcomes are routine noise (e.g. non-PXE clients seen by a ProxyDHCP). */
  quiet?: boolean;
  facts?: PxeFacts;
  answered?: string;
}

export interface ResponderContext {
  topo: Topology;
  decide: PxeDecider;
  menu: PxeMenu | undefined;
  /** Configured advertised address, overriding the interface's own. */
  serverAddress: string | undefined;
}

export function drop(reason: string, why: string, quiet = false): Outcome {
  return { replies: [], drop: reason, why, quiet };
}

/** A reply skeleton mirroring the request's identifiers. */
export function replyTo(req: DhcpPacket, type: number, serverId: string): DhcpPacket {
  return {
    op: BOOTREPLY,
    htype: req.htype,
    hlen: req.hlen,
    hops: 0,
    xid: req.xid,
    secs: 0,
    flags: req.flags,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: req.giaddr,
    chaddr: req.chaddr,
    sname: '',
    file: '',
    options: new Map([
      [Opt.MESSAGE_TYPE, Buffer.from([type])],
      [Opt.SERVER_ID, ipBuf(serverId)],
    ]),
  };
}

const ipBufs = new Map<string, Buffer>();

/** 4-byte option value for an address. Server addresses repeat on every reply, so they are cached (never mutated). */
export function ipBuf(ip: string): Buffer {
  let b = ipBufs.get(ip);
  if (!b) {
    const p = ip.split('.');
    b = Buffer.from([Number(p[0]), Number(p[1]), Number(p[2]), Number(p[3])]);
    if (ipBufs.size < 1024) ipBufs.set(ip, b);
  }
  return b;
}
