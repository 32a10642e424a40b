/**
 * The PXE boot menu (PXE spec 2.1 §2.2.5 and table 2-1: option 43 sub-options 6, 8, 9, 10, 71).
 *
 * A PXE ROM that finds a menu in its DHCP/ProxyDHCP offer shows the prompt ("Press F8 for the boot
 * menu") for `timeoutSeconds`; without a key press it takes the first item, so the first item is
 * the default. A technician at the machine presses F8 and picks an item:
 * - an item of boot server type 0 (`boot: local`) makes the ROM give up network boot and go on with
 *   the firmware's boot order (the local disk); no server is asked;
 * - any other item makes the ROM unicast a DHCPREQUEST to port 4011 of the server listed for that
 *   type (sub-option 8: this server), naming the type in sub-option 71. The ACK carries the item's
 *   boot file and echoes sub-option 71: `boot: swarmboot` is this machine's normal answer (its
 *   assignment decides: a machine nobody assigned still boots its disk through the iPXE script),
 *   `bootfile:` a fixed program from the TFTP root.
 *
 * Item types are derived from the position: type 0 for the local item, 0x8000 + index (the vendor
 * range) for the others, so a choice maps back to its config line. Option 43 is sent whole (ROMs do
 * not join an option split per RFC 3396), so a menu must fit in 255 bytes; a config whose menu does
 * not fit is refused rather than cut.
 */
import { PxeSub } from './options.ts';
import type { PxeMenu, PxeMenuFirmware, PxeMenuItem } from './types.ts';

export const LOCAL_BOOT_TYPE = 0;
const VENDOR_TYPE_BASE = 0x8000;
/** Discovery control 3: no broadcast or multicast boot server discovery; ask the server listed in sub-option 8. */
const DISCOVERY_USE_LIST = 3;
const MAX_OPTION = 255;

/** The PXE boot server type of the item at `index`. */
export function itemType(item: PxeMenuItem, index: number): number {
  return item.boot === 'local' ? LOCAL_BOOT_TYPE : VENDOR_TYPE_BASE + index;
}

function bootfileFor(item: PxeMenuItem, firmware: string): string | undefined {
  if (item.bootfile === undefined) return undefined;
  if (typeof item.bootfile === 'string') return item.bootfile;
  return item.bootfile[firmware as PxeMenuFirmware];
}

/** The items a client with this firmware is shown, with their types (items naming only other firmware are left out). */
export function visibleItems(menu: PxeMenu, firmware: string): Array<{ type: number; item: PxeMenuItem }> {
  const out: Array<{ type: number; item: PxeMenuItem }> = [];
  menu.items.forEach((item, i) => {
    if (item.bootfile !== undefined && bootfileFor(item, firmware) === undefined) return;
    out.push({ type: itemType(item, i), item });
  });
  return out;
}

function sub(code: number, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([code, value.length]), value]);
}

/**
 * Sub-options 6, 8, 9 and 10 for this client, or undefined when it would see no item. Entries are
 * whole or absent, never cut: a config that does not fit is refused at load (menuProblems).
 */
export function encodeMenu(menu: PxeMenu, firmware: string, serverAddress: string): Buffer[] | undefined {
  const items = visibleItems(menu, firmware);
  if (items.length === 0) return undefined;
  const ip = Buffer.from(serverAddress.split('.').map(Number));
  const servers: Buffer[] = [];
  const entries: Buffer[] = [];
  const prompt = Buffer.from(menu.prompt, 'latin1');
  // Room left for sub-options 8 and 9 after 6 (3 bytes), 10 (3 + prompt) and the end byte.
  let room = MAX_OPTION - 3 - (3 + prompt.length) - 1 - 2 /* 9's header */;
  let serverBytes = 0;
  for (const { type, item } of items) {
    const label = Buffer.from(item.label, 'latin1');
    const server = type === LOCAL_BOOT_TYPE ? 0 : 7 + (serverBytes === 0 ? 2 : 0);
    if (3 + label.length + server > room || label.length > 255) continue;
    room -= 3 + label.length + server;
    const head = Buffer.alloc(3);
    head.writeUInt16BE(type, 0);
    head[2] = label.length;
    entries.push(head, label);
    if (type !== LOCAL_BOOT_TYPE) {
      const s = Buffer.alloc(3);
      s.writeUInt16BE(type, 0);
      s[2] = 1;
      servers.push(s, ip);
      serverBytes += 7;
    }
  }
  if (entries.length === 0) return undefined;
  const parts = [sub(PxeSub.DISCOVERY_CONTROL, Buffer.from([DISCOVERY_USE_LIST]))];
  if (servers.length) parts.push(sub(PxeSub.BOOT_SERVERS, Buffer.concat(servers)));
  parts.push(sub(PxeSub.BOOT_MENU, Buffer.concat(entries)));
  parts.push(sub(PxeSub.MENU_PROMPT, Buffer.concat([Buffer.from([menu.timeoutSeconds]), prompt])));
  return parts;
}

/** Bytes option 43 takes when every item is shown (the most any client is sent), end byte included. */
export function menuOptionBytes(menu: PxeMenu): number {
  const servers = menu.items.filter((it) => it.boot !== 'local').length;
  const entries = menu.items.reduce((n, it) => n + 3 + Buffer.byteLength(it.label, 'latin1'), 0);
  return 3 + (servers ? 2 + 7 * servers : 0) + 2 + entries + 3 + Buffer.byteLength(menu.prompt, 'latin1') + 1;
}

const PRINTABLE = /^[\x20-\x7e]*$/;

/** What is wrong with a menu, each at its path under `pxeMenu` (the config loader adds file and line). */
export function menuProblems(menu: PxeMenu): Array<{ path: Array<string | number>; message: string }> {
  const out: Array<{ path: Array<string | number>; message: string }> = [];
  if (!PRINTABLE.test(menu.prompt)) out.push({ path: ['prompt'], message: 'PXE ROMs show plain ASCII only (letters, digits, punctuation, spaces)' });
  if (!Number.isInteger(menu.timeoutSeconds) || menu.timeoutSeconds < 0 || menu.timeoutSeconds > 255) {
    out.push({ path: ['timeoutSeconds'], message: 'must be a whole number of seconds from 0 (take the first item at once) to 255 (wait forever)' });
  }
  if (menu.items.length === 0) out.push({ path: ['items'], message: 'a menu needs at least one item' });
  let local: number | undefined;
  menu.items.forEach((it, i) => {
    if (!it.label || !PRINTABLE.test(it.label)) out.push({ path: ['items', i, 'label'], message: 'must be plain ASCII text (letters, digits, punctuation, spaces), not empty' });
    const has = (it.boot !== undefined ? 1 : 0) + (it.bootfile !== undefined ? 1 : 0);
    if (has !== 1) {
      out.push({ path: ['items', i], message: has ? 'give either boot or bootfile, not both' : 'needs boot: local, boot: swarmboot, or bootfile: <TFTP path>' });
    }
    if (it.boot === 'local') {
      if (local !== undefined) out.push({ path: ['items', i, 'boot'], message: `items[${local}] already boots the local disk (boot server type 0); list it once` });
      local ??= i;
    }
    if (it.bootfile !== undefined) {
      const files = typeof it.bootfile === 'string' ? [it.bootfile] : Object.values(it.bootfile);
      if (files.length === 0 || files.some((f) => !f)) out.push({ path: ['items', i, 'bootfile'], message: 'needs a TFTP path, or one per firmware (bios, uefi-x64, uefi-ia32, uefi-arm64)' });
    }
  });
  const bytes = menuOptionBytes(menu);
  if (bytes > MAX_OPTION) {
    out.push({
      path: ['items'],
      message: `the menu takes ${bytes} bytes of DHCP option 43, which holds ${MAX_OPTION} (PXE ROMs do not join a split option): shorten the labels or the prompt, or drop items`,
    });
  }
  return out;
}

export type MenuChoice =
  | { kind: 'swarmboot'; label: string }
  | { kind: 'bootfile'; label: string; file: string }
  | { kind: 'refused'; why: string };

/** What the item of `type` (sub-option 71 of a 4011 request) means for a client with this firmware. */
export function menuChoice(menu: PxeMenu, type: number, firmware: string): MenuChoice {
  if (type === LOCAL_BOOT_TYPE) return { kind: 'refused', why: 'boot item 0 is local boot: the firmware boots its disk without asking a server' };
  const found = visibleItems(menu, firmware).find((v) => v.type === type);
  if (!found) return { kind: 'refused', why: `boot item type ${type} is not in the PXE menu for ${firmware}` };
  const file = bootfileFor(found.item, firmware);
  return file === undefined ? { kind: 'swarmboot', label: found.item.label } : { kind: 'bootfile', label: found.item.label, file };
}
