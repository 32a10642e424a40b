import type { Firmware } from './types.ts';

/** DHCP option 93 client system architecture → firmware family; unknown codes map to 'unknown'. */
export function firmwareFromArch(code: number | undefined): Firmware {
  switch (code) {
    case 0: return 'bios';
    case 6: return 'uefi-ia32';
    case 7:
    case 9: return 'uefi-x64';
    case 10: return 'uefi-arm32';
    case 11: return 'uefi-arm64';
    case 15: return 'uefi-http-ia32';
    case 16: return 'uefi-http-x64';
    case 19: return 'uefi-http-arm64';
    default: return 'unknown';
  }
}

/** Option 60 `PXEClient:Arch:00007:UNDI:003016` carries the arch too: the fallback when option 93 is absent. */
export function archFromVendorClass(vendorClass: string | undefined): number | undefined {
  if (!vendorClass) return undefined;
  const m = /^(?:PXEClient|HTTPClient):Arch:(\d{5})/.exec(vendorClass);
  return m ? Number(m[1]) : undefined;
}

export function isHttpFirmware(fw: Firmware): boolean {
  return fw.startsWith('uefi-http');
}
