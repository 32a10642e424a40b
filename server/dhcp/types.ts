import type { DatabaseSync } from 'node:sqlite';
import type { PxeDecider } from '../../boot/types.ts';
import type { Logger } from '../log.ts';
import type { Registry } from '../metrics.ts';

/** One subnet served in full mode: addresses from `rangeStart`..`rangeEnd`, options for the clients on it. */
export interface DhcpPool {
  /** `10.66.0.0/24`. A pool on a directly attached network is served by broadcast; any other is reachable only through a relay (giaddr). */
  subnet: string;
  rangeStart: string;
  rangeEnd: string;
  router?: string;
  dns?: string[];
  domain?: string;
  /** Lease time in seconds; default 3600. */
  leaseSeconds?: number;
}

/** A fixed address for one machine (full mode). The address must lie in a pool's subnet; it is never handed to anyone else. */
export interface DhcpReservation {
  mac: string;
  ip: string;
  hostname?: string;
}

/** Firmware a PXE menu item may name its own boot program for (UEFI HTTP boot and iPXE never see the menu). */
export type PxeMenuFirmware = 'bios' | 'uefi-x64' | 'uefi-ia32' | 'uefi-arm64';

/** One line of the PXE boot menu: exactly one of `boot` and `bootfile`. See pxe-menu.ts. */
export interface PxeMenuItem {
  /** What the technician reads; printable ASCII. */
  label: string;
  /**
   * 'local': the firmware leaves network boot and boots its disk (PXE boot server type 0, no server
   * asked). 'swarmboot': whatever swarmboot assigns this machine, as without a menu.
   */
  boot?: 'local' | 'swarmboot';
  /** A fixed boot program from the TFTP root, for every firmware or per firmware (shown only to the firmware it names). */
  bootfile?: string | Partial<Record<PxeMenuFirmware, string>>;
}

/** A PXE boot menu (option 43 sub-options 6/8/9/10/71), shown by PXE ROMs before they boot. */
export interface PxeMenu {
  /** Shown while the ROM waits for F8, e.g. "Press F8 for the boot menu". */
  prompt: string;
  /** Seconds the prompt waits before taking the first item; 0 takes it at once, 255 waits forever. */
  timeoutSeconds: number;
  items: PxeMenuItem[];
}

export interface DhcpPorts {
  /** DHCP server port: 67 in production, 0 = ephemeral (tests). */
  server?: number;
  /** PXE boot server discovery port: 4011, 0 = ephemeral, false = not served. */
  pxe?: number | false;
  /** Where broadcast and ciaddr replies go: 68 in production. */
  client?: number;
  /** Port of relay agents (replies to giaddr): the server port in production. */
  relay?: number;
}

export interface DhcpRateLimit {
  /** Packets a MAC may send in a burst. Default 20. */
  burst: number;
  /** Sustained packets per second per MAC once the burst is spent. Default 2. */
  perSecond: number;
}

export interface DhcpOptions {
  /** 'proxy': ProxyDHCP beside the site's DHCP server (boot info only). 'full': addresses and boot info. */
  mode: 'proxy' | 'full';
  /**
   * Interface names to serve (as in `ip link`). Default: every non-loopback interface with an IPv4
   * address. See the comment at the top of server.ts for how a multi-homed server answers.
   */
  interfaces?: string[];
  /** Address to listen on: default 0.0.0.0, which is required to receive broadcasts. */
  listenAddress?: string;
  ports?: DhcpPorts;
  /**
   * Address to advertise (siaddr, option 54, URLs) instead of the answering interface's own: on the
   * interface whose subnet holds it, and to relayed clients. Clients on other interfaces' segments
   * are told that interface's address (networks.ts `advertisedAddress`); startDhcp warns about them.
   */
  serverAddress?: string;
  /** Full mode only. */
  pools?: DhcpPool[];
  /** Full mode only. */
  reservations?: DhcpReservation[];
  /**
   * Full mode: answer a client we have no record of that asks for an address (INIT-REBOOT, renewing)
   * with ACK if it is free and valid, NAK otherwise. Non-authoritative servers stay silent. Default true.
   */
  authoritative?: boolean;
  /** How long an offered address is held for the client that was offered it. Default 60 s. */
  offerHoldSeconds?: number;
  /** How long a declined (in use by someone unknown) address is kept out of the pool. Default 600 s. */
  declineHoldSeconds?: number;
  pxeMenu?: PxeMenu;
  decide: PxeDecider;
  /** Required in full mode: the daemon's state database (WAL). Leases live in `dhcp_leases`. */
  db?: DatabaseSync;
  logger: Logger;
  metrics: Registry;
  rateLimit?: DhcpRateLimit;
  /**
   * SO_RCVBUF asked for on the DHCP sockets, so a boot storm or a pause (GC, a busy CPU) queues
   * instead of dropping. Default 4 MiB; the kernel caps it at net.core.rmem_max. 0 keeps the
   * kernel default (about 200 KiB).
   */
  socketBufferBytes?: number;
  /**
   * Receive and send through the native addon (native/udp_batch.c: recvmmsg batches, no Buffer or address object
   * per packet) when it loads; default true. False, or no addon: Node's dgram, one callback per packet.
   */
  nativeUdp?: boolean;
}

