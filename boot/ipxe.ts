/**
 * Per-machine iPXE scripts and the small files injected into WinPE, rendered from the boot plan.
 * Pure: the HTTP front end asks, stores nothing here.
 *
 * Every fetch is retried (a busy server or a lost packet must not strand a machine in iPXE), and a
 * deployment's script reports "booting" by being served (the HTTP route records it).
 */
import type { LoadedConfig, Vars } from '../config/load.ts';
import { renderTemplate } from '../config/template.ts';
import type { BootPlan } from './deployment.ts';
import { bootFileUrl } from './pxe.ts';

export interface ScriptContext {
  mac: string;
  baseUrl: string;
  vars: Vars;
}

const RETRIES = 5;

/** iPXE's own `${…}` must survive, so only `{{ }}` is ours; iPXE comments cannot carry newlines. */
function comment(text: string): string {
  return `# ${text.replace(/[\r\n]+/g, ' ')}`;
}

/** A command that is retried RETRIES times with a growing pause, then fails to the shell-free error path. */
function retried(lines: string[], label: string, cmd: string): void {
  lines.push(
    `set tries:int32 0`,
    `:${label}`,
    `${cmd} && goto ${label}_ok ||`,
    `inc tries`,
    `iseq \${tries} ${RETRIES} && goto failed ||`,
    `echo retrying (\${tries}/${RETRIES}): ${cmd.split(' ')[0]}`,
    `sleep \${tries}`,
    `goto ${label}`,
    `:${label}_ok`,
  );
}

function localBoot(lines: string[], reason: string): string[] {
  lines.push(comment(`local boot: ${reason}`), 'echo swarmboot: booting from the local disk', 'exit 1');
  return lines;
}

function winpe(lines: string[], ctx: ScriptContext, dir: string, wimboot: string): void {
  const f = (p: string) => bootFileUrl(ctx.baseUrl, `${dir.replace(/\/+$/, '')}/${p}`);
  const perMachine = `${ctx.baseUrl}/boot/${ctx.mac.replace(/:/g, '-')}`;
  retried(lines, 'wimboot', `kernel ${bootFileUrl(ctx.baseUrl, wimboot)} gui`);
  // bootmgr is needed by BIOS only; UEFI takes bootmgfw.efi from boot.wim.
  lines.push('iseq ${platform} efi && goto winpe_efi ||');
  retried(lines, 'bootmgr', `initrd -n bootmgr ${f('bootmgr')}`);
  lines.push(':winpe_efi');
  retried(lines, 'bcd', `initrd -n BCD ${f('Boot/BCD')}`);
  retried(lines, 'sdi', `initrd -n boot.sdi ${f('Boot/boot.sdi')}`);
  retried(lines, 'wim', `initrd -n boot.wim ${f('sources/boot.wim')}`);
  // wimboot places these in X:\Windows\System32: WinPE runs winpeshl.ini's apps instead of startnet.cmd.
  retried(lines, 'winpeshl', `initrd -n winpeshl.ini ${perMachine}/winpeshl.ini`);
  retried(lines, 'hook', `initrd -n swarmboot.cmd ${perMachine}/swarmboot.cmd`);
}

/** The iPXE script for a machine, from its plan. */
export function renderIpxeScript(cfg: LoadedConfig, plan: BootPlan, ctx: ScriptContext): string {
  const lines = ['#!ipxe', comment(`swarmboot: ${ctx.mac}`)];
  if (plan.kind === 'ignore' || plan.kind === 'local') return `${localBoot(lines, plan.reason).join('\n')}\n`;
  if (plan.kind === 'menu') return `${renderMenu(cfg, ctx, lines).join('\n')}\n`;

  const seq = cfg.sequences[plan.sequence];
  const profileName = seq?.profile;
  const profile = profileName ? cfg.profiles[profileName] : undefined;
  lines.push(comment(`deploy ${plan.sequence} (${plan.reason})`));
  if (!profile) return `${localBoot(lines, `sequence ${plan.sequence} names no boot profile`).join('\n')}\n`;
  lines.push(`echo swarmboot: ${ctx.mac} deploys ${plan.sequence} with ${profileName}`);
  bootProfile(lines, ctx, profile);
  return `${lines.join('\n')}\n`;
}

function bootProfile(lines: string[], ctx: ScriptContext, profile: LoadedConfig['profiles'][string]): void {
  switch (profile.type) {
    case 'winpe':
      winpe(lines, ctx, profile.dir, profile.wimboot ?? 'wimboot');
      lines.push('boot || goto failed');
      break;
    case 'linux': {
      const initrds = (profile.initrds ?? []).map((p, i) => ({ name: `initrd${i}`, url: fileOrUrl(ctx, renderTemplate(p, ctx.vars)) }));
      // UEFI kernels find their initrds by name on the command line (initrd=NAME); BIOS ignores it.
      const cmdline = [...initrds.map((i) => `initrd=${i.name}`), renderTemplate(profile.cmdline ?? '', ctx.vars)].filter(Boolean).join(' ');
      retried(lines, 'kernel', `kernel ${fileOrUrl(ctx, renderTemplate(profile.kernel, ctx.vars))} ${cmdline}`.trimEnd());
      initrds.forEach((i, n) => retried(lines, `initrd${n}`, `initrd -n ${i.name} ${i.url}`));
      lines.push('boot || goto failed');
      break;
    }
    case 'ipxe':
      lines.push(...renderTemplate(profile.script, ctx.vars).replace(/^#!ipxe\s*\n/, '').split('\n'));
      lines.push('goto end');
      break;
  }
  lines.push(':failed', 'echo swarmboot: boot failed; retrying from the start in 10 s', 'sleep 10', `chain --replace ${ctx.baseUrl}/boot/${ctx.mac.replace(/:/g, '-')}.ipxe || exit 1`, ':end');
}

function fileOrUrl(ctx: ScriptContext, p: string): string {
  return /^[a-z]+:\/\//i.test(p) ? p : bootFileUrl(ctx.baseUrl, p);
}

function renderMenu(cfg: LoadedConfig, ctx: ScriptContext, lines: string[]): string[] {
  const menu = cfg.menu;
  if (!menu) return localBoot(lines, 'menu requested but boot.menu is not configured');
  lines.push(`menu ${menu.title}`);
  menu.entries.forEach((e, i) => lines.push(`item e${i} ${e.label}`));
  const timeout = menu.timeoutSeconds * 1000;
  lines.push(`choose ${timeout > 0 ? `--timeout ${timeout} ` : ''}--default e0 selected || goto e0`, 'goto ${selected}');
  menu.entries.forEach((e, i) => {
    lines.push(`:e${i}`);
    if (e.profile === 'local') {
      lines.push('echo swarmboot: booting from the local disk', 'exit 1');
      return;
    }
    const profile = cfg.profiles[e.profile]!;
    const sub: string[] = [];
    bootProfile(sub, ctx, profile);
    // Each entry gets its own labels so retries and failure paths do not collide.
    lines.push(...sub.map((l) => l.replace(/(goto |^:)(\w+)/g, (_m, a: string, b: string) => `${a}e${i}_${b}`)));
  });
  return lines;
}

/** winpeshl.ini injected into WinPE: initialise the network, then run swarmboot's hook. */
export function renderWinpeshl(): string {
  return ['[LaunchApps]', '%SYSTEMROOT%\\System32\\wpeinit.exe', '%SYSTEMROOT%\\System32\\cmd.exe, /c %SYSTEMROOT%\\System32\\swarmboot.cmd', ''].join('\r\n');
}

/**
 * swarmboot.cmd, the per-machine hook in WinPE: says where the task sequence is, then starts the
 * agent (swarmboot-agent.cmd, swarmboot-agent.exe or swarmboot-agent.ps1 in the image) or, when the
 * image has none, opens a prompt with the URLs ready.
 */
export function renderWinpeHook(ctx: ScriptContext): string {
  const seqUrl = `${ctx.baseUrl}/api/v1/machines/${ctx.mac}/sequence`;
  return [
    '@echo off',
    'rem swarmboot: generated for this machine; do not edit',
    `set SWARMBOOT_URL=${ctx.baseUrl}`,
    `set SWARMBOOT_MAC=${ctx.mac}`,
    `set SWARMBOOT_SEQUENCE_URL=${seqUrl}`,
    `set SWARMBOOT_EVENTS_URL=${ctx.baseUrl}/api/v1/machines/${ctx.mac}/events`,
    'echo swarmboot: task sequence at %SWARMBOOT_SEQUENCE_URL%',
    'if exist %SYSTEMROOT%\\System32\\swarmboot-agent.exe (%SYSTEMROOT%\\System32\\swarmboot-agent.exe & goto :eof)',
    'if exist %SYSTEMROOT%\\System32\\swarmboot-agent.cmd (call %SYSTEMROOT%\\System32\\swarmboot-agent.cmd & goto :eof)',
    'if exist %SYSTEMROOT%\\System32\\WindowsPowerShell\\v1.0\\powershell.exe if exist %SYSTEMROOT%\\System32\\swarmboot-agent.ps1 (powershell -NoProfile -ExecutionPolicy Bypass -File %SYSTEMROOT%\\System32\\swarmboot-agent.ps1 & goto :eof)',
    'echo swarmboot: no agent in this WinPE image; see docs/WINPE.md in swarmboot, section A.6',
    'cmd /k',
    '',
  ].join('\r\n');
}
