/** What a PXE/HTTP-boot/iPXE client tells us about itself, and the PXE options we answer with. */
import type { PxeDecision, PxeFacts } from '../../boot/types.ts';
import { archFromVendorClass, firmwareFromArch, isHttpFirmware } from '../../boot/firmware.ts';
import type { DhcpPacket } from './codec.ts';
import { Opt, PxeSub } from './options.ts';
import type { PxeMenu } from './types.ts';
import { macToString, parseIp } from './ip.ts';

export type BootClass = 'PXEClient' | 'HTTPClient';

/** `PXEClient`/`HTTPClient` when option 60 says so; anything else is not a network-boot client. */
const PXE_CLIENT = Buffer.from('PXEClient');
const HTTP_CLIENT = Buffer.from('HTTPClient');

export function bootClass(p: DhcpPacket): BootClass | undefined {
  const v = p.options.get(Opt.VENDOR_CLASS);
  if (!v || v.length < 9) return undefined;
  if (v.compare(PXE_CLIENT, 0, 9, 0, 9) === 0) return 'PXEClient';
  if (v.length >= 10 && v.compare(HTTP_CLIENT, 0, 10, 0, 10) === 0) return 'HTTPClient';
  return undefined;
}

/** RFC 3004 user classes (length-prefixed); iPXE sends a bare `iPXE` instead, taken as one class. */
export function parseUserClass(v: Buffer): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < v.length) {
    const len = v[i] as number;
    if (len === 0 || i + 1 + len > v.length) return [v.toString('latin1')];
    out.push(v.toString('latin1', i + 1, i + 1 + len));
    i += 1 + len;
  }
  return out;
}

/** Option 97: type 0 + 16 bytes, rendered in wire order as 8-4-4-4-12 lowercase hex. */
export function parseUuid(v: Buffer | undefined): string | undefined {
  if (!v || v.length !== 17 || v[0] !== 0) return undefined;
  const h = v.toString('hex', 1);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Option 93 is a list of 16-bit codes; the first is the one firmware means. Odd lengths are ignored. */
export function archCode(p: DhcpPacket, vendorClass = p.options.get(Opt.VENDOR_CLASS)?.toString('latin1')): number | undefined {
  const v = p.options.get(Opt.CLIENT_ARCH);
  if (v && v.length >= 2 && v.length % 2 === 0) return v.readUInt16BE(0);
  return archFromVendorClass(vendorClass);
}

export function factsFrom(p: DhcpPacket, serverAddress: string): PxeFacts {
  const vendorClass = p.options.get(Opt.VENDOR_CLASS)?.toString('latin1');
  const uc = p.options.get(Opt.USER_CLASS);
  const userClass = uc && uc.length ? parseUserClass(uc) : undefined;
  const code = archCode(p, vendorClass);
  const firmware = firmwareFromArch(code);
  const uuid = parseUuid(p.options.get(Opt.CLIENT_UUID));
  const facts: PxeFacts = {
    mac: macToString(p.chaddr),
    firmware,
    ipxe: p.options.has(Opt.IPXE_ENCAP) || (userClass?.includes('iPXE') ?? false),
    httpClient: bootClass(p) === 'HTTPClient' || isHttpFirmware(firmware),
    serverAddress,
  };
  if (uuid) facts.uuid = uuid;
  if (code !== undefined) facts.archCode = code;
  if (vendorClass !== undefined) facts.vendorClass = vendorClass;
  if (userClass) facts.userClass = userClass;
  if (p.giaddr !== '0.0.0.0') facts.relay = p.giaddr;
  if (p.ciaddr !== '0.0.0.0') facts.clientIp = p.ciaddr;
  return facts;
}

function tlv(code: number, value: Buffer): Buffer {
  const v = value.subarray(0, 255);
  return Buffer.concat([Buffer.from([code, v.length]), v]);
}

const DISCOVERY_BOOT_FILE = Buffer.from([PxeSub.DISCOVERY_CONTROL, 1, 8, 255]);

/**
 * Option 43 for PXE ROMs. Without a menu: discovery control 8 ("boot the file named in this offer,
 * skip boot server discovery"). With a menu: discovery control 3 (no broadcast/multicast discovery;
 * use the listed boot server, us), the server list, menu and prompt. When the client named a boot
 * item (sub-option 71, on the 4011 request) it is echoed so the ROM accepts the ACK.
 */
export function pxeVendorOptions(menu: PxeMenu | undefined, serverAddress: string, request: DhcpPacket): Buffer {
  const item = bootItemRequested(request);
  if (!menu && !item) return DISCOVERY_BOOT_FILE;
  const parts: Buffer[] = [];
  if (!menu) {
    parts.push(tlv(PxeSub.DISCOVERY_CONTROL, Buffer.from([8])));
  } else {
    parts.push(tlv(PxeSub.DISCOVERY_CONTROL, Buffer.from([3])));
    const servers: Buffer[] = [];
    const ip = Buffer.from(serverAddress.split('.').map(Number));
    for (const it of menu.items) {
      if (it.type === 0) continue; // type 0 is "local boot": no server
      const head = Buffer.alloc(3);
      head.writeUInt16BE(it.type, 0);
      head[2] = 1;
      servers.push(head, ip);
    }
    if (servers.length) parts.push(tlv(PxeSub.BOOT_SERVERS, Buffer.concat(servers)));
    const entries: Buffer[] = [];
    for (const it of menu.items) {
      const d = Buffer.from(it.description, 'latin1').subarray(0, 255);
      const head = Buffer.alloc(3);
      head.writeUInt16BE(it.type, 0);
      head[2] = d.length;
      entries.push(head, d);
    }
    parts.push(tlv(PxeSub.BOOT_MENU, Buffer.concat(entries)));
    const prompt = Buffer.from(menu.prompt, 'latin1').subarray(0, 254);
    parts.push(tlv(PxeSub.MENU_PROMPT, Buffer.concat([Buffer.from([Math.max(0, Math.min(255, menu.timeoutSeconds))]), prompt])));
  }
  if (item) parts.push(tlv(PxeSub.BOOT_ITEM, item));
  parts.push(Buffer.from([255]));
  return Buffer.concat(parts);
}

/** Sub-option 71 (boot item: type u16, layer u16) from a client's option 43, when well formed. */
export function bootItemRequested(p: DhcpPacket): Buffer | undefined {
  const v = p.options.get(Opt.VENDOR_SPECIFIC);
  if (!v) return undefined;
  let i = 0;
  while (i < v.length) {
    const code = v[i] as number;
    if (code === 255) return undefined;
    if (code === 0) { i++; continue; }
    if (i + 1 >= v.length) return undefined;
    const len = v[i + 1] as number;
    if (i + 2 + len > v.length) return undefined;
    if (code === PxeSub.BOOT_ITEM && len === 4) return Buffer.from(v.subarray(i + 2, i + 6));
    i += 2 + len;
  }
  return undefined;
}

/** Boot options added to a reply for a network-boot client: file, 67, siaddr, 60, 43, 97, 66. */
export interface BootAnswer {
  file: string;
  siaddr: string;
  options: Array<[number, Buffer]>;
}

export function bootAnswer(req: DhcpPacket, decision: Extract<PxeDecision, { action: 'boot' }>, cls: BootClass, serverAddress: string, menu: PxeMenu | undefined): BootAnswer {
  // siaddr must be an address; a host name goes only in option 66.
  const siaddr = decision.nextServer && parseIp(decision.nextServer) !== undefined ? decision.nextServer : serverAddress;
  const options: Array<[number, Buffer]> = [[Opt.VENDOR_CLASS, cls === 'PXEClient' ? PXE_CLIENT : HTTP_CLIENT]];
  if (cls === 'PXEClient') options.push([Opt.VENDOR_SPECIFIC, pxeVendorOptions(menu, serverAddress, req)]);
  if (decision.nextServer && decision.nextServer !== serverAddress) options.push([Opt.TFTP_SERVER, Buffer.from(decision.nextServer, 'latin1')]);
  options.push([Opt.BOOTFILE, Buffer.from(decision.bootFile, 'latin1')]);
  if (decision.bcdPath) options.push([Opt.WDS_BCD_PATH, Buffer.from(decision.bcdPath, 'latin1')]);
  const uuid = req.options.get(Opt.CLIENT_UUID);
  if (uuid) options.push([Opt.CLIENT_UUID, uuid]);
  // The file field holds 127 bytes; a longer URL goes in option 67 only (HTTP boot and iPXE read 67).
  const file = Buffer.byteLength(decision.bootFile, 'latin1') <= 127 ? decision.bootFile : '';
  return { file, siaddr, options };
}
