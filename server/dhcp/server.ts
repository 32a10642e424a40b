/**
 * DHCP front end: ProxyDHCP or full DHCP on UDP 67, PXE boot server discovery on UDP 4011.
 *
 * ## Which network does a reply go to? (multi-homed servers)
 *
 * Node's UDP sockets cannot report the interface a datagram arrived on (no IP_PKTINFO) nor bind to
 * a device (no SO_BINDTODEVICE). swarmboot therefore works like this:
 *
 * - It resolves the configured interface names (default: every non-loopback interface with IPv4)
 *   to their address and subnet with os.networkInterfaces(); each is a "link".
 * - One socket on 0.0.0.0:67 receives everything, broadcasts included. One more socket per link
 *   is bound to that link's own address on port 67 (SO_REUSEADDR). Linux sends a 255.255.255.255
 *   datagram out of the interface owning the socket's source address, so a broadcast reply sent
 *   from a link's socket leaves on that link, from port 67 (iPXE ignores replies from any other
 *   port). Unicast sent to one of our addresses lands on that link's socket, which tells us the
 *   ingress link for relayed and renewing traffic.
 * - Before binding, port 67 is probed without SO_REUSEADDR, so another DHCP server on the host is
 *   detected and reported instead of silently sharing the port.
 * - The network a request belongs to is chosen, in order, by: giaddr (a relay: the pool containing
 *   giaddr, reply unicast to the relay on port 67); the link socket it arrived on; ciaddr or the
 *   source address (a renewing client: the pool/link containing it); otherwise the request is a
 *   broadcast from an unconfigured client whose link is unknown:
 *   - ProxyDHCP answers it on every link, each reply carrying that link's own server address. A
 *     client only sees the reply on its own segment; the others are ignored (xid mismatch). This
 *     is correct for any number of interfaces.
 *   - Full DHCP must pick one pool, so it serves broadcast clients on exactly one directly
 *     attached subnet. A configuration with pools on two attached subnets is refused at start
 *     with an error; other subnets are served through relays (giaddr), which is unambiguous, or
 *     by one swarmboot per network namespace.
 * - Broadcasts from networks that are not configured still reach 0.0.0.0:67 and are answered on
 *   the configured link(s), where their sender cannot hear the reply; in full mode such a DISCOVER
 *   holds an address for offerHoldSeconds. Keep other networks' DHCP traffic out with a firewall
 *   rule (`iptables -A INPUT -i eth1 -p udp --dport 67 -j DROP`) or a network namespace.
 * - A client without an address is always answered by broadcast: unicast to yiaddr would need an
 *   ARP entry injected first, which Node cannot do.
 * - A configured server address is advertised only where a client can reach it directly (the link
 *   whose subnet holds it) and to relayed clients; elsewhere each link advertises its own address,
 *   with a warning at start, so one setting cannot send a whole segment to an unreachable address.
 */
import dgram from 'node:dgram';
import type { Logger } from '../log.ts';
import { createHandler, type Outgoing } from './handler.ts';
import { LeaseStore, type LeaseState } from './leases.ts';
import { ipToString } from './ip.ts';
import { type Link, applyReservations, resolveTopology } from './networks.ts';
import type { DhcpOptions, DhcpReservation } from './types.ts';
import { EAGAIN, loadNativeUdp, META_WORDS, UdpReceiver } from '../native-udp.ts';

export type { DhcpOptions } from './types.ts';
export { DhcpConfigError } from './networks.ts';

/** Native receive: slot bytes (one past the codec's 4096-byte maximum, so a longer datagram is refused as too
 *  large, as through dgram) and datagrams per recvmmsg. */
const RX_SLOT = 4097;
const RX_MAX = 32;
/** Replies waiting for room in a socket's send buffer (native sends only; dgram keeps its own queue). */
const SEND_QUEUE_MAX = 4096;

/** A socket the addon receives on, and its replies waiting for room in the send buffer. */
interface NativeSocket {
  rx: UdpReceiver;
  queue: Array<{ buf: Buffer; address: string; port: number; type: string }>;
}

export interface DhcpServer {
  /** Bound ports (the real ones when 0 = ephemeral was asked for). */
  ports: { server: number; pxe: number | undefined };
  /** How datagrams are received: 'native' (recvmmsg batches through the addon) or 'dgram'; `detail` says why. */
  io: { path: 'native' | 'dgram'; detail: string };
  /** Interfaces being served. */
  links: Array<{ name: string; address: string; subnet: string }>;
  /** Full mode: a snapshot of the lease table (for the admin UI and the API); empty in proxy mode. */
  leases(): Array<{ ip: string; mac: string; state: LeaseState; expiresAt: number; hostname?: string }>;
  /** Full mode: replace the reservations (a config reload). Throws DhcpConfigError and keeps the old ones when one is wrong. */
  setReservations(list: DhcpReservation[]): void;
  close(): Promise<void>;
}

function bindError(err: NodeJS.ErrnoException, what: string, address: string, port: number): Error {
  const where = `UDP ${address}:${port} (${what})`;
  if (err.code === 'EACCES') {
    return new Error(
      `cannot listen on ${where}: permission denied. Ports below 1024 need root or CAP_NET_BIND_SERVICE: ` +
        'run swarmboot as root, or `setcap cap_net_bind_service=+ep` on the node binary, or use AmbientCapabilities=CAP_NET_BIND_SERVICE in the systemd unit.',
    );
  }
  if (err.code === 'EADDRINUSE') {
    return new Error(
      `cannot listen on ${where}: the port is already in use, most likely by another DHCP server on this host ` +
        `(dnsmasq, isc-dhcp-server, kea; see \`ss -ulpn 'sport = :${port}'\`). Stop it, or run swarmboot in proxy mode on another host, ` +
        'or give dnsmasq `--port=0 --no-dhcp-interface` for the interfaces swarmboot serves.',
    );
  }
  if (err.code === 'EADDRNOTAVAIL') return new Error(`cannot listen on ${where}: ${address} is not an address of this host`);
  return new Error(`cannot listen on ${where}: ${err.message}`);
}

/** Every address here is an IPv4 literal: skip dgram's per-send DNS lookup (a tick and a closure). */
function literalLookup(address: string, _o: unknown, cb: (err: Error | null, address: string, family: number) => void): void {
  cb(null, address, 4);
}

function bind(address: string, port: number, reuseAddr: boolean, what: string, recvBuffer = 0): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr, lookup: literalLookup as never });
    const onError = (err: Error) => {
      s.close();
      reject(bindError(err as NodeJS.ErrnoException, what, address, port));
    };
    s.once('error', onError);
    s.bind({ address, port, exclusive: true }, () => {
      s.off('error', onError);
      // Room for a boot storm: a few hundred machines powered on at once, or a GC pause at
      // 20k packets/s, must queue rather than drop. The kernel caps it at net.core.rmem_max.
      if (recvBuffer > 0) try { s.setRecvBufferSize(recvBuffer); } catch { /* keep the default */ }
      resolve(s);
    });
  });
}

function closeSocket(s: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      s.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

/** Start the DHCP front end. Rejects with DhcpConfigError for a configuration it cannot serve, or an Error naming the port for bind failures. */
export async function startDhcp(opts: DhcpOptions): Promise<DhcpServer> {
  const topo = resolveTopology(opts);
  const log: Logger = opts.logger.child({ component: 'dhcp' });
  const store = opts.mode === 'full' ? new LeaseStore(opts.db!) : undefined;
  if (store) {
    opts.metrics.gauge('swarmboot_dhcp_leases', 'DHCP leases by state').collect(() =>
      Object.entries(store.counts(Date.now())).map(([state, value]) => ({ labels: { state }, value })),
    );
  }
  const replies = opts.metrics.counter('swarmboot_dhcp_replies_total', 'DHCP replies handed to the kernel, by message type (a send the kernel then refuses also counts in dropped_total, reason send_error)');
  const dropped = opts.metrics.counter('swarmboot_dhcp_dropped_total', 'DHCP packets not answered, by reason');
  const handler = createHandler({ opts, topo, ...(store ? { store } : {}), logger: opts.logger, metrics: opts.metrics });

  const listen = opts.listenAddress ?? '0.0.0.0';
  const wantServer = opts.ports?.server ?? 67;
  const wantPxe = opts.ports?.pxe ?? 4011;
  const clientPort = opts.ports?.client ?? 68;
  const rcvbuf = opts.socketBufferBytes ?? 4 << 20;
  const sockets: dgram.Socket[] = [];
  const closeAll = () => Promise.all(sockets.map(closeSocket));
  const nat = opts.nativeUdp === false ? { addon: null, detail: 'nativeUdp: false' } : await loadNativeUdp();
  /** Sockets the addon receives on: dgram must not send on them, replies go through the receiver. */
  const receivers = new Map<dgram.Socket, NativeSocket>();

  try {
    if (wantServer !== 0) await closeSocket(await bind(listen, wantServer, false, 'DHCP'));
    const main = await bind(listen, wantServer, true, 'DHCP', rcvbuf);
    sockets.push(main);
    main.setBroadcast(true);
    const serverPort = main.address().port;
    const relayPort = opts.ports?.relay ?? serverPort;

    // Per-link sockets: broadcasts leave on the right interface, and unicast tells us its link.
    const linkSock = new Map<Link, dgram.Socket>();
    for (const link of topo.links) {
      if (listen !== '0.0.0.0' && listen !== link.address) continue;
      const s = listen === link.address ? main : await bind(link.address, serverPort, true, `DHCP on ${link.name}`, rcvbuf);
      if (s !== main) sockets.push(s);
      s.setBroadcast(true);
      linkSock.set(link, s);
    }

    let pxe: dgram.Socket | undefined;
    if (wantPxe !== false) {
      pxe = await bind(listen, wantPxe, false, 'PXE boot server discovery', rcvbuf);
      sockets.push(pxe);
      pxe.setBroadcast(true);
    }

    const send = (o: Outgoing, inbound: dgram.Socket) => {
      let sock = main;
      let address: string;
      let port: number;
      switch (o.to.kind) {
        case 'broadcast': sock = linkSock.get(o.to.link) ?? main; address = '255.255.255.255'; port = clientPort; break;
        case 'relay': address = o.to.address; port = relayPort; break;
        case 'client': address = o.to.address; port = clientPort; break;
        case 'source': sock = inbound; address = o.to.address; port = o.to.port; break;
      }
      const nr = receivers.get(sock);
      if (nr) {
        sendNative(nr, o.buf, address, port, o.type);
        return;
      }
      // No completion callback (one more callback per packet): the kernel takes a datagram or the
      // socket reports the error, counted and logged by its 'error' listener.
      try {
        sock.send(o.buf, port, address);
        replies.inc({ type: o.type });
      } catch (err) {
        dropped.inc({ reason: 'send_error' });
        log.warn({ to: `${address}:${port}`, err: (err as Error).message }, 'sending DHCP reply failed');
      }
    };

    /** A full send buffer queues the reply until the socket is writable again, in order; past the cap it is dropped. */
    const sendNative = (nr: NativeSocket, buf: Buffer, address: string, port: number, type: string) => {
      if (nr.queue.length > 0) {
        if (nr.queue.length >= SEND_QUEUE_MAX) dropped.inc({ reason: 'send_queue_full' });
        else nr.queue.push({ buf, address, port, type });
        return;
      }
      const r = nr.rx.sendTo(buf, address, port);
      if (r === EAGAIN) {
        nr.queue.push({ buf, address, port, type });
        nr.rx.wantWritable();
      } else {
        sent(r, type, address, port);
      }
    };
    /** Counts a native send's outcome: bytes sent, or -errno. */
    const sent = (r: number, type: string, address: string, port: number) => {
      if (r >= 0) {
        replies.inc({ type });
      } else {
        dropped.inc({ reason: 'send_error' });
        log.warn({ to: `${address}:${port}`, errno: r }, 'sending DHCP reply failed');
      }
    };
    const drain = (nr: NativeSocket) => {
      while (nr.queue.length > 0) {
        const q = nr.queue[0]!;
        const r = nr.rx.sendTo(q.buf, q.address, q.port);
        if (r === EAGAIN) {
          nr.rx.wantWritable();
          return;
        }
        nr.queue.shift();
        sent(r, q.type, q.address, q.port);
      }
    };

    const listenOn = (s: dgram.Socket, via: 'dhcp' | 'pxe', local: Link | undefined) => {
      if (nat.addon) {
        // Source addresses as strings, one per distinct address in a row: a storm comes from 0.0.0.0.
        let lastAddr = 0;
        let lastStr = '0.0.0.0';
        const src = { address: '', port: 0 };
        let nr: NativeSocket | undefined;
        const rx = UdpReceiver.start(nat.addon, s, {
          slot: RX_SLOT,
          max: RX_MAX,
          onPackets: (n) => {
            const ring = rx!.ring;
            const meta = rx!.meta;
            for (let i = 0; i < n; i++) {
              const at = i * META_WORDS;
              const len = meta[at]!;
              const off = i * RX_SLOT;
              if (meta[at + 2] === 4) {
                const a = meta[at + 3]!;
                if (a !== lastAddr) {
                  lastAddr = a;
                  lastStr = rx!.address(i);
                }
                src.address = lastStr;
              } else {
                src.address = rx!.address(i);
              }
              src.port = meta[at + 1]!;
              // The handler reads the datagram (and the options it points into) before returning: the ring is
              // only refilled after this callback.
              const r = handler.handle(ring.subarray(off, off + (len < 0 ? RX_SLOT : len)), src, via, local);
              for (const o of r.out) send(o, s);
            }
          },
          onWritable: () => drain(nr!),
        });
        if (rx) {
          nr = { rx, queue: [] };
          receivers.set(s, nr);
        }
      }
      if (!receivers.has(s)) {
        s.on('message', (buf, rinfo) => {
          const r = handler.handle(buf, { address: rinfo.address, port: rinfo.port }, via, local);
          for (const o of r.out) send(o, s);
        });
      }
      s.on('error', (err) => {
        dropped.inc({ reason: 'send_error' });
        log.warn({ err: err.message }, 'sending a DHCP reply failed');
      });
    };
    const mainLink = [...linkSock].find(([, s]) => s === main)?.[0];
    listenOn(main, 'dhcp', mainLink);
    for (const [link, s] of linkSock) if (s !== main) listenOn(s, 'dhcp', link);
    if (pxe) listenOn(pxe, 'pxe', undefined);

    const io = receivers.size === sockets.length && sockets.length > 0
      ? { path: 'native' as const, detail: nat.detail }
      : { path: 'dgram' as const, detail: nat.addon ? 'the addon could not take the sockets over' : nat.detail };
    const info: DhcpServer = {
      io,
      ports: { server: serverPort, pxe: pxe?.address().port },
      links: topo.links.map((l) => ({ name: l.name, address: l.address, subnet: `${l.address}/${l.cidr.prefix}` })),
      leases: () => (store?.all() ?? []).map((l) => ({ ...l, ip: ipToString(l.ip) })),
      setReservations: (list) => {
        if (opts.mode !== 'full') return;
        applyReservations(topo, list);
        log.info({ reservations: list.length }, 'DHCP reservations reloaded');
      },
      close: async () => {
        await closeAll();
      },
    };
    for (const l of topo.links) {
      if (opts.serverAddress && l.advertise !== opts.serverAddress) {
        log.warn({ serverAddress: opts.serverAddress, interface: l.name, subnet: `${ipToString(l.cidr.network)}/${l.cidr.prefix}`, advertised: l.advertise },
          `server address ${opts.serverAddress} is not on ${l.name}'s subnet: clients there are told ${l.advertise} instead (relayed clients still get ${opts.serverAddress})`);
      }
    }
    log.info({ mode: opts.mode, io: `${io.path} (${io.detail})`, ports: info.ports, links: info.links.map((l) => `${l.name} ${l.subnet}`), pools: topo.pools.map((p) => p.subnet) }, 'DHCP listening');
    return info;
  } catch (e) {
    await closeAll();
    throw e;
  }
}
