/** Builders for client-side DHCP packets, shared by the unit tests, the real-peer tests and the bench. */
import type { RemoteInfo } from 'node:dgram';
import { BOOTREQUEST, encodePacket, FLAG_BROADCAST, ipOption, readIpOption, u16Option, type DhcpPacket } from '../../server/dhcp/codec.ts';
import { MsgType, Opt } from '../../server/dhcp/options.ts';

export interface ClientOpts {
  type: number;
  mac: string;
  xid?: number;
  /** Option 93 code; sets option 60 `PXEClient:Arch:000NN:UNDI:003016` like firmware does. */
  arch?: number;
  /** Option 60 override ('' = none). */
  vendorClass?: string;
  uuid?: string;
  ipxe?: boolean;
  ciaddr?: string;
  giaddr?: string;
  requestedIp?: string;
  serverId?: string;
  /** Option 43 sub-option 71 boot item (type, layer). */
  bootItem?: [number, number];
  broadcast?: boolean;
  extra?: Array<[number, Buffer]>;
}

export function macBytes(mac: string): Buffer {
  return Buffer.from(mac.replace(/:/g, ''), 'hex');
}

export function clientPacket(o: ClientOpts): DhcpPacket {
  const options = new Map<number, Buffer>();
  options.set(Opt.MESSAGE_TYPE, Buffer.from([o.type]));
  if (o.serverId) options.set(Opt.SERVER_ID, ipOption(o.serverId));
  if (o.requestedIp) options.set(Opt.REQUESTED_IP, ipOption(o.requestedIp));
  // Real PXE ROMs ask for 1,2,3,4,5,6,11,12,13,15,16,17,18,22,23,28,40,41,42,43,50,51,54,58,59,60,66,67,97,128..135.
  options.set(Opt.PARAM_LIST, Buffer.from([1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 28, 43, 50, 51, 54, 58, 59, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135, 175]));
  options.set(Opt.MAX_SIZE, u16Option(1472));
  const vc = o.vendorClass ?? (o.arch !== undefined ? `PXEClient:Arch:${String(o.arch).padStart(5, '0')}:UNDI:003016` : undefined);
  if (vc) options.set(Opt.VENDOR_CLASS, Buffer.from(vc, 'latin1'));
  if (o.arch !== undefined) {
    options.set(Opt.CLIENT_ARCH, u16Option(o.arch));
    options.set(Opt.CLIENT_NDI, Buffer.from([1, 3, 16]));
  }
  if (o.uuid) options.set(Opt.CLIENT_UUID, Buffer.concat([Buffer.from([0]), Buffer.from(o.uuid.replace(/-/g, ''), 'hex')]));
  if (o.ipxe) {
    options.set(Opt.USER_CLASS, Buffer.from('iPXE'));
    options.set(Opt.IPXE_ENCAP, Buffer.from([0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e, 0xeb, 0x01, 0x01]));
  }
  if (o.bootItem) {
    const v = Buffer.from([71, 4, 0, 0, 0, 0, 255]);
    v.writeUInt16BE(o.bootItem[0], 2);
    v.writeUInt16BE(o.bootItem[1], 4);
    options.set(Opt.VENDOR_SPECIFIC, v);
  }
  for (const [k, v] of o.extra ?? []) options.set(k, v);
  const chaddr = Buffer.alloc(16);
  macBytes(o.mac).copy(chaddr);
  return {
    op: BOOTREQUEST, htype: 1, hlen: 6, hops: o.giaddr ? 1 : 0,
    xid: o.xid ?? Math.floor(Math.random() * 0x100000000),
    secs: 4, flags: o.broadcast === false ? 0 : FLAG_BROADCAST,
    ciaddr: o.ciaddr ?? '0.0.0.0', yiaddr: '0.0.0.0', siaddr: '0.0.0.0', giaddr: o.giaddr ?? '0.0.0.0',
    chaddr: chaddr.subarray(0, 6), sname: '', file: '', options,
  };
}

export function clientBuf(o: ClientOpts): Buffer {
  return encodePacket(clientPacket(o));
}

export { MsgType, Opt };

/** What a test client reports of a server reply (JSON-friendly: options as text or hex). */
export interface ReplySummary {
  from: string;
  fromPort: number;
  type: number;
  yiaddr: string;
  siaddr: string;
  serverId?: string;
  /** BOOTP `file` field; option 67 is `bootfile`. */
  file: string;
  bootfile?: string;
  /** Option 252 (Windows Boot Manager's BCD path), latin1. */
  bcdPath?: string;
  vendorClass?: string;
  opt43?: string;
  opt97?: string;
  mask?: string;
}

export function summarizeReply(p: DhcpPacket, from: RemoteInfo): ReplySummary {
  const o = p.options;
  const s: ReplySummary = { from: from.address, fromPort: from.port, type: o.get(Opt.MESSAGE_TYPE)?.[0] ?? 0, yiaddr: p.yiaddr, siaddr: p.siaddr, file: p.file };
  const sid = readIpOption(o.get(Opt.SERVER_ID));
  if (sid) s.serverId = sid;
  if (o.has(Opt.BOOTFILE)) s.bootfile = o.get(Opt.BOOTFILE)!.toString('latin1');
  if (o.has(Opt.WDS_BCD_PATH)) s.bcdPath = o.get(Opt.WDS_BCD_PATH)!.toString('latin1');
  if (o.has(Opt.VENDOR_CLASS)) s.vendorClass = o.get(Opt.VENDOR_CLASS)!.toString('latin1');
  if (o.has(Opt.VENDOR_SPECIFIC)) s.opt43 = o.get(Opt.VENDOR_SPECIFIC)!.toString('hex');
  if (o.has(Opt.CLIENT_UUID)) s.opt97 = o.get(Opt.CLIENT_UUID)!.toString('hex');
  const mask = readIpOption(o.get(Opt.SUBNET_MASK));
  if (mask) s.mask = mask;
  return s;
}
