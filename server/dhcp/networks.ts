/**
 * Turns DhcpOptions into the topology the responders use: the links (interfaces) we answer on, the
 * pools with their parsed ranges, reservations, and which pool a direct (non-relayed) client gets.
 * Everything a responder could get wrong at runtime is refused here, at start, with a clear error.
 */
import os from 'node:os';
import type { DhcpOptions, DhcpPool, DhcpReservation } from './types.ts';
import { menuProblems } from './pxe-menu.ts';
import { type Cidr, inSubnet, ipToString, maskToPrefix, normaliseMac, parseCidr, parseIp } from './ip.ts';

export class DhcpConfigError extends Error {
  constructor(message: string) {
    super(`dhcp config: ${message}`);
    this.name = 'DhcpConfigError';
  }
}

/** One network we answer broadcasts on: an interface and its (first) IPv4 address. */
export interface Link {
  name: string;
  address: string;
  addr: number;
  cidr: Cidr;
  /** What clients on this link are told to reach us at: the configured serverAddress when it lies in this link's subnet, else `address`. */
  advertise: string;
}

export interface ResolvedPool {
  subnet: string;
  cidr: Cidr;
  start: number;
  end: number;
  router?: string;
  dns: string[];
  domain?: string;
  leaseSeconds: number;
  /** The attached link when the pool's subnet is directly connected; undefined for relay-only pools. */
  link?: Link;
}

export interface ResolvedReservation {
  mac: string;
  ip: number;
  hostname?: string;
  pool: ResolvedPool;
}

export interface Topology {
  links: Link[];
  pools: ResolvedPool[];
  /** Full mode: the pool for broadcast clients without giaddr/ciaddr (at most one, see server.ts). */
  localPool?: ResolvedPool;
  reservationsByMac: Map<string, ResolvedReservation>;
  reservedIps: Map<number, string>;
  /** Every address that identifies this server (option 54 of a client's REQUEST/RELEASE/DECLINE). */
  serverIds: Set<string>;
}

type IfaceMap = NodeJS.Dict<os.NetworkInterfaceInfo[]>;

function linksFrom(opts: DhcpOptions, ifaces: IfaceMap): Link[] {
  const wanted = opts.interfaces;
  const names = wanted ?? Object.keys(ifaces).filter((n) => (ifaces[n] ?? []).some((a) => a.family === 'IPv4' && !a.internal));
  const links: Link[] = [];
  for (const name of names) {
    const entries = ifaces[name];
    if (!entries) throw new DhcpConfigError(`interface "${name}" does not exist (have: ${Object.keys(ifaces).join(', ')})`);
    const v4 = entries.find((a) => a.family === 'IPv4');
    if (!v4) throw new DhcpConfigError(`interface "${name}" has no IPv4 address: DHCP replies need one as their source and server identifier`);
    const prefix = maskToPrefix(v4.netmask);
    const cidr = prefix === undefined ? undefined : parseCidr(`${v4.address}/${prefix}`);
    const addr = parseIp(v4.address);
    if (!cidr || addr === undefined) throw new DhcpConfigError(`interface "${name}" has an unusable address ${v4.address}/${v4.netmask}`);
    // A configured address on another subnet is unreachable for a client here that has no router
    // (and wrong for one that has: it would talk to us through it), so each link advertises its own.
    const configured = opts.serverAddress === undefined ? undefined : parseIp(opts.serverAddress);
    const advertise = configured !== undefined && inSubnet(configured, cidr) ? opts.serverAddress! : v4.address;
    links.push({ name, address: v4.address, addr, cidr, advertise });
  }
  return links;
}

function resolvePool(p: DhcpPool, i: number): ResolvedPool {
  const where = `pools[${i}] (${p.subnet})`;
  const cidr = parseCidr(p.subnet);
  if (!cidr) throw new DhcpConfigError(`${where}: subnet must be a CIDR like 10.66.0.0/24`);
  if (cidr.prefix > 30) throw new DhcpConfigError(`${where}: /${cidr.prefix} has no room for clients`);
  const start = parseIp(p.rangeStart);
  const end = parseIp(p.rangeEnd);
  if (start === undefined || end === undefined) throw new DhcpConfigError(`${where}: rangeStart/rangeEnd must be IPv4 addresses`);
  if (!inSubnet(start, cidr) || !inSubnet(end, cidr)) throw new DhcpConfigError(`${where}: range ${p.rangeStart}-${p.rangeEnd} is not inside ${p.subnet}`);
  if (start > end) throw new DhcpConfigError(`${where}: rangeStart ${p.rangeStart} is after rangeEnd ${p.rangeEnd}`);
  if (start === cidr.network || end === cidr.broadcast) throw new DhcpConfigError(`${where}: the range must not include the network or broadcast address`);
  if (p.router !== undefined) {
    const r = parseIp(p.router);
    if (r === undefined || !inSubnet(r, cidr)) throw new DhcpConfigError(`${where}: router ${p.router} is not an address in ${p.subnet}`);
  }
  for (const d of p.dns ?? []) if (parseIp(d) === undefined) throw new DhcpConfigError(`${where}: dns ${d} is not an IPv4 address`);
  const leaseSeconds = p.leaseSeconds ?? 3600;
  if (!Number.isInteger(leaseSeconds) || leaseSeconds < 60 || leaseSeconds > 0x7fffffff) {
    throw new DhcpConfigError(`${where}: leaseSeconds must be an integer from 60 up`);
  }
  if (p.domain !== undefined && (p.domain.length === 0 || p.domain.length > 255)) throw new DhcpConfigError(`${where}: domain must be 1..255 characters`);
  return { subnet: p.subnet, cidr, start, end, ...(p.router ? { router: p.router } : {}), dns: p.dns ?? [], ...(p.domain ? { domain: p.domain } : {}), leaseSeconds };
}

/** Validate options against the host's interfaces (injectable for tests). Throws DhcpConfigError. */
export function resolveTopology(opts: DhcpOptions, ifaces: IfaceMap = os.networkInterfaces()): Topology {
  if (opts.mode !== 'proxy' && opts.mode !== 'full') throw new DhcpConfigError(`mode must be "proxy" or "full", not ${JSON.stringify(opts.mode)}`);
  if (opts.serverAddress !== undefined && parseIp(opts.serverAddress) === undefined) {
    throw new DhcpConfigError(`serverAddress ${opts.serverAddress} is not an IPv4 address`);
  }
  if (opts.pxeMenu) {
    const p = menuProblems(opts.pxeMenu)[0];
    if (p) throw new DhcpConfigError(`pxeMenu${p.path.map((x) => (typeof x === 'number' ? `[${x}]` : `.${x}`)).join('')}: ${p.message}`);
  }
  const links = linksFrom(opts, ifaces);
  if (links.length === 0) throw new DhcpConfigError('no interface with an IPv4 address to serve; name one in interfaces');
  const serverIds = new Set(links.map((l) => l.address));
  if (opts.serverAddress) serverIds.add(opts.serverAddress);
  const reservationsByMac = new Map<string, ResolvedReservation>();
  const reservedIps = new Map<number, string>();
  const topo: Topology = { links, pools: [], reservationsByMac, reservedIps, serverIds };
  if (opts.mode === 'proxy') return topo;

  if (!opts.db) throw new DhcpConfigError('full mode needs the state database (db) to keep leases');
  const pools = (opts.pools ?? []).map(resolvePool);
  if (pools.length === 0) throw new DhcpConfigError('full mode needs at least one pool');
  for (let i = 0; i < pools.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = pools[i]!, b = pools[j]!;
      if (inSubnet(a.cidr.network, b.cidr) || inSubnet(b.cidr.network, a.cidr)) {
        throw new DhcpConfigError(`pools ${b.subnet} and ${a.subnet} overlap: a client's subnet would be ambiguous`);
      }
    }
  }
  for (const pool of pools) {
    const attached = links.filter((l) => inSubnet(l.addr, pool.cidr));
    if (attached.length > 1) {
      throw new DhcpConfigError(`pool ${pool.subnet} is attached to interfaces ${attached.map((l) => l.name).join(' and ')}: serve it on one`);
    }
    if (attached[0]) pool.link = attached[0];
  }
  const local = pools.filter((p) => p.link);
  if (local.length > 1) {
    throw new DhcpConfigError(
      `full mode cannot serve directly attached clients on more than one interface (${local.map((p) => `${p.link!.name} ${p.subnet}`).join(', ')}): ` +
        'Node cannot tell which interface a broadcast DHCPDISCOVER arrived on, so it could hand out an address from the wrong subnet. ' +
        'Serve one interface here and reach the other subnets through a DHCP relay (giaddr), or run one swarmboot per interface in its own network namespace.',
    );
  }
  if (opts.interfaces) {
    for (const l of links) {
      if (!pools.some((p) => p.link === l)) throw new DhcpConfigError(`interface ${l.name} (${l.address}) has no pool for its subnet ${ipToString(l.cidr.network)}/${l.cidr.prefix}`);
    }
  }
  topo.pools = pools;
  if (local[0]) topo.localPool = local[0];
  applyReservations(topo, opts.reservations ?? []);
  return topo;
}

/**
 * Check reservations against the pools and swap them into `topo` (in place, so the handler sees
 * them at once: a config reload). Throws DhcpConfigError and leaves `topo` as it was when one is
 * wrong. A client whose reserved address changed is NAKed at its next renewal and gets the new one.
 */
export function applyReservations(topo: Topology, list: DhcpReservation[]): void {
  const { pools, links } = topo;
  const reservationsByMac = new Map<string, ResolvedReservation>();
  const reservedIps = new Map<number, string>();
  for (const [i, r] of list.entries()) {
    const mac = normaliseMac(r.mac);
    const ip = parseIp(r.ip);
    if (!mac) throw new DhcpConfigError(`reservations[${i}]: mac ${r.mac} is not a MAC address`);
    if (ip === undefined) throw new DhcpConfigError(`reservations[${i}] (${mac}): ip ${r.ip} is not an IPv4 address`);
    const pool = pools.find((p) => inSubnet(ip, p.cidr));
    if (!pool) throw new DhcpConfigError(`reservations[${i}] (${mac}): ${r.ip} is in no pool's subnet`);
    if (ip === pool.cidr.network || ip === pool.cidr.broadcast || links.some((l) => l.addr === ip)) {
      throw new DhcpConfigError(`reservations[${i}] (${mac}): ${r.ip} is the network, broadcast or this server's address`);
    }
    if (reservationsByMac.has(mac)) throw new DhcpConfigError(`reservations[${i}]: ${mac} is reserved twice`);
    const other = reservedIps.get(ip);
    if (other) throw new DhcpConfigError(`reservations[${i}]: ${r.ip} is reserved for both ${other} and ${mac}`);
    reservationsByMac.set(mac, { mac, ip, ...(r.hostname ? { hostname: r.hostname } : {}), pool });
    reservedIps.set(ip, mac);
  }
  topo.reservationsByMac.clear();
  for (const [k, v] of reservationsByMac) topo.reservationsByMac.set(k, v);
  topo.reservedIps.clear();
  for (const [k, v] of reservedIps) topo.reservedIps.set(k, v);
}

/** The pool whose subnet holds `ip`, if any. */
export function poolFor(topo: Topology, ip: number): ResolvedPool | undefined {
  return topo.pools.find((p) => inSubnet(ip, p.cidr));
}

/** The link whose subnet holds `ip`, if any. */
export function linkFor(topo: Topology, ip: number): Link | undefined {
  return topo.links.find((l) => inSubnet(ip, l.cidr));
}

/**
 * The address a reply advertises (siaddr, option 54, the boot URLs' host). A client on a link we
 * serve directly gets the link's `advertise`; a relayed client (giaddr), or one on no link of ours,
 * is routed to us anyway and gets the configured serverAddress when there is one.
 */
export function advertisedAddress(topo: Topology, configured: string | undefined, link: Link | undefined, relayed: boolean): string {
  if (!relayed && link) return link.advertise;
  return configured ?? link?.address ?? topo.links[0]!.address;
}
