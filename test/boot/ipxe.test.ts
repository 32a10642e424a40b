/**
 * Generated iPXE scripts, checked by running them through a model of iPXE's control flow
 * (ipxe-sim.ts): what a machine ends up doing on BIOS and UEFI when fetches fail, disks are or are
 * not bootable, and menu entries return.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfigText, type LoadedConfig } from '../../config/load.ts';
import { renderIpxeScript, renderWinpeHook } from '../../boot/ipxe.ts';
import type { BootPlan } from '../../boot/deployment.ts';
import { runIpxe } from './ipxe-sim.ts';

const BASE = `
boot:
  profiles:
    pe: { type: winpe, dir: winpe, via: wimboot }
    deb: { type: linux, kernel: debian/linux, initrds: [debian/initrd.gz], cmdline: "console=ttyS0 ip={{ ip }} srv={{ server }} url={{ server_url }}" }
    hello: { type: ipxe, script: "#!ipxe\\necho hello {{ hostname }}\\nset done yes" }
    loop: { type: ipxe, script: "#!ipxe\\n:again\\necho in a raw loop\\niseq \${n} 1 && goto out ||\\nset n 1\\ngoto again\\n:out" }
  menu:
    timeoutSeconds: 5
    entries:
      - { label: Disk, profile: local }
      - { label: Debian, profile: deb }
      - { label: Hello, profile: hello }
      - { label: Loop, profile: loop }
sequences:
  win: { profile: pe, steps: [{ type: command, run: x }] }
  lin: { profile: deb, steps: [{ type: command, run: x }] }
`;

const cfgWith = (localBoot = '') => loadConfigText('/cfg/ipxe.yaml', BASE.replace('boot:\n', `boot:\n${localBoot}`));
const cfg = cfgWith();
const ctx = {
  mac: '52:54:00:00:00:01',
  baseUrl: 'http://10.0.0.1:8080',
  vars: { server_url: 'http://10.0.0.1:8080', server: '10.0.0.1', ip: '10.0.0.57', mac_hyphen: '52-54-00-00-00-01', hostname: 'pc1' },
};
const local: BootPlan = { kind: 'local', reason: 'deployment of win is done' };
const deploy = (sequence: string): BootPlan => ({ kind: 'deploy', sequence, deploymentKey: sequence, start: false, reason: 'test' });
const script = (c: LoadedConfig, plan: BootPlan) => renderIpxeScript(c, plan, ctx);
const fails = (re: RegExp, times = Infinity) => (cmd: string, attempt: number) => (re.test(cmd) && attempt <= times ? 1 : 0);

test('local boot on BIOS: sanboot of the first hard disk', () => {
  const r = runIpxe(script(cfg, local), { platform: 'pcbios' });
  assert.deepEqual(r.ending, { how: 'booted', by: 'sanboot --no-describe --drive 0x80' });
  assert.match(script(cfg, local), /^# local boot: deployment of win is done$/m);
});

test('local boot on BIOS without a bootable disk: sanboot fails, the script exits to the BIOS (exit 1), never fails mid-script', () => {
  const r = runIpxe(script(cfg, local), { platform: 'pcbios', status: fails(/^sanboot/) });
  assert.deepEqual(r.ending, { how: 'exit', code: 1 });
  assert.ok(r.trace.includes('sanboot --no-describe --drive 0x80'));
});

test('local boot on UEFI: exit with a non-zero status (the firmware tries its next boot option), no sanboot', () => {
  const r = runIpxe(script(cfg, local), { platform: 'efi' });
  assert.deepEqual(r.ending, { how: 'exit', code: 1 });
  assert.ok(!r.trace.some((c) => c.startsWith('sanboot')), r.trace.join('\n'));
});

test('boot.localBoot: bios exit skips sanboot; biosDrive picks the drive', () => {
  const exitCfg = cfgWith('  localBoot: { bios: exit }\n');
  assert.deepEqual(exitCfg.localBoot, { bios: 'exit', biosDrive: 0x80, uefi: 'exit', pxe: 'auto' });
  const r = runIpxe(script(exitCfg, local), { platform: 'pcbios' });
  assert.deepEqual(r.ending, { how: 'exit', code: 1 });
  assert.ok(!r.trace.some((c) => c.startsWith('sanboot')));
  const drive = cfgWith('  localBoot: { bios: sanboot, biosDrive: 0x81 }\n');
  assert.deepEqual(runIpxe(script(drive, local), { platform: 'pcbios' }).ending, { how: 'booted', by: 'sanboot --no-describe --drive 0x81' });
  assert.deepEqual(cfg.localBoot, { bios: 'sanboot', biosDrive: 0x80, uefi: 'exit', pxe: 'auto' }, 'defaults');
});

test('boot.localBoot refuses what no firmware can do, with the key named', () => {
  for (const [bad, key] of [
    ['  localBoot: { uefi: sanboot }\n', 'uefi'],
    ['  localBoot: { bios: grub }\n', 'bios'],
    ['  localBoot: { biosDrive: 0 }\n', 'biosDrive'],
    ['  localBoot: { pxe: never }\n', 'pxe'],
    ['  localBoot: { bois: exit }\n', 'bois'],
  ] as const) {
    assert.throws(() => cfgWith(bad), (e: unknown) => e instanceof ConfigError && e.message.includes(key) && /ipxe\.yaml:\d+/.test(e.message), bad);
  }
});

test('ignore and local plans, and a sequence without a profile, all boot the disk the same way', () => {
  for (const plan of [{ kind: 'ignore', reason: 'x' }, local] as BootPlan[]) {
    assert.deepEqual(runIpxe(script(cfg, plan), { platform: 'efi' }).ending, { how: 'exit', code: 1 });
  }
});

test('menu: a raw entry that returns goes back to the menu, never into the next entry', () => {
  const m = script(cfg, { kind: 'menu', reason: 'r' });
  const r = runIpxe(m, { platform: 'pcbios', choices: ['e2'] });
  assert.equal(r.ending.how, 'loop', 'back at choose with no more choices');
  assert.ok(r.trace.includes('echo hello pc1'), r.trace.join('\n'));
  assert.equal(r.trace.filter((c) => c.startsWith('choose')).length, 2, 'the menu is shown again');
  assert.ok(!r.trace.some((c) => c.includes('in a raw loop') || c.startsWith('sanboot') || c.startsWith('exit')), `nothing of entries e3 / e0 ran:\n${r.trace.join('\n')}`);
  assert.ok(r.trace.includes('imgfree'), 'images from the returned entry are freed');
  // The raw entry with its own labels still works, and then returns to the menu too; then the disk.
  const r2 = runIpxe(m, { platform: 'pcbios', choices: ['e3', 'e0'] });
  assert.equal(r2.trace.filter((c) => c === 'echo in a raw loop').length, 2, 'its own labels were kept apart from the others');
  assert.deepEqual(r2.ending, { how: 'booted', by: 'sanboot --no-describe --drive 0x80' });
});

test('menu: the last entry returning does not fall off the end of the script', () => {
  const c = loadConfigText('/cfg/m.yaml', BASE.replace(/entries:[\s\S]*?sequences:/, 'entries:\n      - { label: Hello, profile: hello }\nsequences:'));
  const r = runIpxe(script(c, { kind: 'menu', reason: 'r' }), { platform: 'efi', choices: ['e0'] });
  assert.equal(r.ending.how, 'loop');
});

test('menu: the local entry boots the disk per firmware; the default (timeout) is the first entry', () => {
  const m = script(cfg, { kind: 'menu', reason: 'r' });
  assert.match(m, /^choose --timeout 5000 --default e0 selected \|\| goto e0$/m);
  assert.deepEqual(runIpxe(m, { platform: 'efi', choices: ['e0'] }).ending, { how: 'exit', code: 1 });
  assert.deepEqual(runIpxe(m, { platform: 'pcbios', choices: ['e0'] }).ending, { how: 'booted', by: 'sanboot --no-describe --drive 0x80' });
  // Escape at the menu: choose fails, the default runs.
  assert.deepEqual(runIpxe(m, { platform: 'efi', choices: [] }).ending, { how: 'loop' });
});

test('menu: a Linux entry whose kernel cannot be fetched retries 5 times, then starts over from the script URL', () => {
  const m = script(cfg, { kind: 'menu', reason: 'r' });
  const r = runIpxe(m, { platform: 'efi', choices: ['e1'], status: fails(/^kernel /) });
  assert.equal(r.trace.filter((c) => c.startsWith('kernel ')).length, 5);
  assert.deepEqual(r.ending, { how: 'booted', by: 'chain --replace http://10.0.0.1:8080/boot/52-54-00-00-00-01.ipxe' });
});

test('WinPE script: a fetch that fails twice is retried and the boot goes on; bootmgr is loaded on BIOS only', () => {
  const s = script(cfg, deploy('win'));
  const bios = runIpxe(s, { platform: 'pcbios', status: fails(/^initrd -n BCD /, 2) });
  assert.deepEqual(bios.ending, { how: 'booted', by: 'boot' });
  const loads = (t: string[]) => t.filter((c) => /^(kernel|initrd) /.test(c)).map((c) => c.split(' ').slice(0, 3).join(' '));
  assert.deepEqual(loads(bios.trace), [
    'kernel http://10.0.0.1:8080/tftp/wimboot gui',
    'initrd -n bootmgr',
    'initrd -n BCD',
    'initrd -n BCD',
    'initrd -n BCD',
    'initrd -n boot.sdi',
    'initrd -n boot.wim',
    'initrd -n winpeshl.ini',
    'initrd -n swarmboot.cmd',
  ]);
  const efi = runIpxe(s, { platform: 'efi' });
  assert.ok(!loads(efi.trace).includes('initrd -n bootmgr'));
  assert.deepEqual(efi.ending, { how: 'booted', by: 'boot' });
});

test('Linux command line: {{ ip }}, {{ server }} and {{ server_url }} are filled in; initrd=NAME for UEFI', () => {
  const s = script(cfg, deploy('lin'));
  assert.match(s, /^kernel http:\/\/10\.0\.0\.1:8080\/tftp\/debian\/linux initrd=initrd0 console=ttyS0 ip=10\.0\.0\.57 srv=10\.0\.0\.1 url=http:\/\/10\.0\.0\.1:8080 && goto kernel_ok \|\|$/m);
  const noIp = renderIpxeScript(cfg, deploy('lin'), { ...ctx, vars: { ...ctx.vars, ip: '' } });
  assert.match(noIp, / ip= srv=/, 'an unknown address is empty, not left as {{ ip }}');
});

test('the WinPE hook fetches the sequence (curl.exe, else PowerShell), prints it, reports started, then runs the agent', () => {
  const h = renderWinpeHook(ctx);
  const lines = h.split('\r\n');
  assert.ok(!/[^\r]\n/.test(h), 'CRLF line ends only');
  const at = (re: RegExp) => {
    const i = lines.findIndex((l) => re.test(l));
    assert.ok(i >= 0, `${re} in\n${h}`);
    return i;
  };
  assert.equal(lines[at(/^set SWARMBOOT_SEQUENCE_URL=/)], 'set SWARMBOOT_SEQUENCE_URL=http://10.0.0.1:8080/api/v1/machines/52:54:00:00:00:01/sequence');
  // Order: fetch (curl or PowerShell), then the status decides; started only after a 200; the agent after that.
  const curl = at(/^if %SWARMBOOT_FETCH%==curl curl\.exe .* -w "%%\{http_code\}" "%SWARMBOOT_SEQUENCE_URL%"/);
  const ps = at(/^if %SWARMBOOT_FETCH%==powershell powershell .*Invoke-WebRequest/);
  const ok = at(/^if "%SWARMBOOT_STATUS%"=="200" goto swarmboot_fetched$/);
  const fetched = at(/^:swarmboot_fetched$/);
  const started = at(/^if %SWARMBOOT_FETCH%==curl curl\.exe .*-X POST .*swarmboot-started\.json" "%SWARMBOOT_EVENTS_URL%"$/);
  const agent = at(/^:swarmboot_agent$/);
  assert.ok(curl < ok && ps < ok && ok < fetched && fetched < started && started < agent);
  assert.match(lines[at(/swarmboot-started\.json" echo /)]!, /echo \{"type":"started","message":"[^"]+"\}$/);
  // Every goto names a label that exists.
  const labels = new Set(lines.filter((l) => l.startsWith(':')).map((l) => l.slice(1)));
  for (const l of lines) for (const m of l.matchAll(/goto (\S+?)\)?$/g)) if (m[1] !== ':eof') assert.ok(labels.has(m[1]!), `goto ${m[1]}`);
  // PowerShell: try and catch are not split by `;`, braces balance, and nothing cmd would eat.
  const psCode = /-Command "(.*)"$/.exec(lines[ps]!)![1]!;
  assert.doesNotMatch(psCode, /\}\s*;\s*catch/);
  assert.equal([...psCode].filter((c) => c === '{').length, [...psCode].filter((c) => c === '}').length);
  assert.doesNotMatch(psCode, /[%"&|<>^]/);
  assert.match(h, /see|section A\.6/);
  assert.doesNotMatch(h, /README/);
});
