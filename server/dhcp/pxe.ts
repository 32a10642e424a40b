/** What a PXE/HTTP-boot/iPXE client tells us about itself, and the PXE options we answer with. */
import type { PxeDecision, PxeFacts } from '../../boot/types.ts';
import { encodeMenu, menuChoice } from './pxe-menu.ts';
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

const DISCOVERY_BOOT_FILE = Buffer.from([PxeSub.DISCOVERY_CONTROL, 1, 8, 255]);

/**
 * Option 43 for PXE ROMs. Normally discovery control 8: boot the file named in this reply, skip
 * boot server discovery. With a menu (and not to iPXE, which would show it again after every
 * chainload): the menu of pxe-menu.ts. A 4011 request naming a boot item (sub-option 71) gets it
 * echoed, which the ROM requires before it accepts the ACK.
 */
export function pxeVendorOptions(menu: PxeMenu | undefined, facts: PxeFacts, serverAddress: string, request: DhcpPacket): Buffer {
  const item = bootItemRequested(request);
  if (item) return Buffer.concat([Buffer.from([PxeSub.DISCOVERY_CONTROL, 1, 8, PxeSub.BOOT_ITEM, 4]), item, Buffer.from([255])]);
  const parts = menu && !facts.ipxe ? encodeMenu(menu, facts.firmware, serverAddress) : undefined;
  if (!parts) return DISCOVERY_BOOT_FILE;
  return Buffer.concat([...parts, Buffer.from([255])]);
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
  cls: BootClass;
  file: string;
  siaddr: string;
  options: Array<[number, Buffer]>;
}

const URL_RE = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * The boot part of a reply. A UEFI HTTP boot client (option 60 `HTTPClient`, or arch 15/16/19 even
 * when it says `PXEClient`) is answered `HTTPClient` with a full URL and no PXE options; a decision
 * that names a TFTP path for it cannot be served (the firmware fetches only URLs), so that is
 * refused with the reason.
 */
export function bootAnswer(req: DhcpPacket, facts: PxeFacts, decision: Extract<PxeDecision, { action: 'boot' }>, serverAddress: string, menu: PxeMenu | undefined): BootAnswer | { error: string } {
  const cls: BootClass = facts.httpClient ? 'HTTPClient' : 'PXEClient';
  if (cls === 'HTTPClient' && !URL_RE.test(decision.bootFile)) {
    return { error: `HTTP boot client (${facts.firmware}) needs a URL, but the boot file is ${decision.bootFile}` };
  }
  // siaddr must be an address; a host name goes only in option 66.
  const siaddr = decision.nextServer && parseIp(decision.nextServer) !== undefined ? decision.nextServer : serverAddress;
  const options: Array<[number, Buffer]> = [[Opt.VENDOR_CLASS, cls === 'PXEClient' ? PXE_CLIENT : HTTP_CLIENT]];
  if (cls === 'PXEClient') options.push([Opt.VENDOR_SPECIFIC, pxeVendorOptions(menu, facts, serverAddress, req)]);
  if (decision.nextServer && decision.nextServer !== serverAddress) options.push([Opt.TFTP_SERVER, Buffer.from(decision.nextServer, 'latin1')]);
  options.push([Opt.BOOTFILE, Buffer.from(decision.bootFile, 'latin1')]);
  if (decision.bcdPath) options.push([Opt.WDS_BCD_PATH, Buffer.from(decision.bcdPath, 'latin1')]);
  const uuid = req.options.get(Opt.CLIENT_UUID);
  if (uuid) options.push([Opt.CLIENT_UUID, uuid]);
  // The file field holds 127 bytes; a longer URL goes in option 67 only (HTTP boot and iPXE read 67).
  const file = Buffer.byteLength(decision.bootFile, 'latin1') <= 127 ? decision.bootFile : '';
  return { cls, file, siaddr, options };
}

/**
 * The decision for a 4011 request that names a PXE menu item (sub-option 71): the item's own boot
 * file, or the machine's normal decision for the `swarmboot` item. Without a menu, or for clients
 * that are never shown one, the normal decision stands.
 */
export function applyMenuChoice(req: DhcpPacket, facts: PxeFacts, decision: PxeDecision, menu: PxeMenu | undefined): PxeDecision & { refused?: boolean } {
  if (decision.action !== 'boot' || !menu || facts.ipxe || facts.httpClient) return decision;
  const item = bootItemRequested(req);
  if (!item) return decision;
  const c = menuChoice(menu, item.readUInt16BE(0), facts.firmware);
  if (c.kind === 'refused') return { action: 'ignore', reason: c.why, refused: true };
  if (c.kind === 'bootfile') return { action: 'boot', bootFile: c.file, reason: `PXE menu item "${c.label}"` };
  return { ...decision, reason: `PXE menu item "${c.label}": ${decision.reason}` };
}
