import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfigText } from '../../config/load.ts';
import { advertisedAddress, decidePxe, viaFromLocalAddress } from '../../boot/pxe.ts';
import { renderIpxeScript, renderWinpeHook } from '../../boot/ipxe.ts';
import { firmwareFromArch, archFromVendorClass } from '../../boot/firmware.ts';
import type { BootPlan } from '../../boot/deployment.ts';
import type { PxeFacts } from '../../boot/types.ts';

const cfg = loadConfigText(
  '/cfg/pxe.yaml',
  `
server: { dhcp: { unknownArch: ignore } }
boot:
  loaders: { bios: undionly.kpxe, uefi-x64: ipxe.efi, uefi-http-x64: ipxe.efi }
  profiles:
    pe: { type: winpe, dir: winpe, via: wimboot }
    pe-sb: { type: winpe, dir: winpe-sb, via: bootmgr }
    deb: { type: linux, kernel: debian/linux, initrds: [debian/initrd.gz, "http://mirror.example/extra.cpio"], cmdline: "console=ttyS0 url={{ server_url }}/x/{{ mac_hyphen }} h={{ hostname }}" }
    raw: { type: ipxe, script: "#!ipxe\\necho hi {{ hostname }} \${net0/mac}\\nsanboot --no-describe --drive 0x80" }
  menu:
    entries:
      - { label: Disk, profile: local }
      - { label: Debian, profile: deb }
sequences:
  win: { profile: pe, steps: [{ type: command, run: x }] }
  winsb: { profile: pe-sb, steps: [{ type: command, run: x }] }
  lin: { profile: deb, steps: [{ type: command, run: x }] }
machines:
  hosts:
    - { mac: "52:54:00:00:00:0a", sequence: win }
    - { mac: "52:54:00:00:00:0b", sequence: winsb }
    - { uuid: 4c4c4544-0000-0000-0000-00000000000b, sequence: winsb }
    - { mac: "52:54:00:00:00:0c", action: local }
`,
);

const facts = (over: Partial<PxeFacts>): PxeFacts => ({ mac: '52:54:00:00:00:01', firmware: 'bios', ipxe: false, httpClient: false, serverAddress: '10.0.0.1', ...over });
const deploy = (sequence: string): BootPlan => ({ kind: 'deploy', sequence, deploymentKey: sequence, start: false, reason: 'test' });
const ctx = { baseUrl: 'http://10.0.0.1:8080' };

test('option 93 codes map to firmware families; unknown codes are unknown', () => {
  assert.deepEqual([0, 6, 7, 9, 10, 11, 15, 16, 19, 42, undefined].map(firmwareFromArch), ['bios', 'uefi-ia32', 'uefi-x64', 'uefi-x64', 'uefi-arm32', 'uefi-arm64', 'uefi-http-ia32', 'uefi-http-x64', 'uefi-http-arm64', 'unknown', 'unknown']);
  assert.equal(archFromVendorClass('PXEClient:Arch:00007:UNDI:003016'), 7);
  assert.equal(archFromVendorClass('MSFT 5.0'), undefined);
});

test('firmware gets the loader for its architecture; iPXE gets its script URL, never iPXE again', () => {
  assert.deepEqual(decidePxe(facts({ firmware: 'bios' }), cfg, deploy('win'), ctx), { action: 'boot', bootFile: 'undionly.kpxe', reason: 'deploy: test; loader for bios' });
  assert.equal((decidePxe(facts({ firmware: 'uefi-x64' }), cfg, deploy('win'), ctx) as { bootFile: string }).bootFile, 'ipxe.efi');
  const ipxe = decidePxe(facts({ firmware: 'bios', ipxe: true }), cfg, { kind: 'local', reason: 'done' }, ctx);
  assert.equal((ipxe as { bootFile: string }).bootFile, 'http://10.0.0.1:8080/boot/52-54-00-00-00-01.ipxe');
});

test('UEFI HTTP boot clients get a full URL', () => {
  const d = decidePxe(facts({ firmware: 'uefi-http-x64', httpClient: true }), cfg, deploy('win'), ctx);
  assert.equal((d as { bootFile: string }).bootFile, 'http://10.0.0.1:8080/tftp/ipxe.efi');
});

test('Secure Boot WinPE profiles hand out Windows Boot Manager directly', () => {
  const sb = decidePxe(facts({ firmware: 'uefi-x64' }), cfg, deploy('winsb'), ctx);
  assert.ok(sb.action === 'boot');
  assert.equal(sb.bootFile, 'winpe-sb/boot/x64/bootmgfw.efi');
  assert.equal(sb.bcdPath, '\\winpe-sb\\Boot\\BCD', 'option 252 points bootmgr at the profile BCD');
  assert.ok(sb.handsOutDeployment);
  assert.equal((decidePxe(facts({ firmware: 'bios' }), cfg, deploy('winsb'), ctx) as { bootFile: string }).bootFile, 'winpe-sb/boot/pxeboot.n12');
});

test('ignore plans, unknown architectures (policy ignore) and missing loaders get no answer', () => {
  assert.equal(decidePxe(facts({}), cfg, { kind: 'ignore', reason: 'r' }, ctx).action, 'ignore');
  const unk = decidePxe(facts({ firmware: 'unknown', archCode: 42 }), cfg, deploy('win'), ctx);
  assert.equal(unk.action, 'ignore');
  assert.match(unk.reason, /unknown client architecture 42/);
  const arm = decidePxe(facts({ firmware: 'uefi-arm64' }), cfg, deploy('win'), ctx);
  assert.match(arm.reason, /no boot program for uefi-arm64/);
});

const sctx = { mac: '52:54:00:00:00:01', baseUrl: 'http://10.0.0.1:8080', vars: { server_url: 'http://10.0.0.1:8080', mac_hyphen: '52-54-00-00-00-01', hostname: 'pc1' } };

test('WinPE script: wimboot, bootmgr for BIOS only, BCD, boot.sdi, boot.wim and the per-machine injected files', () => {
  const s = renderIpxeScript(cfg, deploy('win'), sctx);
  assert.match(s, /^#!ipxe\n/);
  assert.match(s, /kernel http:\/\/10\.0\.0\.1:8080\/tftp\/wimboot gui && goto wimboot_ok/);
  assert.match(s, /iseq \$\{platform\} efi && goto winpe_efi/);
  for (const [name, url] of [['bootmgr', 'winpe/bootmgr'], ['BCD', 'winpe/Boot/BCD'], ['boot.sdi', 'winpe/Boot/boot.sdi'], ['boot.wim', 'winpe/sources/boot.wim']]) {
    assert.ok(s.includes(`initrd -n ${name} http://10.0.0.1:8080/tftp/${url} &&`), name);
  }
  assert.match(s, /initrd -n winpeshl\.ini http:\/\/10\.0\.0\.1:8080\/boot\/52-54-00-00-00-01\/winpeshl\.ini/);
  assert.match(s, /initrd -n swarmboot\.cmd http:\/\/10\.0\.0\.1:8080\/boot\/52-54-00-00-00-01\/swarmboot\.cmd/);
  assert.match(s, /inc tries\niseq \$\{tries\} 5 && goto failed/, 'fetches are retried');
  assert.match(s, /^boot \|\| goto failed$/m);
});

test('Linux script: initrd=NAME for UEFI, templated command line, absolute URLs kept', () => {
  const s = renderIpxeScript(cfg, deploy('lin'), sctx);
  assert.match(s, /kernel http:\/\/10\.0\.0\.1:8080\/tftp\/debian\/linux initrd=initrd0 initrd=initrd1 console=ttyS0 url=http:\/\/10\.0\.0\.1:8080\/x\/52-54-00-00-00-01 h=pc1 &&/);
  assert.match(s, /initrd -n initrd0 http:\/\/10\.0\.0\.1:8080\/tftp\/debian\/initrd\.gz/);
  assert.match(s, /initrd -n initrd1 http:\/\/mirror\.example\/extra\.cpio/);
});

test('local and menu scripts; raw scripts keep iPXE variables', () => {
  assert.match(renderIpxeScript(cfg, { kind: 'local', reason: 'deployment done' }, sctx), /# local boot: deployment done\niseq \$\{platform\} efi && goto local_efi \|\|\n[^]*\nsanboot --no-describe --drive 0x80 \|\|\n[^]*\n:local_efi\n.*\nexit 1\n$/);
  const m = renderIpxeScript(cfg, { kind: 'menu', reason: 'r' }, sctx);
  assert.match(m, /menu swarmboot\nitem e0 Disk\nitem e1 Debian\nchoose --timeout 30000 --default e0 selected/);
  assert.match(m, /:e1\nset tries:int32 0\n:e1_kernel\n/);
  const raw = loadConfigText('/r.yaml', cfg.file ? `boot: { profiles: { raw: { type: ipxe, script: "#!ipxe\\necho {{ hostname }} \${net0/mac}" } } }\nsequences: { r: { profile: raw, steps: [{ type: command, run: x }] } }\n` : '');
  const r = renderIpxeScript(raw, deploy('r'), sctx);
  assert.match(r, /echo pc1 \$\{net0\/mac\}/);
});

test('the WinPE hook names the sequence URL for this machine', () => {
  const h = renderWinpeHook(sctx);
  assert.match(h, /set SWARMBOOT_SEQUENCE_URL=http:\/\/10\.0\.0\.1:8080\/api\/v1\/machines\/52:54:00:00:00:01\/sequence\r\n/);
});

const done: BootPlan = { kind: 'local', reason: 'deployment of winsb is done' };
const withPxe = (pxe: string) =>
  loadConfigText('/cfg/pxe2.yaml', `boot:\n  localBoot: { pxe: ${pxe} }\n  loaders: { bios: undionly.kpxe, uefi-x64: snponly.efi }\n  profiles: { sb: { type: winpe, dir: w, via: bootmgr } }\nsequences: { s: { profile: sb, steps: [{ type: command, run: x }] } }\nmachines: { hosts: [{ mac: "52:54:00:00:00:0b", sequence: s }] }\n`);

test('a finished machine assigned a Secure Boot (bootmgr) profile is not offered iPXE at its firmware PXE request', () => {
  for (const fw of ['uefi-x64', 'bios'] as const) {
    const d = decidePxe(facts({ mac: '52:54:00:00:00:0b', firmware: fw }), cfg, done, ctx);
    assert.equal(d.action, 'ignore', `${fw}: ${JSON.stringify(d)}`);
    assert.match(d.reason, /deployment of winsb is done; profile pe-sb boots Windows Boot Manager \(Secure Boot\): no iPXE/);
  }
  // Matched by SMBIOS UUID (option 97) just the same.
  const byUuid = decidePxe(facts({ mac: '52:54:00:00:00:99', uuid: '4c4c4544-0000-0000-0000-00000000000b', firmware: 'uefi-x64' }), cfg, done, ctx);
  assert.equal(byUuid.action, 'ignore');
  // While its deployment is pending it gets Windows Boot Manager, as before.
  assert.equal((decidePxe(facts({ mac: '52:54:00:00:00:0b', firmware: 'uefi-x64' }), cfg, deploy('winsb'), ctx) as { bootFile: string }).bootFile, 'winpe-sb/boot/x64/bootmgfw.efi');
});

test('other finished machines get iPXE by default (auto), whose script boots the disk; iPXE itself always gets its script', () => {
  const wimboot = decidePxe(facts({ mac: '52:54:00:00:00:0a', firmware: 'uefi-x64' }), cfg, { kind: 'local', reason: 'done' }, ctx);
  assert.deepEqual(wimboot, { action: 'boot', bootFile: 'ipxe.efi', reason: 'local: done; loader for uefi-x64' });
  const bios = decidePxe(facts({ mac: '52:54:00:00:00:0c', firmware: 'bios' }), cfg, { kind: 'local', reason: 'host entry (by mac): local boot' }, ctx);
  assert.equal((bios as { bootFile: string }).bootFile, 'undionly.kpxe');
  const ipxe = decidePxe(facts({ mac: '52:54:00:00:00:0b', firmware: 'uefi-x64', ipxe: true }), cfg, done, ctx);
  assert.equal((ipxe as { bootFile: string }).bootFile, 'http://10.0.0.1:8080/boot/52-54-00-00-00-0b.ipxe', 'an iPXE that asks anyway is told to boot the disk');
});

test('boot.localBoot.pxe: silent answers no firmware with a local plan; ipxe answers even Secure Boot machines', () => {
  const silent = withPxe('silent');
  for (const mac of ['52:54:00:00:00:0b', '52:54:00:00:00:77']) {
    const d = decidePxe(facts({ mac, firmware: 'bios' }), silent, { kind: 'local', reason: 'r' }, ctx);
    assert.equal(d.action, 'ignore');
    assert.match(d.reason, /boot\.localBoot\.pxe is silent/);
  }
  assert.equal(decidePxe(facts({ mac: '52:54:00:00:00:0b', firmware: 'uefi-x64' }), silent, deploy('s'), ctx).action, 'boot', 'deployments are answered');
  assert.equal(decidePxe(facts({ mac: '52:54:00:00:00:0b', firmware: 'uefi-x64', ipxe: true }), silent, { kind: 'local', reason: 'r' }, ctx).action, 'boot', 'iPXE still gets its script');
  const always = withPxe('ipxe');
  assert.equal((decidePxe(facts({ mac: '52:54:00:00:00:0b', firmware: 'uefi-x64' }), always, done, ctx) as { bootFile: string }).bootFile, 'snponly.efi');
});

test('the address a request arrived on becomes a URL host only when it is an IP address', () => {
  assert.equal(viaFromLocalAddress('10.1.2.3'), '10.1.2.3');
  assert.equal(viaFromLocalAddress('::ffff:10.1.2.3'), '10.1.2.3');
  assert.equal(viaFromLocalAddress('fd00::1'), '[fd00::1]');
  for (const bad of [undefined, '', '0.0.0.0', '::', '300.1.1.1', 'fe80::1%eth0', 'evil.example/x', '10.1.2.3:80']) assert.equal(viaFromLocalAddress(bad), undefined, String(bad));
  const withAddress = loadConfigText('/a.yaml', 'server: { address: 192.0.2.10 }\n');
  assert.equal(advertisedAddress(withAddress, '10.1.2.3', '10.9.9.9'), '10.1.2.3', 'the address the machine reached wins over server.address');
  assert.equal(advertisedAddress(withAddress, undefined, '10.9.9.9'), '192.0.2.10', 'server.address when the request address is not known');
  assert.equal(advertisedAddress(cfg, '10.1.2.3', '10.9.9.9'), '10.1.2.3');
  assert.equal(advertisedAddress(cfg, undefined, '10.9.9.9'), '10.9.9.9');
});
