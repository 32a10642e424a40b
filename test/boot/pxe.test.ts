import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfigText } from '../../config/load.ts';
import { decidePxe } from '../../boot/pxe.ts';
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
  assert.match(renderIpxeScript(cfg, { kind: 'local', reason: 'deployment done' }, sctx), /# local boot: deployment done\n.*\nexit 1\n$/);
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
