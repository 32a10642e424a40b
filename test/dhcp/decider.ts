/** A test boot policy: the shape of the real one in boot/, small enough to read in a test. */
import type { PxeDecider } from '../../boot/types.ts';

export const testDecider: PxeDecider = (f) => {
  if (f.mac === '02:00:00:00:00:ee') return { action: 'ignore', reason: 'machine is not assigned' };
  if (f.ipxe) return { action: 'boot', bootFile: `http://${f.serverAddress}:8080/boot/${f.mac}.ipxe`, reason: 'iPXE: per-machine script' };
  if (f.httpClient) return { action: 'boot', bootFile: `http://${f.serverAddress}:8080/boot/ipxe-${f.firmware}.efi`, reason: 'UEFI HTTP boot' };
  switch (f.firmware) {
    case 'bios': return { action: 'boot', bootFile: 'undionly.kpxe', reason: 'BIOS: chainload iPXE' };
    case 'uefi-x64': return { action: 'boot', bootFile: 'ipxe.efi', reason: 'UEFI x64: chainload iPXE' };
    case 'uefi-arm64': return { action: 'boot', bootFile: 'arm64/ipxe.efi', reason: 'UEFI arm64: chainload iPXE' };
    default: return { action: 'ignore', reason: `no boot file for ${f.firmware} (arch ${f.archCode ?? 'none'})` };
  }
};
