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

/**
 * Boot the local disk, chosen at run time by iPXE's own `${platform}` (the HTTP request does not say
 * which firmware runs the script). BIOS: `sanboot` the disk (boot.localBoot.bios), falling back to
 * `exit`. UEFI: `exit 1`; the non-zero status matters, because a boot option that returns
 * EFI_SUCCESS sends EDK2-based firmware to its boot manager menu instead of the next boot option.
 * `exit` also ends any script that chained this one, so nothing after it runs.
 */
function localBootLines(cfg: LoadedConfig, reason: string): string[] {
  const lb = cfg.localBoot;
  const drive = `0x${lb.biosDrive.toString(16)}`;
  return [
    comment(`local boot: ${reason}`),
    'iseq ${platform} efi && goto local_efi ||',
    ...(lb.bios === 'sanboot'
      ? [
          `echo swarmboot: booting from the local disk (BIOS drive ${drive})`,
          `sanboot --no-describe --drive ${drive} ||`,
          `echo swarmboot: sanboot of drive ${drive} failed; returning to the BIOS for its next boot device`,
        ]
      : ['echo swarmboot: returning to the BIOS for its next boot device (local disk)']),
    'exit 1',
    ':local_efi',
    'echo swarmboot: returning to the firmware for its next boot option (local disk)',
    'exit 1',
  ];
}

function localBoot(cfg: LoadedConfig, lines: string[], reason: string): string[] {
  lines.push(...localBootLines(cfg, reason));
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
  if (plan.kind === 'ignore' || plan.kind === 'local') return `${localBoot(cfg, lines, plan.reason).join('\n')}\n`;
  if (plan.kind === 'menu') return `${renderMenu(cfg, ctx, lines).join('\n')}\n`;

  const seq = cfg.sequences[plan.sequence];
  const profileName = seq?.profile;
  const profile = profileName ? cfg.profiles[profileName] : undefined;
  lines.push(comment(`deploy ${plan.sequence} (${plan.reason})`));
  if (!profile) return `${localBoot(cfg, lines, `sequence ${plan.sequence} names no boot profile`).join('\n')}\n`;
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

/** The label the menu starts at; entries that return come back to it. */
const MENU_LABEL = 'swarmboot_menu';

function renderMenu(cfg: LoadedConfig, ctx: ScriptContext, lines: string[]): string[] {
  const menu = cfg.menu;
  if (!menu) return localBoot(cfg, lines, 'menu requested but boot.menu is not configured');
  lines.push(`:${MENU_LABEL}`, `menu ${menu.title}`);
  menu.entries.forEach((e, i) => lines.push(`item e${i} ${e.label}`));
  const timeout = menu.timeoutSeconds * 1000;
  lines.push(`choose ${timeout > 0 ? `--timeout ${timeout} ` : ''}--default e0 selected || goto e0`, 'goto ${selected}');
  menu.entries.forEach((e, i) => {
    lines.push(`:e${i}`);
    let sub: string[];
    if (e.profile === 'local') {
      sub = localBootLines(cfg, `menu entry "${e.label}"`);
    } else {
      sub = [];
      bootProfile(sub, ctx, cfg.profiles[e.profile]!);
    }
    // Each entry gets its own labels so retries and failure paths do not collide.
    lines.push(...sub.map((l) => l.replace(/(goto |^:)(\w+)/g, (_m, a: string, b: string) => `${a}e${i}_${b}`)));
    // An entry whose script returns (a raw script that ends, a failure path that gives up) goes
    // back to the menu: it must never fall through into the next entry's label.
    lines.push(`echo swarmboot: menu entry e${i} returned; back to the menu`, 'imgfree', `goto ${MENU_LABEL}`);
  });
  return lines;
}

/** winpeshl.ini injected into WinPE: initialise the network, then run swarmboot's hook. */
export function renderWinpeshl(): string {
  return ['[LaunchApps]', '%SYSTEMROOT%\\System32\\wpeinit.exe', '%SYSTEMROOT%\\System32\\cmd.exe, /c %SYSTEMROOT%\\System32\\swarmboot.cmd', ''].join('\r\n');
}

/** PowerShell (5.1, WinPE-PowerShell) for the sequence fetch: writes the body and the HTTP status like the curl line. */
const PS_FETCH = [
  "$s='000'; $b=$null",
  // try and catch must not be split by a `;`.
  'try { $r=Invoke-WebRequest -UseBasicParsing -TimeoutSec 30 -Uri $env:SWARMBOOT_SEQUENCE_URL; $s=[string][int]$r.StatusCode; $b=$r.Content } ' +
    'catch { $x=$_.Exception.Response; if ($x) { $s=[string][int]$x.StatusCode; $b=(New-Object IO.StreamReader($x.GetResponseStream())).ReadToEnd() } }',
  'if ($b -is [byte[]]) { $b=[Text.Encoding]::UTF8.GetString($b) }',
  'if ($b -ne $null) { [IO.File]::WriteAllText($env:SWARMBOOT_SEQUENCE_FILE, $b) }',
  '[IO.File]::WriteAllText($env:SWARMBOOT_STATUS_FILE, $s)',
].join('; ');

/**
 * swarmboot.cmd, the per-machine hook in WinPE (docs/WINPE.md, section A.6). It fetches this
 * machine's task sequence with curl.exe (in System32 since Windows 10 1803) or, failing that,
 * PowerShell; prints it; reports `started`; then starts the agent in the image
 * (swarmboot-agent.exe, .cmd or .ps1 in System32) or, without one, opens a prompt with the
 * `SWARMBOOT_*` variables set. Unreachable server or 5xx (content still being hashed): retried;
 * 4xx (deployment done, no assignment): the refusal is printed and nothing is reported.
 */
export function renderWinpeHook(ctx: ScriptContext): string {
  const seqUrl = `${ctx.baseUrl}/api/v1/machines/${ctx.mac}/sequence`;
  const sys = '%SYSTEMROOT%\\System32';
  const tries = 10;
  return [
    '@echo off',
    'rem swarmboot: generated for this machine; do not edit. What it does: docs/WINPE.md, section A.6',
    `set SWARMBOOT_URL=${ctx.baseUrl}`,
    `set SWARMBOOT_MAC=${ctx.mac}`,
    `set SWARMBOOT_SEQUENCE_URL=${seqUrl}`,
    `set SWARMBOOT_EVENTS_URL=${ctx.baseUrl}/api/v1/machines/${ctx.mac}/events`,
    'set SWARMBOOT_SEQUENCE_FILE=%SYSTEMDRIVE%\\swarmboot-sequence.json',
    'set SWARMBOOT_STATUS_FILE=%SYSTEMDRIVE%\\swarmboot-status.txt',
    'echo swarmboot: task sequence at %SWARMBOOT_SEQUENCE_URL%',
    'set SWARMBOOT_FETCH=',
    `if exist ${sys}\\curl.exe set SWARMBOOT_FETCH=curl`,
    `if not defined SWARMBOOT_FETCH if exist ${sys}\\WindowsPowerShell\\v1.0\\powershell.exe set SWARMBOOT_FETCH=powershell`,
    'if not defined SWARMBOOT_FETCH goto swarmboot_nofetch',
    'set SWARMBOOT_TRY=0',
    ':swarmboot_fetch',
    'set /a SWARMBOOT_TRY+=1',
    'set SWARMBOOT_STATUS=000',
    'if exist "%SWARMBOOT_STATUS_FILE%" del /q "%SWARMBOOT_STATUS_FILE%"',
    // %% is one % in a batch file: curl sees -w "%{http_code}".
    'if %SWARMBOOT_FETCH%==curl curl.exe -sS --connect-timeout 10 -o "%SWARMBOOT_SEQUENCE_FILE%" -w "%%{http_code}" "%SWARMBOOT_SEQUENCE_URL%" >"%SWARMBOOT_STATUS_FILE%"',
    `if %SWARMBOOT_FETCH%==powershell powershell -NoProfile -ExecutionPolicy Bypass -Command "${PS_FETCH}"`,
    'if exist "%SWARMBOOT_STATUS_FILE%" set /p SWARMBOOT_STATUS=<"%SWARMBOOT_STATUS_FILE%"',
    'if "%SWARMBOOT_STATUS%"=="200" goto swarmboot_fetched',
    'if "%SWARMBOOT_STATUS:~0,1%"=="4" goto swarmboot_refused',
    `if %SWARMBOOT_TRY% GEQ ${tries} goto swarmboot_unreachable`,
    `echo swarmboot: no task sequence yet (HTTP %SWARMBOOT_STATUS%, try %SWARMBOOT_TRY% of ${tries}); retrying in 5 s`,
    'ping -n 6 127.0.0.1 >nul',
    'goto swarmboot_fetch',
    ':swarmboot_fetched',
    'echo swarmboot: task sequence for %SWARMBOOT_MAC% (also in %SWARMBOOT_SEQUENCE_FILE%):',
    'type "%SWARMBOOT_SEQUENCE_FILE%"',
    'echo.',
    '>"%SYSTEMDRIVE%\\swarmboot-started.json" echo {"type":"started","message":"WinPE: swarmboot.cmd fetched the task sequence"}',
    'if %SWARMBOOT_FETCH%==curl curl.exe -sS -o nul -X POST -H "content-type: application/json" --data-binary "@%SYSTEMDRIVE%\\swarmboot-started.json" "%SWARMBOOT_EVENTS_URL%"',
    "if %SWARMBOOT_FETCH%==powershell powershell -NoProfile -ExecutionPolicy Bypass -Command \"Invoke-RestMethod -Method Post -ContentType 'application/json' -InFile ($env:SYSTEMDRIVE + '\\swarmboot-started.json') -Uri $env:SWARMBOOT_EVENTS_URL | Out-Null\"",
    'goto swarmboot_agent',
    ':swarmboot_refused',
    'echo swarmboot: the server refused the task sequence (HTTP %SWARMBOOT_STATUS%):',
    'if exist "%SWARMBOOT_SEQUENCE_FILE%" type "%SWARMBOOT_SEQUENCE_FILE%"',
    'echo.',
    'goto swarmboot_prompt',
    ':swarmboot_unreachable',
    `echo swarmboot: no task sequence after ${tries} tries (HTTP %SWARMBOOT_STATUS%); is %SWARMBOOT_URL% reachable from here?`,
    'goto swarmboot_prompt',
    ':swarmboot_nofetch',
    'echo swarmboot: neither curl.exe nor PowerShell in this WinPE image; fetch %SWARMBOOT_SEQUENCE_URL% yourself',
    ':swarmboot_agent',
    `if exist ${sys}\\swarmboot-agent.exe (${sys}\\swarmboot-agent.exe & goto :eof)`,
    `if exist ${sys}\\swarmboot-agent.cmd (call ${sys}\\swarmboot-agent.cmd & goto :eof)`,
    `if exist ${sys}\\WindowsPowerShell\\v1.0\\powershell.exe if exist ${sys}\\swarmboot-agent.ps1 (powershell -NoProfile -ExecutionPolicy Bypass -File ${sys}\\swarmboot-agent.ps1 & goto :eof)`,
    'echo swarmboot: no agent in this WinPE image (docs/WINPE.md in swarmboot, section A.6)',
    ':swarmboot_prompt',
    // The last program of winpeshl.ini ending restarts WinPE: keep a prompt open instead.
    'cmd /k',
    '',
  ].join('\r\n');
}
