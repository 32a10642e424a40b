/**
 * The one schema of swarmboot's YAML configuration. Declared once here: ajv validates files against
 * it (config/validate.ts) and TypeScript infers the config types from it (`Config` below).
 * Every object is closed (`additionalProperties: false`) so a misspelt key is an error, never ignored.
 */
import { Type, type Static, type TSchema, type TProperties } from 'typebox';
import { RATE_PATTERN } from './rate.ts';

/** A closed object: unknown keys are errors. */
function Obj<P extends TProperties>(props: P, description?: string) {
  return Type.Object(props, { additionalProperties: false, ...(description ? { description } : {}) });
}

const Name = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$', maxLength: 64, description: 'a name: letters, digits, . _ -' });
const Port = Type.Integer({ minimum: 0, maximum: 65535 });
const IPv4 = Type.String({ format: 'ipv4' });
const Cidr = Type.String({ pattern: '^(\\d{1,3}\\.){3}\\d{1,3}/(\\d|[12]\\d|3[0-2])$', description: 'a subnet like 10.0.0.0/24' });
/** MAC in any common spelling; normalised when loaded. */
export const MacText = Type.String({
  pattern: '^(([0-9A-Fa-f]{2}[:-]?){5}[0-9A-Fa-f]{2}|([0-9A-Fa-f]{4}\\.){2}[0-9A-Fa-f]{4})$',
  description: 'a MAC address (aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff)',
});
const MacPrefix = Type.String({
  pattern: '^([0-9A-Fa-f]{2}[:-]?){0,5}[0-9A-Fa-f]{2}$',
  description: 'a MAC prefix such as 00:1a:2b (vendor OUI) or 00:1a:2b:3c',
});
const Uuid = Type.String({
  pattern: '^[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}$',
  description: 'an SMBIOS UUID (8-4-4-4-12 hex)',
});
const VarValue = Type.Union([Type.String(), Type.Number(), Type.Boolean()], { description: 'a string, number or boolean' });
const Variables = Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), VarValue, {
  description: 'variables: names are letters, digits and _',
});
const Labels = Type.Record(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._/-]*$' }), Type.String());

// ---------------------------------------------------------------------------------------------
// server

const Rate = Type.Union([Type.Number({ exclusiveMinimum: 0 }), Type.String({ pattern: RATE_PATTERN })], {
  description: 'a rate such as 50Mbit, 100 Mbit/s, 12.5MB/s, or bytes per second',
});

const HttpSection = Obj({
  host: Type.Optional(Type.String({ description: 'listen address (default 0.0.0.0)' })),
  port: Type.Optional(Port),
  /** Bandwidth caps for content downloads, for small branch links. */
  limits: Type.Optional(
    Obj({
      /** Each client address on its own. */
      perClient: Type.Optional(Rate),
      /** The most specific matching subnet applies, shared by all its clients. */
      subnets: Type.Optional(Type.Array(Obj({ cidr: Cidr, rate: Rate }))),
    }),
  ),
  /** Public base URL when behind a proxy; default http://<address>:<port>. */
  publicUrl: Type.Optional(Type.String({ pattern: '^https?://' })),
});

const TftpSection = Obj({
  enabled: Type.Optional(Type.Boolean()),
  host: Type.Optional(Type.String()),
  port: Type.Optional(Port),
  /** Folder served over TFTP (read-only). Relative paths are relative to the config file. */
  root: Type.Optional(Type.String({ minLength: 1 })),
  maxBlksize: Type.Optional(Type.Integer({ minimum: 512, maximum: 65464 })),
  /** RFC 7440 allows 65535, but a window must stay under half the 16-bit block space for ACKs to be unambiguous across rollover. */
  maxWindowsize: Type.Optional(Type.Integer({ minimum: 1, maximum: 32767 })),
  maxTransfers: Type.Optional(Type.Integer({ minimum: 1 })),
  /** Microseconds the event loop polls transfer sockets after their last ACK instead of sleeping; 0: never. */
  spinUs: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
});

const DhcpPool = Obj({
  subnet: Cidr,
  rangeStart: IPv4,
  rangeEnd: IPv4,
  router: Type.Optional(IPv4),
  dns: Type.Optional(Type.Array(IPv4)),
  domain: Type.Optional(Type.String()),
  leaseSeconds: Type.Optional(Type.Integer({ minimum: 60 })),
});

/** PXE ROMs show plain ASCII only. */
const PxeMenuText = Type.String({ minLength: 1, pattern: '^[ -~]+$', description: 'plain ASCII text (PXE ROMs show nothing else)' });

const PxeMenuItem = Obj({
  /** What the technician reads, e.g. "Deploy (swarmboot)" or "Boot from local disk". */
  label: PxeMenuText,
  /** local: the firmware boots its disk (PXE item type 0, no server asked); swarmboot: what swarmboot assigns this machine. */
  boot: Type.Optional(Type.Union([Type.Literal('local'), Type.Literal('swarmboot')])),
  /** Or a fixed boot program from the TFTP root (memtest, a vendor tool), for all firmware or one per firmware. */
  bootfile: Type.Optional(
    Type.Union(
      [
        Type.String({ minLength: 1 }),
        Obj({ bios: Type.Optional(Type.String({ minLength: 1 })), 'uefi-x64': Type.Optional(Type.String({ minLength: 1 })), 'uefi-ia32': Type.Optional(Type.String({ minLength: 1 })), 'uefi-arm64': Type.Optional(Type.String({ minLength: 1 })) }),
      ],
      { description: 'a TFTP path, or a mapping with one per firmware (bios, uefi-x64, uefi-ia32, uefi-arm64)' },
    ),
  ),
});

/** The PXE ROM boot menu (option 43): README "PXE on DHCP". */
const PxeMenuSection = Obj({
  /** Shown while the ROM waits for F8; default "Press F8 for the boot menu". */
  prompt: Type.Optional(PxeMenuText),
  /** Seconds before the first item is taken; 0 = at once, 255 = wait forever. Default 5. */
  timeoutSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 255 })),
  /** The first item is the default. */
  items: Type.Array(PxeMenuItem, { minItems: 1 }),
});

const DhcpSection = Obj({
  enabled: Type.Optional(Type.Boolean()),
  /** proxy: beside the site's DHCP server (never hands out addresses). full: an isolated lab's only DHCP server. */
  mode: Type.Optional(Type.Union([Type.Literal('proxy'), Type.Literal('full')])),
  /** Interfaces to answer on, by name (eth0) — see README "Interfaces". */
  interfaces: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
  port: Type.Optional(Port),
  proxyPort: Type.Optional(Port),
  pools: Type.Optional(Type.Array(DhcpPool)),
  /** What a client with an unknown option 93 code gets: ignore it, or treat it as BIOS / UEFI x64. */
  unknownArch: Type.Optional(Type.Union([Type.Literal('ignore'), Type.Literal('bios'), Type.Literal('uefi-x64')])),
  /** Answers per MAC per minute before a looping firmware is ignored for a while. */
  ratePerMacPerMinute: Type.Optional(Type.Integer({ minimum: 1 })),
  pxeMenu: Type.Optional(PxeMenuSection),
});

const ServerSection = Obj({
  /** The address machines use to reach this server (siaddr, URLs). Auto-detected when omitted. */
  address: Type.Optional(IPv4),
  /** Data directory for the state database and generated files. Relative to the config file. */
  dataDir: Type.Optional(Type.String({ minLength: 1 })),
  /** Root of content packages' relative paths. Relative to the config file. */
  contentDir: Type.Optional(Type.String({ minLength: 1 })),
  /** Admin bearer token. Prefer adminTokenFile or the SWARMBOOT_ADMIN_TOKEN environment variable. */
  adminToken: Type.Optional(Type.String({ minLength: 16, description: 'at least 16 characters' })),
  adminTokenFile: Type.Optional(Type.String({ minLength: 1 })),
  logLevel: Type.Optional(
    Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace'].map((l) => Type.Literal(l))),
  ),
  http: Type.Optional(HttpSection),
  tftp: Type.Optional(TftpSection),
  dhcp: Type.Optional(DhcpSection),
});

// ---------------------------------------------------------------------------------------------
// boot: first-stage programs per firmware, and profiles (what a deployment boots into)

const Bootloaders = Obj(
  {
    bios: Type.Optional(Type.String({ description: 'TFTP path of the BIOS boot program (undionly.kpxe)' })),
    'uefi-x64': Type.Optional(Type.String()),
    'uefi-ia32': Type.Optional(Type.String()),
    'uefi-arm64': Type.Optional(Type.String()),
    /** Path under the HTTP root handed to UEFI HTTP boot clients (x64). */
    'uefi-http-x64': Type.Optional(Type.String()),
    'uefi-http-arm64': Type.Optional(Type.String()),
  },
  'boot programs per firmware',
);

const WinPeProfile = Obj({
  type: Type.Literal('winpe'),
  description: Type.Optional(Type.String()),
  /** How WinPE is started: iPXE + wimboot over HTTP (fast), or Windows Boot Manager over TFTP (Secure Boot). */
  via: Type.Optional(Type.Union([Type.Literal('wimboot'), Type.Literal('bootmgr')])),
  /** Folder (under the TFTP root) holding bootmgr(.efi), Boot/BCD, Boot/boot.sdi and sources/boot.wim. */
  dir: Type.String({ minLength: 1 }),
  wimboot: Type.Optional(Type.String()),
});

const LinuxProfile = Obj({
  type: Type.Literal('linux'),
  description: Type.Optional(Type.String()),
  kernel: Type.String({ minLength: 1 }),
  initrds: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
  /** Kernel command line; ${var} is replaced (mac, ip, server_url, machine and sequence variables). */
  cmdline: Type.Optional(Type.String()),
});

const IpxeProfile = Obj({
  type: Type.Literal('ipxe'),
  description: Type.Optional(Type.String()),
  /** A raw iPXE script; ${var} is replaced like a Linux command line. */
  script: Type.String({ minLength: 1 }),
});

export const BootProfile = Type.Union([WinPeProfile, LinuxProfile, IpxeProfile]);

const MenuEntry = Obj({
  label: Type.String({ minLength: 1 }),
  /** A profile, or `local` to boot the disk. */
  profile: Type.String({ minLength: 1 }),
});

/** How a machine boots its local disk: finished deployments, `action: local`, the menu's `local` entry. */
const LocalBoot = Obj({
  /** BIOS iPXE: `sanboot` the disk (`biosDrive`), falling back to `exit`; or `exit` to the BIOS's next boot device. */
  bios: Type.Optional(Type.Union([Type.Literal('sanboot'), Type.Literal('exit')])),
  /** BIOS drive number sanboot boots (0x80: the first hard disk). */
  biosDrive: Type.Optional(Type.Integer({ minimum: 0x80, maximum: 0xff })),
  /** UEFI iPXE: `exit` with an error status, so the firmware boot manager tries the next boot option. */
  uefi: Type.Optional(Type.Literal('exit')),
  /**
   * What PXE firmware (not iPXE) gets at its DHCP request when it should boot locally: `ipxe` (its
   * loader; the script then boots the disk), `silent` (no boot answer: the firmware moves to its next
   * boot option after its own DHCP timeout), or `auto`: silent for machines assigned a `via: bootmgr`
   * profile (Secure Boot refuses iPXE), iPXE otherwise (faster: no firmware timeout).
   */
  pxe: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('ipxe'), Type.Literal('silent')])),
});

const BootSection = Obj({
  loaders: Type.Optional(Bootloaders),
  profiles: Type.Optional(Type.Record(Name, BootProfile)),
  localBoot: Type.Optional(LocalBoot),
  menu: Type.Optional(
    Obj({
      title: Type.Optional(Type.String()),
      timeoutSeconds: Type.Optional(Type.Integer({ minimum: 0 })),
      entries: Type.Array(MenuEntry, { minItems: 1 }),
    }),
  ),
});

// ---------------------------------------------------------------------------------------------
// content packages

const Package = Obj({
  kind: Type.Union([Type.Literal('wim'), Type.Literal('drivers'), Type.Literal('boot'), Type.Literal('file'), Type.Literal('folder')]),
  /** File or folder, relative to server.contentDir. */
  path: Type.String({ minLength: 1 }),
  description: Type.Optional(Type.String()),
  /** For drivers: the SMBIOS model names this package is for. */
  models: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
});

// ---------------------------------------------------------------------------------------------
// task sequences: ordered steps; each step is one action, told apart by `type`

const StepBase = {
  name: Type.Optional(Type.String({ minLength: 1 })),
  continueOnError: Type.Optional(Type.Boolean()),
};

const ApplyImageStep = Obj({
  ...StepBase,
  type: Type.Literal('apply-image'),
  package: Name,
  /** Image inside the WIM by index (1-based) or name. */
  image: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.String({ minLength: 1 })])),
  /** Target disk number (default 0). */
  disk: Type.Optional(Type.Integer({ minimum: 0 })),
});

const DriversStep = Obj({
  ...StepBase,
  type: Type.Literal('drivers'),
  /** A named driver package, or `auto` to pick by the model the machine reports. */
  package: Type.Union([Name, Type.Literal('auto')]),
});

const PackageStep = Obj({
  ...StepBase,
  type: Type.Literal('install-package'),
  package: Name,
  /** Command run after download; ${var} is replaced. */
  command: Type.Optional(Type.String()),
});

const CommandStep = Obj({
  ...StepBase,
  type: Type.Literal('command'),
  run: Type.String({ minLength: 1 }),
});

const RebootStep = Obj({
  ...StepBase,
  type: Type.Literal('reboot'),
  /** What the next PXE boot gets while the sequence runs on: the local disk (default) or the deployment environment again. */
  into: Type.Optional(Type.Union([Type.Literal('local'), Type.Literal('pxe')])),
});

export const Step = Type.Union([ApplyImageStep, DriversStep, PackageStep, CommandStep, RebootStep]);

const Sequence = Obj({
  description: Type.Optional(Type.String()),
  /** Boot profile the machine runs this sequence in (normally a WinPE or Linux profile). */
  profile: Type.Optional(Name),
  /**
   * Variables the steps may use as ${name}. A value is the default; `null` means every machine
   * assigned this sequence must set it (checked when the config loads).
   */
  variables: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.Union([VarValue, Type.Null()]))),
  /** What a machine whose deployment failed gets at its next boot: the local disk (default) or the sequence again. */
  onFailure: Type.Optional(Type.Union([Type.Literal('local'), Type.Literal('retry')])),
  steps: Type.Array(Step, { minItems: 1 }),
});

// ---------------------------------------------------------------------------------------------
// machines: groups (with selectors and labels), hosts, and the default

const Action = Type.Union([Type.Literal('ignore'), Type.Literal('local'), Type.Literal('menu'), Type.Literal('sequence')]);

const Default = Obj({
  /** ignore: no PXE answer; local: boot the disk; menu: the boot menu; sequence: deploy `sequence`. */
  action: Action,
  sequence: Type.Optional(Name),
  variables: Type.Optional(Variables),
});

const Group = Obj({
  description: Type.Optional(Type.String()),
  labels: Type.Optional(Labels),
  /** MAC prefixes (vendor OUIs or longer) whose machines belong to this group. */
  macPrefixes: Type.Optional(Type.Array(MacPrefix)),
  sequence: Type.Optional(Name),
  /** When set, members with no sequence of their own get this action instead of a sequence. */
  action: Type.Optional(Action),
  variables: Type.Optional(Variables),
});

export const Host = Obj({
  mac: Type.Optional(MacText),
  uuid: Type.Optional(Uuid),
  /** Fixed address for this MAC when swarmboot is the DHCP server (dhcp.mode: full). */
  ip: Type.Optional(IPv4),
  hostname: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
  group: Type.Optional(Name),
  sequence: Type.Optional(Name),
  action: Type.Optional(Action),
  labels: Type.Optional(Labels),
  variables: Type.Optional(Variables),
  /**
   * Bump this (any new text) to deploy a machine again although its sequence did not change; the
   * same effect as the redeploy API call, but kept in the config.
   */
  deployment: Type.Optional(Type.String({ minLength: 1 })),
});

const MachinesSection = Obj({
  default: Type.Optional(Default),
  groups: Type.Optional(Type.Record(Name, Group)),
  hosts: Type.Optional(Type.Array(Host)),
  /** Further YAML files, each a list of hosts (relative to this file; `*` allowed in the file name). */
  include: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
});

export const ConfigSchema = Obj({
  server: Type.Optional(ServerSection),
  boot: Type.Optional(BootSection),
  packages: Type.Optional(Type.Record(Name, Package)),
  sequences: Type.Optional(Type.Record(Name, Sequence)),
  machines: Type.Optional(MachinesSection),
});

/** A host file included from machines.include: a list of hosts. */
export const HostListSchema = Type.Array(Host);

export type RawConfig = Static<typeof ConfigSchema>;
export type RawHost = Static<typeof Host>;
export type RawStep = Static<typeof Step>;
export type RawSequence = Static<typeof Sequence>;
export type RawProfile = Static<typeof BootProfile>;
export type RawPackage = Static<typeof Package>;
export type RawGroup = Static<typeof Group>;
export type MachineAction = Static<typeof Action>;
export type VariableValue = Static<typeof VarValue>;
export type AnySchema = TSchema;
