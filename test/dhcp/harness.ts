/** Socket-free handler setups for responder tests: a fake host with chosen interfaces. */
import { Writable } from 'node:stream';
import type os from 'node:os';
import { pino } from 'pino';
import { DatabaseSync } from 'node:sqlite';
import { silentLogger, type Logger } from '../../server/log.ts';
import { Registry } from '../../server/metrics.ts';
import { createHandler, type DhcpHandler, type HandleResult } from '../../server/dhcp/handler.ts';
import { LeaseStore } from '../../server/dhcp/leases.ts';
import { resolveTopology, type Topology } from '../../server/dhcp/networks.ts';
import { decodePacket, type DhcpPacket } from '../../server/dhcp/codec.ts';
import type { DhcpOptions } from '../../server/dhcp/types.ts';
import { testDecider } from './decider.ts';

export function iface(address: string, netmask = '255.255.255.0'): os.NetworkInterfaceInfo {
  return { address, netmask, family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: null };
}

export const oneLink = { lo: [{ ...iface('127.0.0.1', '255.0.0.0'), internal: true }], br0: [iface('10.66.0.1')] };

export interface Harness {
  h: DhcpHandler;
  opts: DhcpOptions;
  topo: Topology;
  metrics: Registry;
  store?: LeaseStore;
  logs: Array<Record<string, unknown>>;
  clock: { now: number };
  send(buf: Buffer, via?: 'dhcp' | 'pxe', source?: { address: string; port: number }): HandleResult & { replies: DhcpPacket[] };
}

export function harness(over: Partial<DhcpOptions> & { mode: 'proxy' | 'full' }, ifaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = oneLink, opts2: { capture?: boolean; store?: LeaseStore } = {}): Harness {
  const logs: Array<Record<string, unknown>> = [];
  const logger: Logger = opts2.capture
    ? pino({ level: 'debug' }, new Writable({ write(chunk, _e, cb) { for (const l of String(chunk).split('\n')) if (l) logs.push(JSON.parse(l)); cb(); } }))
    : silentLogger();
  const metrics = new Registry();
  const db = over.mode === 'full' && !over.db ? new DatabaseSync(':memory:') : over.db;
  const opts: DhcpOptions = { decide: testDecider, logger, metrics, ...over, ...(db ? { db } : {}) };
  const topo = resolveTopology(opts, ifaces);
  const store = opts2.store ?? (opts.mode === 'full' ? new LeaseStore(opts.db!) : undefined);
  const clock = { now: 1_800_000_000_000 };
  const h = createHandler({ opts, topo, ...(store ? { store } : {}), logger, metrics, now: () => clock.now });
  return {
    h, opts, topo, metrics, logs, clock, ...(store ? { store } : {}),
    send(buf, via = 'dhcp', source = { address: '0.0.0.0', port: 68 }) {
      const r = h.handle(buf, source, via);
      return { ...r, replies: r.out.map((o) => decodePacket(o.buf)) };
    },
  };
}
