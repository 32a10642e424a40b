/**
 * The socket-free core of the DHCP front end: bytes in → decode → validate → rate limit → responder
 * → encoded replies out, with metrics and one log line per transaction. Never throws: anything
 * unexpected is counted as dropped (`internal`) and logged.
 */
import type { Logger } from '../log.ts';
import type { Registry } from '../metrics.ts';
import { BOOTREQUEST, decodePacket, DhcpDecodeError, encodePacket, type DhcpPacket } from './codec.ts';
import { fullRespond } from './full.ts';
import { macToString } from './ip.ts';
import type { LeaseStore } from './leases.ts';
import type { Link, Topology } from './networks.ts';
import { msgTypeName, Opt } from './options.ts';
import { proxyRespond } from './proxy.ts';
import { RateLimiter, RecentTransactions } from './ratelimit.ts';
import type { Destination, Inbound, Outcome, ResponderContext } from './respond.ts';
import type { DhcpOptions } from './types.ts';

/** An encoded reply and where it goes; server.ts maps `to` onto a socket, address and port. */
export interface Outgoing {
  buf: Buffer;
  to: Destination;
  type: string;
}

export interface HandlerDeps {
  opts: DhcpOptions;
  topo: Topology;
  store?: LeaseStore;
  logger: Logger;
  metrics: Registry;
  /** Clock in ms, injectable for tests. */
  now?: () => number;
}

export interface HandleResult {
  out: Outgoing[];
  /** 'dropped' includes both malformed input and valid requests we chose not to answer. */
  result: 'replied' | 'dropped' | 'handled';
  reason?: string;
}

export interface DhcpHandler {
  handle(buf: Buffer, source: { address: string; port: number }, via: 'dhcp' | 'pxe', local?: Link): HandleResult;
}

export function createHandler(deps: HandlerDeps): DhcpHandler {
  const { opts, topo, store } = deps;
  const log = deps.logger.child({ component: 'dhcp' });
  const now = deps.now ?? Date.now;
  const packets = deps.metrics.counter('swarmboot_dhcp_packets_total', 'DHCP packets received, by message type');
  const dropped = deps.metrics.counter('swarmboot_dhcp_dropped_total', 'DHCP packets not answered, by reason');
  const limiter = new RateLimiter(opts.rateLimit ?? { burst: 20, perSecond: 2 });
  const ctx: ResponderContext = { topo, decide: opts.decide, menu: opts.pxeMenu, serverAddress: opts.serverAddress };
  const fullCtxBase = {
    ...ctx,
    authoritative: opts.authoritative ?? true,
    offerHoldMs: (opts.offerHoldSeconds ?? 60) * 1000,
    declineHoldMs: (opts.declineHoldSeconds ?? 600) * 1000,
  };
  // Retransmissions reuse the xid: log a transaction's decision once, repeats at debug.
  const logged = new RecentTransactions();

  function dropOut(reason: string, msg: string, fields: object, level: 'debug' | 'info' | 'warn' = 'debug'): HandleResult {
    dropped.inc({ reason });
    log[level]({ ...fields, reason }, msg);
    return { out: [], result: 'dropped', reason };
  }

  function respond(inb: Inbound): Outcome {
    // Boot server discovery (4011) is the same answer in both modes: boot information, no address.
    if (opts.mode === 'proxy' || inb.via === 'pxe') return proxyRespond(inb, ctx);
    return fullRespond(inb, { ...fullCtxBase, store: store!, now: now() });
  }

  function handle(buf: Buffer, source: { address: string; port: number }, via: 'dhcp' | 'pxe', local?: Link): HandleResult {
    let pkt: DhcpPacket;
    try {
      pkt = decodePacket(buf);
    } catch (e) {
      packets.inc({ type: 'malformed' });
      const reason = e instanceof DhcpDecodeError ? `malformed_${e.reason}` : 'malformed';
      return dropOut(reason, 'malformed packet dropped', { from: source.address, bytes: buf.length, err: (e as Error).message });
    }
    try {
      return handlePacket(pkt, source, via, local);
    } catch (e) {
      return dropOut('internal', 'error handling packet', { from: source.address, err: e instanceof Error ? e.stack : String(e) }, 'warn');
    }
  }

  function handlePacket(pkt: DhcpPacket, source: { address: string; port: number }, via: 'dhcp' | 'pxe', local?: Link): HandleResult {
    const mt = pkt.options.get(Opt.MESSAGE_TYPE);
    const type = mt && mt.length === 1 ? msgTypeName(mt[0] as number) : undefined;
    packets.inc({ type: type ?? 'invalid' });
    if (pkt.op !== BOOTREQUEST) return dropOut('not_request', 'BOOTREPLY sent to the server port', { from: source.address });
    if (!type) return dropOut('no_message_type', 'no valid option 53 (plain BOOTP is not served)', { from: source.address });
    if (pkt.htype !== 1 || pkt.hlen !== 6) return dropOut('not_ethernet', 'hardware type is not Ethernet', { from: source.address, htype: pkt.htype, hlen: pkt.hlen });
    const mac = macToString(pkt.chaddr);
    const t = now();
    const rate = limiter.take(pkt.chaddr, t);
    if (rate !== 'ok') {
      return dropOut('rate_limited', 'client over its rate limit; dropping its packets until it slows down', { mac }, rate === 'limited-first' ? 'warn' : 'debug');
    }
    const inb: Inbound = { packet: pkt, type, mac, via, source, ...(local ? { local } : {}) };
    const o = respond(inb);
    const out: Outgoing[] = o.replies.map((r) => ({ buf: encodePacket(r.packet), to: r.to, type: r.type }));

    const first = logged.add(pkt.chaddr, pkt.xid, mt![0]!, via === 'pxe' ? 1 : 0);
    const level = !first || o.quiet ? 'debug' : 'info';
    if (o.facts && o.facts.firmware === 'unknown' && first) log.warn({ mac, arch: o.facts.archCode }, 'unknown client architecture; boot policy decides');
    if (o.drop) dropped.inc({ reason: o.drop });
    if (log.isLevelEnabled(level)) {
      const f = o.facts;
      log[level]({
        mac,
        xid: pkt.xid,
        type,
        via,
        firmware: f?.firmware,
        arch: f?.archCode,
        ipxe: f?.ipxe,
        uuid: f?.uuid,
        relay: pkt.giaddr === '0.0.0.0' ? undefined : pkt.giaddr,
        answered: o.answered ?? 'nothing',
        why: o.why,
      }, o.drop ? `${type} from ${mac}: not answered` : `${type} from ${mac}: ${o.answered}`);
    }
    if (o.drop) return { out, result: 'dropped', reason: o.drop };
    return { out, result: out.length ? 'replied' : 'handled' };
  }

  return { handle };
}
