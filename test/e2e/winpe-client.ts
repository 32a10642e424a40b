/**
 * A stand-in for a PXE machine booting WinPE, run inside a client namespace of the lab:
 * `ip netns exec NS node test/e2e/winpe-client.ts '<json>'`, printing one JSON line.
 *
 * - `{"dhcp": {...}}`: the firmware's DHCP exchange built on the codec (DISCOVER with options
 *   60/93/94/97, OFFER, REQUEST, ACK), then the acknowledged address is configured on the
 *   interface, as firmware does before it fetches its boot file. Reports what each reply carried,
 *   option 252 (the BCD path Windows Boot Manager reads) included.
 * - `{"tftp": {...}}`: TFTP reads in order, as firmware and Windows Boot Manager make them: any
 *   options, a tsize probe answered with an ERROR after the OACK, RFC 7440 windows, and Microsoft's
 *   variable window (OACK `msftwindow 27182`, then every ACK carries one trailing byte: the number of
 *   DATA blocks wanted before the next ACK). Reports per read: the OACK, the bytes' SHA-256, and for
 *   each ACK the window it asked for and the new blocks that arrived before the next ACK.
 *
 * Its own client (not test/tftp/client.ts) because that one is bound to 127.0.0.1, and the lab's
 * server is only reachable at the bridge address from inside the namespace.
 */
import dgram from 'node:dgram';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { decodePacket, readIpOption, type DhcpPacket } from '../../server/dhcp/codec.ts';
import { Opt } from '../../server/dhcp/options.ts';
import { decode, encodeAck, encodeError, encodeRequest, OP_DATA, OP_ERROR, OP_OACK, OP_RRQ } from '../../server/tftp/codec.ts';
import { clientBuf, MsgType, summarizeReply, type ClientOpts, type ReplySummary } from '../dhcp/packets.ts';

export interface DhcpCfg {
  mac: string;
  arch: number;
  vendorClass?: string;
  uuid?: string;
  ipxe?: boolean;
  iface?: string;
  /**
   * Beside a site DHCP server (swarmboot as ProxyDHCP): collect every OFFER, take the address from
   * the one that has one, then ask the PXE offer's server on port 4011 for the boot file (PXE boot
   * server discovery, as firmware does when the ProxyDHCP offer came on port 67).
   */
  proxy?: boolean;
}

export type DhcpReply = ReplySummary;

export interface DhcpResult {
  offer?: DhcpReply;
  ack?: DhcpReply;
  /** proxy: every OFFER seen for the DISCOVER. */
  offers?: DhcpReply[];
  /** proxy: the ACK to the REQUEST sent to port 4011 of the PXE offer's server. */
  pxeAck?: DhcpReply;
  error?: string;
}

export interface ReadRequest {
  /** Exactly the name sent in the RRQ. */
  file: string;
  options?: Array<[string, string]>;
  /** Answer the OACK with this ERROR code instead of ACK 0 (tsize probe). */
  abortAfterOack?: { code: number; message: string };
  /** Window sizes sent in the trailing ACK byte, used in turn (cycled), when msftwindow is granted. */
  msftWindows?: number[];
}

export interface TftpCfg {
  server: string;
  port?: number;
  reads: ReadRequest[];
}

export interface WindowRecord {
  /** Window asked for by the ACK that opened it (the trailing byte, or the negotiated windowsize). */
  asked: number;
  /** New in-order blocks that arrived before the next ACK. */
  got: number;
}

export interface ReadResult {
  file: string;
  oack: Record<string, string> | null;
  error?: { code: number; message: string };
  size: number;
  sha256: string;
  windows: WindowRecord[];
  /** DATA packets that were not the next block (duplicates, reordering). */
  outOfOrder: number;
  /** Times this client re-sent its last packet after a timeout. */
  resends: number;
  ms: number;
}

const summary = summarizeReply;

async function dhcp(cfg: DhcpCfg): Promise<DhcpResult> {
  const iface = cfg.iface ?? 'eth0';
  const xid = Math.floor(Math.random() * 0x100000000);
  const base: ClientOpts = {
    type: MsgType.DISCOVER,
    mac: cfg.mac,
    xid,
    arch: cfg.arch,
    ...(cfg.vendorClass ? { vendorClass: cfg.vendorClass } : {}),
    ...(cfg.uuid ? { uuid: cfg.uuid } : {}),
    ...(cfg.ipxe ? { ipxe: true } : {}),
  };
  // Firmware starts without an address; the host route lets an address-less socket broadcast.
  execFileSync('ip', ['addr', 'flush', 'dev', iface]);
  execFileSync('ip', ['route', 'replace', '255.255.255.255', 'dev', iface]);
  const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((r) => sock.bind(68, '0.0.0.0', r));
  sock.setBroadcast(true);
  const inbox: Array<{ p: DhcpPacket; from: dgram.RemoteInfo }> = [];
  sock.on('message', (b, from) => {
    try {
      const p = decodePacket(b);
      if (p.xid === xid && p.op === 2) inbox.push({ p, from });
    } catch {
      // not for us
    }
  });
  const send = (o: ClientOpts, port = 67, to = '255.255.255.255') => new Promise<void>((r, j) => sock.send(clientBuf(o), port, to, (e) => (e ? j(e) : r())));
  const wait = async (type: number, ms: number, fromPort?: number) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const i = inbox.findIndex((m) => m.p.options.get(Opt.MESSAGE_TYPE)?.[0] === type && (fromPort === undefined || m.from.port === fromPort));
      if (i >= 0) return inbox.splice(i, 1)[0]!;
      await new Promise((r) => setTimeout(r, 20));
    }
    return undefined;
  };
  const out: DhcpResult = {};
  if (cfg.proxy) {
    try {
      return await proxyDhcp(cfg, base, send, inbox, wait, iface, out);
    } catch (e) {
      out.error = (e as Error).message;
      return out;
    } finally {
      sock.close();
    }
  }
  try {
    // Firmware repeats its DISCOVER (4 s, 8 s, …); a shorter rhythm keeps the test quick.
    let offer: { p: DhcpPacket; from: dgram.RemoteInfo } | undefined;
    for (let i = 0; i < 4 && !offer; i++) {
      await send(base);
      offer = await wait(MsgType.OFFER, 1500);
    }
    if (!offer) throw new Error('no OFFER');
    out.offer = summary(offer.p, offer.from);
    const sid = readIpOption(offer.p.options.get(Opt.SERVER_ID))!;
    let ack: { p: DhcpPacket; from: dgram.RemoteInfo } | undefined;
    for (let i = 0; i < 3 && !ack; i++) {
      await send({ ...base, type: MsgType.REQUEST, serverId: sid, requestedIp: offer.p.yiaddr });
      ack = await wait(MsgType.ACK, 1500);
    }
    if (!ack) throw new Error('no ACK');
    out.ack = summary(ack.p, ack.from);
    const mask = out.ack.mask ?? '255.255.255.0';
    const prefix = mask.split('.').reduce((n, o) => n + (Number(o).toString(2).match(/1/g)?.length ?? 0), 0);
    execFileSync('ip', ['addr', 'flush', 'dev', iface]);
    execFileSync('ip', ['addr', 'add', `${ack.p.yiaddr}/${prefix}`, 'dev', iface]);
  } catch (e) {
    out.error = (e as Error).message;
  } finally {
    sock.close();
  }
  return out;
}

type Inbox = Array<{ p: DhcpPacket; from: dgram.RemoteInfo }>;

async function proxyDhcp(
  cfg: DhcpCfg,
  base: ClientOpts,
  send: (o: ClientOpts, port?: number, to?: string) => Promise<void>,
  inbox: Inbox,
  wait: (type: number, ms: number, fromPort?: number) => Promise<Inbox[number] | undefined>,
  iface: string,
  out: DhcpResult,
): Promise<DhcpResult> {
  const isPxe = (m: Inbox[number]) => m.p.options.get(Opt.VENDOR_CLASS)?.toString('latin1').startsWith('PXEClient') === true;
  const offers: Inbox = [];
  for (let i = 0; i < 4 && !(offers.some(isPxe) && offers.some((m) => m.p.yiaddr !== '0.0.0.0')); i++) {
    await send(base);
    const until = Date.now() + 1500;
    while (Date.now() < until && !(offers.some(isPxe) && offers.some((m) => m.p.yiaddr !== '0.0.0.0'))) {
      const m = await wait(MsgType.OFFER, until - Date.now());
      if (m) offers.push(m);
    }
  }
  out.offers = offers.map((m) => summary(m.p, m.from));
  const addr = offers.find((m) => m.p.yiaddr !== '0.0.0.0');
  const pxe = offers.find(isPxe);
  if (!addr) throw new Error('no OFFER with an address');
  if (!pxe) throw new Error('no ProxyDHCP (PXEClient) OFFER');
  const sid = readIpOption(addr.p.options.get(Opt.SERVER_ID))!;
  let ack: Inbox[number] | undefined;
  for (let i = 0; i < 3 && !ack; i++) {
    await send({ ...base, type: MsgType.REQUEST, serverId: sid, requestedIp: addr.p.yiaddr });
    ack = await wait(MsgType.ACK, 1500);
  }
  if (!ack) throw new Error('no ACK from the address server');
  out.ack = summary(ack.p, ack.from);
  const prefix = (out.ack.mask ?? '255.255.255.0').split('.').reduce((n, o) => n + (Number(o).toString(2).match(/1/g)?.length ?? 0), 0);
  execFileSync('ip', ['addr', 'flush', 'dev', iface]);
  execFileSync('ip', ['addr', 'add', `${ack.p.yiaddr}/${prefix}`, 'dev', iface]);
  // PXE boot server discovery: a REQUEST with our address, unicast to the ProxyDHCP server's port 4011.
  const pxeServer = readIpOption(pxe.p.options.get(Opt.SERVER_ID)) ?? pxe.from.address;
  let pxeAck: Inbox[number] | undefined;
  for (let i = 0; i < 3 && !pxeAck; i++) {
    await send({ ...base, type: MsgType.REQUEST, ciaddr: ack.p.yiaddr }, 4011, pxeServer);
    pxeAck = await wait(MsgType.ACK, 1500, 4011);
  }
  if (!pxeAck) throw new Error(`no ACK from ${pxeServer}:4011`);
  out.pxeAck = summary(pxeAck.p, pxeAck.from);
  return out;
}

/** One TFTP read, the way a windowed Windows/UEFI client makes it. */
async function read(server: string, port: number, r: ReadRequest): Promise<ReadResult> {
  const started = Date.now();
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((res) => sock.bind(0, '0.0.0.0', res));
  const hash = createHash('sha256');
  const res: ReadResult = { file: r.file, oack: null, size: 0, sha256: '', windows: [], outOfOrder: 0, resends: 0, ms: 0 };
  const rrq = encodeRequest(OP_RRQ, r.file, 'octet', r.options ?? []);
  let tid = -1;
  let blksize = 512;
  let ws = 1;
  let msft = false;
  let windowIndex = 0;
  let expected = 1; // full (unwrapped) number of the next block
  let got = 0; // new blocks since the last ACK
  let last: Buffer = rrq;
  let lastPort = port;
  let tries = 0;
  let gapAcked = false;

  return new Promise<ReadResult>((resolve) => {
    let timer: NodeJS.Timeout;
    const finish = (error?: { code: number; message: string }) => {
      clearTimeout(timer);
      if (error) res.error = error;
      res.sha256 = hash.digest('hex');
      res.ms = Date.now() - started;
      // Let the last datagram leave before the socket goes.
      setTimeout(() => {
        sock.close();
        resolve(res);
      }, 5);
    };
    const send = (buf: Buffer, to: number) => {
      last = buf;
      lastPort = to;
      sock.send(buf, to, server);
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (++tries > 10) return finish({ code: -1, message: `client timeout waiting for block ${expected}` });
        res.resends++;
        // RFC 7440 receiver: on a timeout, acknowledge what did arrive (opening the next window), else repeat.
        if (got > 0) ack(expected - 1);
        else sock.send(last, lastPort, server);
        arm();
      }, 1000);
    };
    /** ACK `block`, opening the next window; records what the previous window brought. */
    const ack = (block: number, final = false) => {
      if (res.windows.length) res.windows[res.windows.length - 1]!.got = got;
      got = 0;
      gapAcked = false;
      let next: number | undefined;
      if (msft && !final) {
        const list = r.msftWindows?.length ? r.msftWindows : [ws];
        next = list[windowIndex++ % list.length]!;
        ws = next;
      } else if (msft) next = ws;
      if (!final) res.windows.push({ asked: ws, got: 0 });
      send(encodeAck(block, next), tid);
    };

    sock.on('message', (msg, rinfo) => {
      if (rinfo.address !== server) return;
      if (tid === -1) tid = rinfo.port;
      else if (rinfo.port !== tid) return;
      const p = decode(msg);
      if (!p) return finish({ code: -1, message: 'undecodable packet' });
      tries = 0;
      if (p.op === OP_ERROR) return finish({ code: p.code, message: p.message });
      if (p.op === OP_OACK) {
        if (res.oack) return; // a repeated OACK: our ACK 0 was lost and is re-sent by the timer
        res.oack = Object.fromEntries(p.options);
        if (r.abortAfterOack) {
          send(encodeError(r.abortAfterOack.code, r.abortAfterOack.message), tid);
          return finish();
        }
        blksize = Number(res.oack.blksize ?? 512);
        ws = Number(res.oack.windowsize ?? 1);
        msft = res.oack.msftwindow === '27182';
        ack(0);
        return arm();
      }
      if (p.op !== OP_DATA) return finish({ code: -1, message: `unexpected opcode ${p.op}` });
      if (p.block !== (expected & 0xffff)) {
        res.outOfOrder++;
        // A gap (a lost block): ACK what we have, once, so the server resends from there.
        const ahead = (p.block - (expected & 0xffff)) & 0xffff;
        if (ahead > 0 && ahead < 0x8000 && !gapAcked) {
          ack(expected - 1);
          gapAcked = true;
          arm();
        }
        return;
      }
      hash.update(p.data);
      res.size += p.data.length;
      expected++;
      got++;
      if (p.data.length < blksize) {
        ack(expected - 1, true);
        return finish();
      }
      if (got >= ws) ack(expected - 1);
      arm();
    });
    send(rrq, port);
    arm();
  });
}

const arg = JSON.parse(process.argv[2] ?? '{}') as { dhcp?: DhcpCfg; tftp?: TftpCfg };
if (arg.dhcp) {
  process.stdout.write(JSON.stringify(await dhcp(arg.dhcp)) + '\n');
} else if (arg.tftp) {
  const out: ReadResult[] = [];
  for (const r of arg.tftp.reads) out.push(await read(arg.tftp.server, arg.tftp.port ?? 69, r));
  process.stdout.write(JSON.stringify(out) + '\n');
} else {
  process.stderr.write('usage: winpe-client.ts \'{"dhcp":{…}}\' | \'{"tftp":{…}}\'\n');
  process.exitCode = 2;
}
