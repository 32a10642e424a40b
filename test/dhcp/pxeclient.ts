/**
 * A PXE client built on the codec, run inside a client namespace:
 * `ip netns exec NS node test/dhcp/pxeclient.ts '<json>'`. It behaves like firmware: broadcasts a
 * DISCOVER with options 60/93/94/97, collects offers (an address offer and a ProxyDHCP offer may
 * come from different servers), REQUESTs the address offer, configures the address, then (if asked)
 * does the boot server exchange on port 4011. Prints one JSON line describing everything it got.
 */
import dgram from 'node:dgram';
import { execFileSync } from 'node:child_process';
import { decodePacket, readIpOption, type DhcpPacket } from '../../server/dhcp/codec.ts';
import { Opt } from '../../server/dhcp/options.ts';
import { clientBuf, MsgType, summarizeReply, type ClientOpts, type ReplySummary } from './packets.ts';

interface Cfg {
  mac: string;
  arch?: number;
  vendorClass?: string;
  uuid?: string;
  iface?: string;
  /** How long to collect offers after the first DISCOVER. */
  collectMs?: number;
  /** Configure the acknowledged address on the interface (needed for the 4011 unicast). */
  configure?: boolean;
  pxe4011?: boolean;
}

export type Summary = ReplySummary;

const summary = summarizeReply;

const cfg = JSON.parse(process.argv[2] ?? '{}') as Cfg;
const iface = cfg.iface ?? 'eth0';
const xid = Math.floor(Math.random() * 0x100000000);
const base: ClientOpts = { type: MsgType.DISCOVER, mac: cfg.mac, xid, ...(cfg.arch !== undefined ? { arch: cfg.arch } : {}), ...(cfg.vendorClass !== undefined ? { vendorClass: cfg.vendorClass } : {}), ...(cfg.uuid ? { uuid: cfg.uuid } : {}) };

// Firmware starts without an address; the host route lets an address-less socket send a broadcast.
execFileSync('ip', ['addr', 'flush', 'dev', iface]);
execFileSync('ip', ['route', 'replace', '255.255.255.255', 'dev', iface]);
const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
await new Promise<void>((r) => sock.bind(68, '0.0.0.0', r));
sock.setBroadcast(true);
const inbox: Array<{ p: DhcpPacket; from: dgram.RemoteInfo }> = [];
let wake: (() => void) | undefined;
sock.on('message', (b, from) => {
  try {
    const p = decodePacket(b);
    if (p.xid === xid && p.op === 2) { inbox.push({ p, from }); wake?.(); }
  } catch { /* not for us */ }
});
const send = (o: ClientOpts, port: number, addr: string) => new Promise<void>((r, j) => sock.send(clientBuf(o), port, addr, (e) => (e ? j(e) : r())));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitMsg(pred: (p: DhcpPacket) => boolean, ms: number) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const i = inbox.findIndex((m) => pred(m.p));
    if (i >= 0) return inbox.splice(i, 1)[0]!;
    await new Promise<void>((r) => { wake = r; setTimeout(r, 50); });
  }
  return undefined;
}

const out: { offers: Summary[]; ack?: Summary; proxyAck?: Summary; error?: string } = { offers: [] };
try {
  await send(base, 67, '255.255.255.255');
  await sleep(cfg.collectMs ?? 1500);
  const offers = inbox.splice(0).filter((m) => m.p.options.get(Opt.MESSAGE_TYPE)?.[0] === MsgType.OFFER);
  out.offers = offers.map((m) => summary(m.p, m.from));
  const addr = offers.find((m) => m.p.yiaddr !== '0.0.0.0');
  const proxy = offers.find((m) => m.p.yiaddr === '0.0.0.0');
  if (addr) {
    const sid = readIpOption(addr.p.options.get(Opt.SERVER_ID))!;
    await send({ ...base, type: MsgType.REQUEST, serverId: sid, requestedIp: addr.p.yiaddr }, 67, '255.255.255.255');
    const ack = await waitMsg((p) => readIpOption(p.options.get(Opt.SERVER_ID)) === sid && p.yiaddr !== '0.0.0.0', 3000);
    if (ack) out.ack = summary(ack.p, ack.from);
    if (ack && cfg.configure) {
      const mask = readIpOption(ack.p.options.get(Opt.SUBNET_MASK)) ?? '255.255.255.0';
      const prefix = mask.split('.').reduce((n, o) => n + (Number(o).toString(2).match(/1/g)?.length ?? 0), 0);
      execFileSync('ip', ['addr', 'flush', 'dev', iface]);
      execFileSync('ip', ['addr', 'add', `${ack.p.yiaddr}/${prefix}`, 'dev', iface]);
    }
    if (ack && cfg.pxe4011 && proxy) {
      const server = proxy.p.siaddr !== '0.0.0.0' ? proxy.p.siaddr : readIpOption(proxy.p.options.get(Opt.SERVER_ID))!;
      await send({ ...base, type: MsgType.REQUEST, ciaddr: ack.p.yiaddr, broadcast: false, bootItem: [0, 0] }, 4011, server);
      const pa = await waitMsg(() => true, 3000);
      if (pa) out.proxyAck = summary(pa.p, pa.from);
    }
  }
} catch (e) {
  out.error = (e as Error).message;
}
process.stdout.write(JSON.stringify(out) + '\n');
sock.close();
