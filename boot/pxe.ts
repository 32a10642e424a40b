/**
 * What a PXE client is told by DHCP: pure function of its facts, the config and its boot plan.
 *
 * - iPXE (already running) always gets the URL of its per-machine script, which carries the plan
 *   (deploy, local, menu): iPXE is never handed iPXE again.
 * - Firmware gets the boot program for its architecture from `boot.loaders` (normally iPXE), or,
 *   for a deployment whose profile boots WinPE through Windows Boot Manager, bootmgr itself.
 * - A machine whose plan is `ignore` gets no answer, so its firmware moves on to the next device.
 * - Firmware whose plan is `local` gets iPXE (its script boots the disk) or, per
 *   `boot.localBoot.pxe`, no answer; never iPXE when its profile boots Windows Boot Manager.
 * - UEFI HTTP boot clients get a full http:// URL of the loader.
 */
import type { LoadedConfig } from '../config/load.ts';
import type { RawProfile } from '../config/schema.ts';
import { resolveAssignment } from './assign.ts';
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

/**
 * The address a machine is told to use for this server: `server.address` when the admin set it,
 * else the local address the machine's request arrived on (`via`: what DHCP gave it, so it is
 * reachable from that machine even on a multi-homed server), else the detected fallback.
 */
export function advertisedAddress(cfg: LoadedConfig, via: string | undefined, fallback: string): string {
  // The address a request arrived on is one this machine can reach; server.address may not be
  // (a multi-homed server, where it names one network). Behind NAT or a proxy: server.http.publicUrl.
  return via ?? cfg.server.address ?? fallback;
}

/**
 * A socket's local address as a URL host: IPv4-mapped IPv6 unwrapped, IPv6 bracketed, anything
 * that is not an IP address (or a wildcard) refused, so it can never smuggle text into a URL.
 */
export function viaFromLocalAddress(local: string | undefined): string | undefined {
  if (!local) return undefined;
  const v4 = /^(?:::ffff:)?(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(local)?.[1];
  if (v4) return v4.split('.').every((o) => Number(o) <= 255) && v4 !== '0.0.0.0' ? v4 : undefined;
  if (/^[0-9a-f:]+$/i.test(local) && local.includes(':') && local !== '::') return `[${local}]`;
  return undefined;
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

/** The boot profile a machine's assignment runs its sequence in, if any. */
function assignedProfile(f: PxeFacts, cfg: LoadedConfig): { name: string; profile: RawProfile } | undefined {
  const a = resolveAssignment(cfg, { mac: f.mac, ...(f.uuid ? { uuid: f.uuid } : {}) });
  const name = a.sequence ? cfg.sequences[a.sequence]?.profile : undefined;
  const profile = name ? cfg.profiles[name] : undefined;
  return name && profile ? { name, profile } : undefined;
}

/**
 * Whether PXE firmware whose plan is `local` is left unanswered (so it moves on to its next boot
 * option) rather than handed iPXE, whose script then boots the disk. Returns the reason when silent.
 * A machine assigned a `via: bootmgr` profile keeps Secure Boot on: it would refuse unsigned iPXE
 * (an error screen, then the next boot option at best), so `auto` does not offer it.
 */
function silentLocal(f: PxeFacts, cfg: LoadedConfig): string | undefined {
  const policy = cfg.localBoot.pxe;
  if (policy === 'silent') return 'boot.localBoot.pxe is silent: no PXE answer, the firmware moves on to its next boot option';
  if (policy === 'ipxe') return undefined;
  const p = assignedProfile(f, cfg);
  if (p?.profile.type === 'winpe' && p.profile.via === 'bootmgr') {
    return `profile ${p.name} boots Windows Boot Manager (Secure Boot): no iPXE for it, no PXE answer, the firmware moves on to its next boot option`;
  }
  return undefined;
}

export function decidePxe(f: PxeFacts, cfg: LoadedConfig, plan: BootPlan, ctx: PxeContext): PxeDecision {
  if (plan.kind === 'ignore') return { action: 'ignore', reason: plan.reason };
  if (f.ipxe) return { action: 'boot', bootFile: scriptUrl(ctx.baseUrl, f.mac), reason: `iPXE: per-machine script (${plan.reason})` };

  const fw = effectiveFirmware(f, cfg);
  if (!fw) return { action: 'ignore', reason: `unknown client architecture ${f.archCode ?? '(none)'}; dhcp.unknownArch is ignore` };

  if (plan.kind === 'local') {
    const silent = silentLocal(f, cfg);
    if (silent) return { action: 'ignore', reason: `${plan.reason}; ${silent}` };
  }

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
