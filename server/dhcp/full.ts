/**
 * Full DHCP (RFC 2131) for isolated labs: pools, reservations, leases in the state database, and
 * the PXE boot answer folded into OFFER/ACK for network-boot clients. Clients are identified by
 * MAC (chaddr), not option 61, so PXE firmware, iPXE and the installed OS on one machine keep one
 * address.
 */
import type { PxeFacts } from '../../boot/types.ts';
import { FLAG_BROADCAST, readIpOption, u32Option, type DhcpPacket } from './codec.ts';
import { ipToString, parseIp } from './ip.ts';
import type { LeaseStore } from './leases.ts';
import { advertisedAddress, poolFor, type ResolvedPool } from './networks.ts';
import { MsgType, Opt } from './options.ts';
import { bootAnswer, bootClass, factsFrom } from './pxe.ts';
import { type Destination, drop, type Inbound, ipBuf, type Outcome, replyTo, type ResponderContext } from './respond.ts';

export interface FullContext extends ResponderContext {
  store: LeaseStore;
  authoritative: boolean;
  offerHoldMs: number;
  declineHoldMs: number;
  now: number;
}

function choosePool(inb: Inbound, ctx: FullContext, useCiaddr: boolean): ResolvedPool | undefined {
  const p = inb.packet;
  if (p.giaddr !== '0.0.0.0') return poolFor(ctx.topo, parseIp(p.giaddr) ?? 0);
  if (useCiaddr && p.ciaddr !== '0.0.0.0') return poolFor(ctx.topo, parseIp(p.ciaddr) ?? 0);
  return ctx.topo.localPool;
}

function serverId(inb: Inbound, ctx: FullContext, pool: ResolvedPool): string {
  const relayed = inb.packet.giaddr !== '0.0.0.0';
  return advertisedAddress(ctx.topo, ctx.serverAddress, relayed ? inb.local : (pool.link ?? inb.local), relayed);
}

function isOwnAddress(ctx: FullContext, ip: number): boolean {
  return ctx.topo.links.some((l) => l.addr === ip);
}

/** May `mac` have `ip` from `pool` right now? Reserved addresses only for their owner; never a held one. */
function usable(ctx: FullContext, pool: ResolvedPool, mac: string, ip: number): boolean {
  const owner = ctx.topo.reservedIps.get(ip);
  if (owner !== undefined) return owner === mac && !ctx.store.heldByOther(ip, mac, ctx.now);
  if (ip < pool.start || ip > pool.end || isOwnAddress(ctx, ip)) return false;
  return !ctx.store.heldByOther(ip, mac, ctx.now);
}

type Allocation = { ip: number; why: string } | { error: string };

function allocate(ctx: FullContext, pool: ResolvedPool, mac: string, requested: number | undefined): Allocation {
  const res = ctx.topo.reservationsByMac.get(mac);
  if (res && res.pool === pool) {
    if (ctx.store.heldByOther(res.ip, mac, ctx.now)) return { error: `reserved ${ipToString(res.ip)} is still leased to another client` };
    return { ip: res.ip, why: 'reservation' };
  }
  const prev = ctx.store.latestFor(mac, pool.start, pool.end);
  if (prev && usable(ctx, pool, mac, prev.ip)) return { ip: prev.ip, why: `its ${prev.state} lease` };
  if (requested !== undefined && usable(ctx, pool, mac, requested)) return { ip: requested, why: 'requested address' };
  // Never-used addresses first, so released and expired leases can still come back to their owners;
  // then the address free for the longest time.
  const skip = (ip: number) => ctx.topo.reservedIps.has(ip) || isOwnAddress(ctx, ip);
  const fresh = ctx.store.firstUnused(pool.start, pool.end, skip);
  if (fresh !== undefined) return { ip: fresh, why: 'free address' };
  const oldest = ctx.store.oldestFree(pool.start, pool.end, ctx.now, skip);
  if (oldest !== undefined) return { ip: oldest, why: 'reused expired address' };
  return { error: `pool ${pool.subnet} is exhausted` };
}

/** Destination per RFC 2131 §4.1 (we cannot unicast to a client without an address: no ARP injection in Node, so broadcast). */
function destination(p: DhcpPacket, pool: ResolvedPool, nak: boolean): Destination | undefined {
  if (p.giaddr !== '0.0.0.0') return { kind: 'relay', address: p.giaddr };
  if (!nak && p.ciaddr !== '0.0.0.0') return { kind: 'client', address: p.ciaddr };
  if (pool.link) return { kind: 'broadcast', link: pool.link };
  return p.ciaddr !== '0.0.0.0' ? { kind: 'client', address: p.ciaddr } : undefined;
}

function addressOptions(pkt: DhcpPacket, pool: ResolvedPool, hostname: string | undefined, withLease: boolean): void {
  const o = pkt.options;
  if (withLease) {
    o.set(Opt.LEASE_TIME, u32Option(pool.leaseSeconds));
    o.set(Opt.RENEWAL_T1, u32Option(Math.floor(pool.leaseSeconds / 2)));
    o.set(Opt.REBINDING_T2, u32Option(Math.floor((pool.leaseSeconds * 7) / 8)));
  }
  o.set(Opt.SUBNET_MASK, u32Option(pool.cidr.mask));
  o.set(Opt.BROADCAST, u32Option(pool.cidr.broadcast));
  if (pool.router) o.set(Opt.ROUTER, ipBuf(pool.router));
  if (pool.dns.length) o.set(Opt.DNS, Buffer.concat(pool.dns.map(ipBuf)));
  if (pool.domain) o.set(Opt.DOMAIN, Buffer.from(pool.domain, 'latin1'));
  if (hostname) o.set(Opt.HOSTNAME, Buffer.from(hostname, 'latin1'));
}

/** Adds the boot answer for PXE/HTTP clients; returns a log fragment. Non-boot clients get an address only. */
function addBoot(inb: Inbound, ctx: FullContext, pkt: DhcpPacket, sid: string): { facts?: PxeFacts; note: string } {
  if (!bootClass(inb.packet)) return { note: '' };
  const facts = factsFrom(inb.packet, sid);
  const d = ctx.decide(facts);
  if (d.action !== 'boot') return { facts, note: ` (no boot: ${d.reason})` };
  const boot = bootAnswer(inb.packet, facts, d, sid, ctx.menu);
  if ('error' in boot) return { facts, note: ` (no boot: ${boot.error})` };
  pkt.siaddr = boot.siaddr;
  pkt.file = boot.file;
  for (const [k, v] of boot.options) pkt.options.set(k, v);
  return { facts, note: ` boot ${boot.cls} ${d.bootFile} (${d.reason})` };
}

function nak(inb: Inbound, ctx: FullContext, pool: ResolvedPool, why: string): Outcome {
  const sid = serverId(inb, ctx, pool);
  const pkt = replyTo(inb.packet, MsgType.NAK, sid);
  pkt.options.set(Opt.MESSAGE, Buffer.from(why.slice(0, 200), 'latin1'));
  if (inb.packet.giaddr !== '0.0.0.0') pkt.flags |= FLAG_BROADCAST; // the relay must broadcast it
  const to = destination(inb.packet, pool, true);
  if (!to) return drop('no_route', `would NAK (${why}) but cannot reach the client`);
  return { replies: [{ type: 'NAK', packet: pkt, to }], answered: 'NAK', why };
}

function ack(inb: Inbound, ctx: FullContext, pool: ResolvedPool, ip: number, why: string): Outcome {
  const mac = inb.mac;
  const res = ctx.topo.reservationsByMac.get(mac);
  const hostname = res?.ip === ip ? res.hostname : undefined;
  const clientName = inb.packet.options.get(Opt.HOSTNAME)?.toString('latin1');
  ctx.store.put({ ip, mac, state: 'bound', expiresAt: ctx.now + pool.leaseSeconds * 1000, ...((hostname ?? clientName) ? { hostname: (hostname ?? clientName)! } : {}) }, ctx.now);
  const sid = serverId(inb, ctx, pool);
  const pkt = replyTo(inb.packet, MsgType.ACK, sid);
  pkt.ciaddr = inb.packet.ciaddr;
  pkt.yiaddr = ipToString(ip);
  addressOptions(pkt, pool, hostname, true);
  const boot = addBoot(inb, ctx, pkt, sid);
  const to = destination(inb.packet, pool, false);
  if (!to) return drop('no_route', 'cannot reach the client');
  return { replies: [{ type: 'ACK', packet: pkt, to }], answered: `ACK ${ipToString(ip)}${boot.note}`, why, ...(boot.facts ? { facts: boot.facts } : {}) };
}

/** Check a client's claim to `ip` (INIT-REBOOT, RENEWING, REBINDING, or SELECTING our offer). */
function verify(inb: Inbound, ctx: FullContext, pool: ResolvedPool, ip: number, selecting: boolean): Outcome {
  const mac = inb.mac;
  const ipS = ipToString(ip);
  if (poolFor(ctx.topo, ip) !== pool) return nak(inb, ctx, pool, `${ipS} is not on this network (${pool.subnet})`);
  const res = ctx.topo.reservationsByMac.get(mac);
  if (res && res.pool === pool && res.ip !== ip) return nak(inb, ctx, pool, `${mac} is reserved ${ipToString(res.ip)}`);
  const owner = ctx.topo.reservedIps.get(ip);
  if (owner !== undefined && owner !== mac) return nak(inb, ctx, pool, `${ipS} is reserved for ${owner}`);
  const lease = ctx.store.get(ip);
  if (lease && lease.mac === mac && lease.state !== 'declined' && usable(ctx, pool, mac, ip)) {
    return ack(inb, ctx, pool, ip, selecting ? 'selected our offer' : `confirms its lease (${lease.state})`);
  }
  if (ctx.store.heldByOther(ip, mac, ctx.now)) return nak(inb, ctx, pool, `${ipS} is leased to another client`);
  if (selecting) return nak(inb, ctx, pool, `${ipS} was not offered to ${mac}`);
  if (!ctx.authoritative) return drop('unknown_client', `no record of ${mac} holding ${ipS}; not authoritative`);
  if (!usable(ctx, pool, mac, ip)) return nak(inb, ctx, pool, `${ipS} is outside the range`);
  return ack(inb, ctx, pool, ip, 'free address claimed (authoritative)');
}

export function fullRespond(inb: Inbound, ctx: FullContext): Outcome {
  const p = inb.packet;
  const mac = inb.mac;
  const sidOpt = readIpOption(p.options.get(Opt.SERVER_ID));
  const forOther = sidOpt !== undefined && !ctx.topo.serverIds.has(sidOpt);

  switch (inb.type) {
    case 'DISCOVER': {
      const pool = choosePool(inb, ctx, false);
      if (!pool) return drop('no_pool', p.giaddr !== '0.0.0.0' ? `no pool for relay ${p.giaddr}` : 'no pool on the attached network');
      const requested = readIpOption(p.options.get(Opt.REQUESTED_IP));
      const a = allocate(ctx, pool, mac, requested === undefined ? undefined : parseIp(requested));
      if ('error' in a) return drop('no_address', a.error);
      const existing = ctx.store.get(a.ip);
      const keepBound = existing && existing.mac === mac && existing.state === 'bound' && existing.expiresAt > ctx.now;
      if (!keepBound) ctx.store.hold({ ip: a.ip, mac, state: 'offered', expiresAt: ctx.now + ctx.offerHoldMs }, ctx.now);
      const sid = serverId(inb, ctx, pool);
      const pkt = replyTo(p, MsgType.OFFER, sid);
      pkt.yiaddr = ipToString(a.ip);
      const res = ctx.topo.reservationsByMac.get(mac);
      addressOptions(pkt, pool, res?.ip === a.ip ? res.hostname : undefined, true);
      const boot = addBoot(inb, ctx, pkt, sid);
      const to = destination(p, pool, false);
      if (!to) return drop('no_route', 'cannot reach the client');
      return { replies: [{ type: 'OFFER', packet: pkt, to }], answered: `OFFER ${pkt.yiaddr}${boot.note}`, why: a.why, ...(boot.facts ? { facts: boot.facts } : {}) };
    }
    case 'REQUEST': {
      const requested = readIpOption(p.options.get(Opt.REQUESTED_IP));
      if (sidOpt !== undefined) {
        // SELECTING: the client picked a server's offer.
        if (forOther) {
          const pool = choosePool(inb, ctx, false);
          const mine = pool && ctx.store.latestFor(mac, pool.start, pool.end);
          if (mine && mine.state === 'offered') ctx.store.hold({ ...mine, state: 'released', expiresAt: ctx.now }, ctx.now);
          return drop('other_server', `client chose server ${sidOpt}`, true);
        }
        const pool = choosePool(inb, ctx, false);
        if (!pool) return drop('no_pool', 'no pool for this client');
        const ip = parseIp(requested ?? p.ciaddr) ?? 0;
        return verify(inb, ctx, pool, ip, true);
      }
      if (p.ciaddr === '0.0.0.0') {
        // INIT-REBOOT: the client remembers an address and asks to keep it.
        if (requested === undefined) return drop('bad_request', 'REQUEST without server id, requested address or ciaddr');
        const pool = choosePool(inb, ctx, false);
        if (!pool) return drop('no_pool', 'no pool for this client');
        return verify(inb, ctx, pool, parseIp(requested)!, false);
      }
      // RENEWING (unicast) or REBINDING (broadcast).
      const pool = choosePool(inb, ctx, true);
      if (!pool) return drop('no_pool', `${p.ciaddr} is in none of our pools`);
      return verify(inb, ctx, pool, parseIp(p.ciaddr)!, false);
    }
    case 'RELEASE': {
      if (forOther) return drop('other_server', `RELEASE for server ${sidOpt}`, true);
      const ip = parseIp(p.ciaddr) ?? 0;
      const l = ctx.store.get(ip);
      if (!l || l.mac !== mac || l.state === 'declined') return drop('unknown_lease', `${mac} holds no lease on ${p.ciaddr}`);
      ctx.store.put({ ...l, state: 'released', expiresAt: ctx.now }, ctx.now);
      return { replies: [], answered: 'nothing (RELEASE)', why: `released ${p.ciaddr}` };
    }
    case 'DECLINE': {
      if (forOther) return drop('other_server', `DECLINE for server ${sidOpt}`, true);
      const ipS = readIpOption(p.options.get(Opt.REQUESTED_IP));
      const ip = ipS === undefined ? undefined : parseIp(ipS);
      const l = ip === undefined ? undefined : ctx.store.get(ip);
      if (ip === undefined || !l || l.mac !== mac) return drop('unknown_lease', `${mac} declined ${ipS ?? '(none)'} it does not hold`);
      ctx.store.put({ ip, mac: '', state: 'declined', expiresAt: ctx.now + ctx.declineHoldMs }, ctx.now);
      return { replies: [], answered: 'nothing (DECLINE)', why: `${ipS} is in use by someone else; quarantined` };
    }
    case 'INFORM': {
      const pool = choosePool(inb, ctx, true);
      if (!pool) return drop('no_pool', `${p.ciaddr} is in none of our pools`);
      const sid = serverId(inb, ctx, pool);
      const pkt = replyTo(p, MsgType.ACK, sid);
      pkt.ciaddr = p.ciaddr;
      addressOptions(pkt, pool, undefined, false);
      const boot = addBoot(inb, ctx, pkt, sid);
      const to: Destination | undefined = p.giaddr !== '0.0.0.0' ? { kind: 'relay', address: p.giaddr }
        : p.ciaddr !== '0.0.0.0' ? { kind: 'source', address: p.ciaddr, port: inb.source.port } : undefined;
      if (!to) return drop('bad_inform', 'INFORM without ciaddr');
      return { replies: [{ type: 'ACK', packet: pkt, to }], answered: `ACK (INFORM)${boot.note}`, why: 'configuration only', ...(boot.facts ? { facts: boot.facts } : {}) };
    }
    default:
      return drop('unexpected_type', `${inb.type} is a server message`);
  }
}
