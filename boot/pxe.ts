/**
 * What a PXE client is told by DHCP: pure function of its facts, the config and its boot plan.
 *
 * - iPXE (already running) always gets the URL of its per-machine script, which carries the plan
 *   (deploy, local, menu): iPXE is never handed iPXE again.
 * - Firmware gets the boot program for its architecture from `boot.loaders` (normally iPXE), or,
 *   for a deployment whose profile boots WinPE through Windows Boot Manager, bootmgr itself.
 * - A machine whose plan is `ignore` gets no answer, so its firmware moves on to the next device.
 * - UEFI HTTP boot clients get a full http:// URL of the loader.
 */
import type { LoadedConfig } from '../config/load.ts';
import type { BootPlan } from './deployment.ts';
import type { Firmware, PxeDecision, PxeFacts } from './types.ts';
import { isHttpFirmware } from './firmware.ts';

export interface PxeContext {
  baseUrl: string;
}

/** Where the per-machine iPXE script lives. */
export function scriptUrl(baseUrl: string, mac: string): string {
  return `${baseUrl}/boot/${mac.replace(/:/g, '-')}.ipxe`;
}

/** URL under which the TFTP root is also served over HTTP (read-only). */
export function bootFileUrl(baseUrl: string, path: string): string {
  return `${baseUrl}/tftp/${path.split('/').map(encodeURIComponent).join('/')}`;
}

/** Firmware an unknown option 93 code is treated as, per `dhcp.unknownArch`. */
export function effectiveFirmware(f: PxeFacts, cfg: LoadedConfig): Firmware | null {
  if (f.firmware !== 'unknown') return f.firmware;
  const policy = cfg.server.dhcp.unknownArch;
  return policy === 'ignore' ? null : policy;
}

/** Windows Boot Manager's network boot program per firmware, relative to the WinPE folder. */
export function bootmgrProgram(fw: Firmware): string | undefined {
  switch (fw) {
    case 'bios':
      return 'boot/pxeboot.n12';
    case 'uefi-x64':
      return 'boot/x64/bootmgfw.efi';
    case 'uefi-arm64':
      return 'boot/arm64/bootmgfw.efi';
    case 'uefi-ia32':
      return 'boot/x86/bootmgfw.efi';
    default:
      return undefined;
  }
}

export function decidePxe(f: PxeFacts, cfg: LoadedConfig, plan: BootPlan, ctx: PxeContext): PxeDecision {
  if (plan.kind === 'ignore') return { action: 'ignore', reason: plan.reason };
  if (f.ipxe) return { action: 'boot', bootFile: scriptUrl(ctx.baseUrl, f.mac), reason: `iPXE: per-machine script (${plan.reason})` };

  const fw = effectiveFirmware(f, cfg);
  if (!fw) return { action: 'ignore', reason: `unknown client architecture ${f.archCode ?? '(none)'}; dhcp.unknownArch is ignore` };

  if (plan.kind === 'deploy') {
    const seq = cfg.sequences[plan.sequence];
    const profile = seq?.profile ? cfg.profiles[seq.profile] : undefined;
    if (profile?.type === 'winpe' && profile.via === 'bootmgr') {
      const prog = bootmgrProgram(fw);
      if (!prog) return { action: 'ignore', reason: `Windows Boot Manager has no network boot program for ${fw}` };
      const dir = profile.dir.replace(/^\/+|\/+$/g, '');
      const file = `${dir}/${prog}`;
      // Windows Boot Manager reads option 252 for its BCD; without it, it asks for \Boot\BCD.
      const bcdPath = `\\${dir.replace(/\//g, '\\')}\\Boot\\BCD`;
      return { action: 'boot', bootFile: isHttpFirmware(fw) ? bootFileUrl(ctx.baseUrl, file) : file, handsOutDeployment: true, bcdPath, reason: `${plan.reason}: WinPE via Windows Boot Manager` };
    }
  }

  const loader = cfg.loaders[fw as keyof LoadedConfig['loaders']];
  if (!loader) return { action: 'ignore', reason: `no boot program for ${fw} in boot.loaders` };
  if (isHttpFirmware(fw) || f.httpClient) return { action: 'boot', bootFile: bootFileUrl(ctx.baseUrl, loader), reason: `${plan.kind}: ${plan.reason}; HTTP boot loader` };
  return { action: 'boot', bootFile: loader, reason: `${plan.kind}: ${plan.reason}; loader for ${fw}` };
}
