/** The PXE boot menu (option 43 sub-options 6, 8, 9, 10, 71): what ROMs are shown, what a chosen item boots, and configs that cannot work. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Opt } from '../../server/dhcp/options.ts';
import { DhcpConfigError, resolveTopology } from '../../server/dhcp/networks.ts';
import { encodeMenu, menuOptionBytes } from '../../server/dhcp/pxe-menu.ts';
import type { PxeMenu } from '../../server/dhcp/types.ts';
import { silentLogger } from '../../server/log.ts';
import { Registry } from '../../server/metrics.ts';
import { ConfigError, loadConfigText } from '../../config/load.ts';
import { clientBuf, MsgType } from './packets.ts';
import { harness, oneLink } from './harness.ts';
import { testDecider } from './decider.ts';

const MAC = '52:54:00:aa:cc:01';
const menu: PxeMenu = {
  prompt: 'Press F8 for the boot menu',
  timeoutSeconds: 10,
  items: [
    { label: 'Boot from local disk', boot: 'local' },
    { label: 'Deploy (swarmboot)', boot: 'swarmboot' },
    { label: 'Memtest86+ (BIOS)', bootfile: { bios: 'tools/memtest86+.bin' } },
    { label: 'Vendor diagnostics', bootfile: 'tools/diag.0' },
  ],
};

/** Option 43 as sub-option code → value; asserts it is well formed and ends with 255. */
function subOptions(o43: Buffer): Map<number, Buffer> {
  const subs = new Map<number, Buffer>();
  let i = 0;
  while (o43[i] !== 255) {
    assert.ok(i + 2 <= o43.length, 'sub-option header inside option 43');
    const len = o43[i + 1]!;
    assert.ok(i + 2 + len < o43.length, 'sub-option value inside option 43, end byte after it');
    subs.set(o43[i]!, o43.subarray(i + 2, i + 2 + len));
    i += 2 + len;
  }
  assert.equal(i, o43.length - 1, 'nothing after the end byte');
  return subs;
}

/** Sub-option 9 entries, each read whole: a cut entry fails here. */
function menuEntries(v: Buffer): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  for (let i = 0; i < v.length;) {
    assert.ok(i + 3 <= v.length, 'entry header complete');
    const len = v[i + 2]!;
    assert.ok(i + 3 + len <= v.length, 'entry description complete');
    out.push([v.readUInt16BE(i), v.toString('latin1', i + 3, i + 3 + len)]);
    i += 3 + len;
  }
  return out;
}

test('the menu in the offer: discovery control 3, one boot server per item, the items this firmware can boot, prompt and timeout', () => {
  const t = harness({ mode: 'proxy', pxeMenu: menu });
  const bios = subOptions(t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 0 })).replies[0]!.options.get(Opt.VENDOR_SPECIFIC)!);
  assert.deepEqual([...bios.get(6)!], [3]);
  assert.deepEqual([...bios.get(8)!], [0x80, 1, 1, 10, 66, 0, 1, 0x80, 2, 1, 10, 66, 0, 1, 0x80, 3, 1, 10, 66, 0, 1], 'no server for the local item (type 0)');
  assert.deepEqual(menuEntries(bios.get(9)!), [[0, 'Boot from local disk'], [0x8001, 'Deploy (swarmboot)'], [0x8002, 'Memtest86+ (BIOS)'], [0x8003, 'Vendor diagnostics']]);
  assert.equal(bios.get(10)!.toString('latin1'), '\x0aPress F8 for the boot menu');

  // A UEFI machine is not offered the BIOS-only program; the others keep their types.
  const uefi = subOptions(t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 7 })).replies[0]!.options.get(Opt.VENDOR_SPECIFIC)!);
  assert.deepEqual(menuEntries(uefi.get(9)!), [[0, 'Boot from local disk'], [0x8001, 'Deploy (swarmboot)'], [0x8003, 'Vendor diagnostics']]);
});

test('iPXE (option 175 or user class) and HTTP boot clients are never sent the menu', () => {
  const t = harness({ mode: 'proxy', pxeMenu: menu });
  for (const extra of [[[Opt.IPXE_ENCAP, Buffer.from([0xb1, 1, 1])]], [[Opt.USER_CLASS, Buffer.from('iPXE')]]] as Array<Array<[number, Buffer]>>) {
    const p = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 0, extra })).replies[0]!;
    assert.deepEqual([...p.options.get(Opt.VENDOR_SPECIFIC)!], [6, 1, 8, 255], 'iPXE would show the menu again after every chainload');
    assert.equal(p.options.get(Opt.BOOTFILE)!.toString(), `http://10.66.0.1:8080/boot/${MAC}.ipxe`);
  }
  const http = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 16, vendorClass: 'HTTPClient:Arch:00016:UNDI:003016' })).replies[0]!;
  assert.equal(http.options.has(Opt.VENDOR_SPECIFIC), false);
});

test('the 4011 ACK boots the chosen item and echoes sub-option 71', () => {
  const t = harness({ mode: 'proxy', pxeMenu: menu }, oneLink, { capture: true });
  const src = { address: '10.66.0.123', port: 68 };
  const ask = (arch: number, item: [number, number], mac = MAC) => t.send(clientBuf({ type: MsgType.REQUEST, mac, arch, ciaddr: src.address, bootItem: item }), 'pxe', src);

  const deploy = ask(0, [0x8001, 0]);
  assert.equal(deploy.replies[0]!.file, 'undionly.kpxe', '"Deploy (swarmboot)": the machine\'s normal answer');
  assert.deepEqual([...deploy.replies[0]!.options.get(Opt.VENDOR_SPECIFIC)!], [6, 1, 8, 71, 4, 0x80, 1, 0, 0, 255]);
  assert.equal(ask(7, [0x8001, 0]).replies[0]!.file, 'ipxe.efi');

  const memtest = ask(0, [0x8002, 0]);
  assert.equal(memtest.replies[0]!.file, 'tools/memtest86+.bin');
  assert.equal(memtest.replies[0]!.options.get(Opt.BOOTFILE)!.toString(), 'tools/memtest86+.bin');
  assert.equal(memtest.replies[0]!.siaddr, '10.66.0.1');
  assert.deepEqual([...memtest.replies[0]!.options.get(Opt.VENDOR_SPECIFIC)!], [6, 1, 8, 71, 4, 0x80, 2, 0, 0, 255]);
  assert.ok(t.logs.some((l) => l.mac === MAC && l.why === 'PXE menu item "Memtest86+ (BIOS)"'), 'the choice is logged');
  assert.equal(ask(7, [0x8003, 0]).replies[0]!.file, 'tools/diag.0');

  // Not in this firmware's menu, local boot (the ROM never asks for it), or no such item: no answer.
  for (const [arch, item] of [[7, [0x8002, 0]], [0, [0, 0]], [0, [0x8009, 0]]] as Array<[number, [number, number]]>) {
    const r = ask(arch, item);
    assert.equal(r.out.length, 0, `arch ${arch} item ${item[0]}`);
    assert.equal(r.reason, 'unknown_boot_item');
  }
  // A machine swarmboot does not answer gets no menu, and no item either.
  assert.equal(ask(0, [0x8003, 0], '02:00:00:00:00:ee').reason, 'decider_ignore');
});

test('full mode: the menu rides in the OFFER with the address; the item is served on 4011', () => {
  const t = harness({ mode: 'full', pxeMenu: menu, pools: [{ subnet: '10.66.0.0/24', rangeStart: '10.66.0.100', rangeEnd: '10.66.0.110' }] });
  const offer = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 0 })).replies[0]!;
  assert.equal(offer.yiaddr, '10.66.0.100');
  assert.equal(menuEntries(subOptions(offer.options.get(Opt.VENDOR_SPECIFIC)!).get(9)!).length, 4);
  const ack = t.send(clientBuf({ type: MsgType.REQUEST, mac: MAC, arch: 0, ciaddr: '10.66.0.100', bootItem: [0x8002, 0] }), 'pxe', { address: '10.66.0.100', port: 68 });
  assert.equal(ack.replies[0]!.file, 'tools/memtest86+.bin');
  assert.equal(ack.replies[0]!.yiaddr, '0.0.0.0');
});

test('a menu that fills option 43 exactly is sent whole; one byte more is refused, never cut', () => {
  const base: PxeMenu = { prompt: 'F8', timeoutSeconds: 5, items: [{ label: 'Local', boot: 'local' }, { label: 'Deploy', boot: 'swarmboot' }] };
  const fill = 255 - menuOptionBytes(base);
  const full: PxeMenu = { ...base, items: [...base.items, { label: 'x'.repeat(fill - 3 - 7), bootfile: 'a.0' }] };
  assert.equal(menuOptionBytes(full), 255);
  const t = harness({ mode: 'proxy', pxeMenu: full });
  const o43 = t.send(clientBuf({ type: MsgType.DISCOVER, mac: MAC, arch: 0 })).replies[0]!.options.get(Opt.VENDOR_SPECIFIC)!;
  assert.equal(o43.length, 255);
  assert.deepEqual(menuEntries(subOptions(o43).get(9)!).map(([type]) => type), [0, 0x8001, 0x8002]);

  const over: PxeMenu = { ...full, prompt: 'F8!' };
  assert.equal(menuOptionBytes(over), 256);
  const opts = { mode: 'proxy' as const, decide: testDecider, logger: silentLogger(), metrics: new Registry(), pxeMenu: over };
  assert.throws(() => resolveTopology(opts, oneLink), (e: Error) => e instanceof DhcpConfigError && /pxeMenu\.items: the menu takes 256 bytes of DHCP option 43, which holds 255/.test(e.message));
  // Even if one got past the check, the encoder drops whole entries rather than cutting one.
  const parts = encodeMenu(over, 'bios', '10.66.0.1')!;
  const o43b = Buffer.concat([...parts, Buffer.from([255])]);
  assert.ok(o43b.length <= 255);
  assert.deepEqual(menuEntries(subOptions(o43b).get(9)!).map(([type]) => type), [0, 0x8001]);
});

const cfgWith = (pxeMenu: string) => `server:
  dataDir: data
  dhcp:
    mode: proxy
    pxeMenu:
${pxeMenu}
boot:
  loaders: { bios: undionly.kpxe }
`;

function configIssues(text: string): Array<{ line: number; key: string; message: string }> {
  try {
    loadConfigText('/cfg/menu.yaml', text);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.issues.map((i) => ({ line: i.line, key: i.key, message: i.message }));
  }
  assert.fail('config accepted');
}

test('config: server.dhcp.pxeMenu is loaded with its defaults', () => {
  const cfg = loadConfigText('/cfg/menu.yaml', cfgWith(`      items:
        - { label: Boot from local disk, boot: local }
        - { label: Deploy (swarmboot), boot: swarmboot }
        - label: Diagnostics
          bootfile: { bios: diag/diag.0, uefi-x64: diag/diag.efi }`));
  assert.deepEqual(cfg.server.dhcp.pxeMenu, {
    prompt: 'Press F8 for the boot menu',
    timeoutSeconds: 5,
    items: [
      { label: 'Boot from local disk', boot: 'local' },
      { label: 'Deploy (swarmboot)', boot: 'swarmboot' },
      { label: 'Diagnostics', bootfile: { bios: 'diag/diag.0', 'uefi-x64': 'diag/diag.efi' } },
    ],
  });
  const noMenu = loadConfigText('/cfg/plain.yaml', 'server: { dataDir: data }\n');
  assert.equal(noMenu.server.dhcp.pxeMenu, undefined);
});

test('config: a menu that cannot work is refused with file, line and key', () => {
  const long = Array.from({ length: 8 }, (_, i) => `        - { label: "Deploy Windows 11 Enterprise image number ${i}", boot: swarmboot }`).join('\n');
  assert.deepEqual(configIssues(cfgWith(`      prompt: Press F8
      items:
${long}`)).map((i) => [i.line, i.key, i.message.replace(/ \d+ bytes/, ' N bytes')]), [
    [8, 'server.dhcp.pxeMenu.items', 'the menu takes N bytes of DHCP option 43, which holds 255 (PXE ROMs do not join a split option): shorten the labels or the prompt, or drop items'],
  ]);

  const issues = configIssues(cfgWith(`      items:
        - { label: Local, boot: local }
        - { label: Both, boot: swarmboot, bootfile: x.0 }
        - { label: Neither }
        - { label: Local again, boot: local }`));
  assert.deepEqual(issues.map((i) => [i.line, i.key]), [
    [8, 'server.dhcp.pxeMenu.items[1]'],
    [9, 'server.dhcp.pxeMenu.items[2]'],
    [10, 'server.dhcp.pxeMenu.items[3].boot'],
  ]);
  assert.match(issues[0]!.message, /either boot or bootfile, not both/);
  assert.match(issues[1]!.message, /needs boot: local, boot: swarmboot, or bootfile/);
  assert.match(issues[2]!.message, /items\[0\] already boots the local disk/);

  // Schema errors carry their location too.
  const schema = configIssues(cfgWith(`      timeoutSeconds: 300
      items:
        - { label: "Déployer", boot: swarmboot }
        - { label: Tools, boot: memtest }`));
  assert.deepEqual(schema.map((i) => [i.line, i.key]), [
    [6, 'server.dhcp.pxeMenu.timeoutSeconds'],
    [8, 'server.dhcp.pxeMenu.items[0].label'],
    [9, 'server.dhcp.pxeMenu.items[1].boot'],
  ]);
  assert.match(schema[1]!.message, /ASCII/);
});
