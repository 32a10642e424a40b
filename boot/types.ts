/**
 * The seam between protocol front ends and boot policy (pixiecore's `Booter`, matchbox's groups →
 * profiles). Front ends decode packets into facts, ask boot/ for a decision, and encode the answer.
 */

/** Firmware families a PXE client can be, from DHCP option 93 (RFC 4578 and the IANA registry). */
export type Firmware =
  | 'bios'
  | 'uefi-ia32'
  | 'uefi-x64'
  | 'uefi-arm32'
  | 'uefi-arm64'
  | 'uefi-http-ia32'
  | 'uefi-http-x64'
  | 'uefi-http-arm64'
  | 'unknown';

/** What a DHCP front end knows about a booting client. */
export interface PxeFacts {
  /** Normalised lowercase `aa:bb:cc:dd:ee:ff`. */
  mac: string;
  /** SMBIOS UUID from option 97, lowercase 8-4-4-4-12, when the client sent one. */
  uuid?: string;
  /** Raw option 93 code, when sent. */
  archCode?: number;
  firmware: Firmware;
  /** iPXE is already running (option 175 present or user-class `iPXE`): never hand it iPXE again. */
  ipxe: boolean;
  /** Option 60 starts with `HTTPClient` (UEFI HTTP boot): the boot file must be a full URL. */
  httpClient: boolean;
  vendorClass?: string;
  userClass?: string[];
  /** giaddr when the request came through a relay. */
  relay?: string;
  clientIp?: string;
  /** The address this server advertises to the client (siaddr, URLs). */
  serverAddress: string;
}

export type PxeDecision =
  | { action: 'ignore'; reason: string }
  | {
      action: 'boot';
      /** A TFTP path (`undionly.kpxe`, `boot/x64/bootmgfw.efi`) or, for iPXE and HTTP clients, a full URL. */
      bootFile: string;
      /** TFTP server to name in siaddr/option 66 when it is not this server. */
      nextServer?: string;
      /** The boot file is the deployment's environment itself (WinPE via bootmgr): the machine is now booting. */
      handsOutDeployment?: boolean;
      /** DHCP option 252: where Windows Boot Manager finds its BCD (default `\Boot\BCD`). */
      bcdPath?: string;
      reason: string;
    };

/** Answers "this machine is asking: what does it get?" as a pure function of facts, config and state. */
export type PxeDecider = (facts: PxeFacts) => PxeDecision;
