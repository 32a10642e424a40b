/**
 * Loads the admin's YAML (and the host lists it includes) into one immutable, typed snapshot, or
 * refuses it with every problem found, each with file, line, column and key.
 */
import { createHash } from 'node:crypto';
import { readdirSync, existsSync, statSync } from 'node:fs';
import { dirname, resolve, basename, join, isAbsolute } from 'node:path';
import { ConfigSchema, HostListSchema, type RawConfig, type RawHost, type RawStep, type MachineAction, type RawProfile, type VariableValue } from './schema.ts';
import { validateDetailed } from './validate.ts';
import { emptySetAside, invalidHostIndices, setAsideConfig } from './set-aside.ts';
import { YamlSource, formatIssue, formatPath, type ConfigIssue, type Location, type PathSeg } from './yaml-source.ts';
import { normalizeMac, normalizeMacPrefix, normalizeUuid } from './mac.ts';
import { crossCheck } from './cross-check.ts';
import { parseRate } from './rate.ts';
import { menuProblems } from '../server/dhcp/pxe-menu.ts';
import type { PxeMenu } from '../server/dhcp/types.ts';

export type { ConfigIssue, Location };

export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super(`invalid configuration (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n${issues.map(formatIssue).join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export type Vars = Record<string, string>;

/** The file and path a host entry was read from (main file or an include). */
export interface HostSite {
  src: YamlSource;
  path: PathSeg[];
}

export interface HostEntry {
  index: number;
  mac?: string;
  uuid?: string;
  /** DHCP reservation (full mode). */
  ip?: string;
  hostname?: string;
  group?: string;
  sequence?: string;
  action?: MachineAction;
  labels: Record<string, string>;
  variables: Vars;
  deployment?: string;
  origin: Location;
}

export interface GroupEntry {
  name: string;
  description?: string;
  labels: Record<string, string>;
  macPrefixes: string[];
  sequence?: string;
  action?: MachineAction;
  variables: Vars;
}

export interface SequenceDef {
  name: string;
  description?: string;
  profile?: string;
  /** Defaults; null = each machine must set it. */
  variables: Record<string, string | null>;
  onFailure: 'local' | 'retry';
  steps: RawStep[];
}

export interface PackageDef {
  id: string;
  kind: 'wim' | 'drivers' | 'boot' | 'file' | 'folder';
  /** Absolute path of the file or folder. */
  path: string;
  description?: string;
  models: string[];
}

export interface ServerSettings {
  address?: string;
  dataDir: string;
  contentDir: string;
  adminToken?: string;
  adminTokenFile?: string;
  logLevel: string;
  http: { host: string; port: number; publicUrl?: string; limits: { perClientBytesPerSec?: number; subnets: Array<{ cidr: string; bytesPerSec: number }> } };
  tftp: { enabled: boolean; host: string; port: number; root: string; maxBlksize: number; maxWindowsize: number; maxTransfers: number; spinUs: number };
  dhcp: {
    enabled: boolean;
    mode: 'proxy' | 'full';
    interfaces: string[];
    port: number;
    proxyPort: number;
    pools: Array<{ subnet: string; rangeStart: string; rangeEnd: string; router?: string; dns: string[]; domain?: string; leaseSeconds: number }>;
    unknownArch: 'ignore' | 'bios' | 'uefi-x64';
    ratePerMacPerMinute: number;
    /** The PXE ROM boot menu (server/dhcp/pxe-menu.ts). */
    pxeMenu?: PxeMenu;
  };
}

export interface LoadedConfig {
  /** Absolute path of the main file. */
  file: string;
  /** Every file this snapshot was read from (main + includes): the ones to watch. */
  files: string[];
  /** SHA-256 over all source texts: tells whether a reload changed anything. */
  digest: string;
  server: ServerSettings;
  loaders: Partial<Record<'bios' | 'uefi-x64' | 'uefi-ia32' | 'uefi-arm64' | 'uefi-http-x64' | 'uefi-http-arm64', string>>;
  profiles: Record<string, RawProfile>;
  /** How machines boot their local disk (see boot.localBoot in config/schema.ts). */
  localBoot: { bios: 'sanboot' | 'exit'; biosDrive: number; uefi: 'exit'; pxe: 'auto' | 'ipxe' | 'silent' };
  menu?: { title: string; timeoutSeconds: number; entries: Array<{ label: string; profile: string }> };
  packages: Record<string, PackageDef>;
  sequences: Record<string, SequenceDef>;
  defaultRule: { action: MachineAction; sequence?: string; variables: Vars };
  groups: Record<string, GroupEntry>;
  hosts: HostEntry[];
  /** Where a key of the main file is written (for checks made after loading, e.g. against WIMs). */
  locate: (path: PathSeg[]) => Location;
  index: {
    byMac: Map<string, HostEntry>;
    byUuid: Map<string, HostEntry>;
    /** Group MAC prefixes, longest first: the most specific prefix wins. */
    prefixes: Array<{ prefix: string; group: string }>;
  };
}

/** Variables every template can use without declaring them. */
export const BUILTIN_VARIABLES = ['mac', 'mac_hyphen', 'mac_hex', 'ip', 'uuid', 'hostname', 'server', 'server_url', 'sequence', 'step', 'deployment'] as const;

function toVars(v: Record<string, VariableValue> | undefined): Vars {
  const out: Vars = {};
  for (const [k, val] of Object.entries(v ?? {})) out[k] = String(val);
  return out;
}

/** Load and validate a config file; throws ConfigError listing every problem. */
export function loadConfig(file: string): LoadedConfig {
  const main = resolve(file);
  if (!existsSync(main)) throw new ConfigError([{ file: main, line: 1, column: 1, key: '', message: 'file not found' }]);
  let src: YamlSource;
  try {
    src = YamlSource.read(main);
  } catch (e) {
    throw new ConfigError([{ file: main, line: 1, column: 1, key: '', message: `cannot read: ${(e as Error).message}` }]);
  }
  return loadFromSource(src);
}

/** Load from text (tests, the check-config of an editor buffer). `file` names it in errors. */
export function loadConfigText(file: string, text: string): LoadedConfig {
  return loadFromSource(YamlSource.fromText(resolve(file), text));
}

function loadFromSource(src: YamlSource): LoadedConfig {
  const issues: ConfigIssue[] = [...src.syntaxIssues()];
  if (issues.length) throw new ConfigError(issues);
  let raw = (src.toJS() ?? {}) as RawConfig;
  // Every problem in one run: the invalid parts are set aside and the rest is still checked.
  const aside = emptySetAside();
  const checked = validateDetailed(ConfigSchema, raw, src);
  if (checked.issues.length) {
    issues.push(...checked.issues);
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(issues);
    raw = structuredClone(raw);
    setAsideConfig(raw as Record<string, unknown>, checked.invalid, aside);
    // What is left must be valid, or the checks below could read values of the wrong type.
    if (validateDetailed(ConfigSchema, raw, src).issues.length) throw new ConfigError(issues);
  }

  const baseDir = dirname(src.file);
  const sources: YamlSource[] = [src];
  const hosts: HostEntry[] = [];
  /** Where each host was written, to point cross-reference errors at the exact key. */
  const hostSites: HostSite[] = [];
  const at = (path: PathSeg[], keyOf?: string) => src.locate(path, keyOf);
  const issue = (where: Location, path: PathSeg[], message: string) => issues.push({ ...where, key: formatPath(path), message });

  // Hosts in the main file, then those of included files, in order: indices are stable.
  (raw.machines?.hosts ?? []).forEach((h, i) => {
    if (aside.hosts.has(i)) return;
    hostSites.push({ src, path: ['machines', 'hosts', i] });
    hosts.push(hostEntry(h, hosts.length, at(['machines', 'hosts', i])));
  });
  (raw.machines?.include ?? []).forEach((pattern, i) => {
    const files = expandInclude(baseDir, pattern);
    if (files.length === 0) {
      issue(at(['machines', 'include', i]), ['machines', 'include', i], `no file matches "${pattern}"`);
      return;
    }
    for (const f of files) {
      let inc: YamlSource;
      try {
        inc = YamlSource.read(f);
      } catch (e) {
        issue(at(['machines', 'include', i]), ['machines', 'include', i], `cannot read ${f}: ${(e as Error).message}`);
        continue;
      }
      sources.push(inc);
      const syn = inc.syntaxIssues();
      if (syn.length) {
        issues.push(...syn);
        continue;
      }
      let list = inc.toJS() ?? [];
      const inv = validateDetailed(HostListSchema, list, inc);
      let skip = new Set<number>();
      if (inv.issues.length) {
        issues.push(...inv.issues);
        aside.variables = true;
        if (!Array.isArray(list)) continue;
        list = structuredClone(list);
        const bad = invalidHostIndices(list as unknown[], inv.invalid);
        if (bad === 'all') continue;
        skip = bad;
      }
      (list as RawHost[]).forEach((h, j) => {
        if (skip.has(j)) return;
        hostSites.push({ src: inc, path: [j] });
        hosts.push(hostEntry(h, hosts.length, inc.locate([j])));
      });
    }
  });

  const s = raw.server ?? {};
  const rel = (p: string | undefined, dflt: string) => resolve(baseDir, p ?? dflt);
  const server: ServerSettings = {
    ...(s.address !== undefined ? { address: s.address } : {}),
    dataDir: rel(s.dataDir, 'data'),
    contentDir: rel(s.contentDir, 'content'),
    ...(s.adminToken !== undefined ? { adminToken: s.adminToken } : {}),
    ...(s.adminTokenFile !== undefined ? { adminTokenFile: rel(s.adminTokenFile, '') } : {}),
    logLevel: s.logLevel ?? 'info',
    http: {
      host: s.http?.host ?? '0.0.0.0',
      port: s.http?.port ?? 80,
      ...(s.http?.publicUrl ? { publicUrl: s.http.publicUrl.replace(/\/+$/, '') } : {}),
      limits: {
        ...(s.http?.limits?.perClient !== undefined ? { perClientBytesPerSec: parseRate(s.http.limits.perClient) ?? 0 } : {}),
        subnets: (s.http?.limits?.subnets ?? []).map((x) => ({ cidr: x.cidr, bytesPerSec: parseRate(x.rate) ?? 0 })),
      },
    },
    tftp: {
      enabled: s.tftp?.enabled ?? true,
      host: s.tftp?.host ?? '0.0.0.0',
      port: s.tftp?.port ?? 69,
      root: rel(s.tftp?.root, 'tftp'),
      maxBlksize: s.tftp?.maxBlksize ?? 1456,
      maxWindowsize: s.tftp?.maxWindowsize ?? 64,
      maxTransfers: s.tftp?.maxTransfers ?? 500,
      spinUs: s.tftp?.spinUs ?? 50,
    },
    dhcp: {
      enabled: s.dhcp?.enabled ?? true,
      mode: s.dhcp?.mode ?? 'proxy',
      interfaces: s.dhcp?.interfaces ?? [],
      port: s.dhcp?.port ?? 67,
      proxyPort: s.dhcp?.proxyPort ?? 4011,
      pools: (s.dhcp?.pools ?? []).map((p) => ({
        subnet: p.subnet,
        rangeStart: p.rangeStart,
        rangeEnd: p.rangeEnd,
        ...(p.router ? { router: p.router } : {}),
        dns: p.dns ?? [],
        ...(p.domain ? { domain: p.domain } : {}),
        leaseSeconds: p.leaseSeconds ?? 3600,
      })),
      unknownArch: s.dhcp?.unknownArch ?? 'ignore',
      ratePerMacPerMinute: s.dhcp?.ratePerMacPerMinute ?? 30,
      ...(s.dhcp?.pxeMenu
        ? {
            pxeMenu: {
              prompt: s.dhcp.pxeMenu.prompt ?? 'Press F8 for the boot menu',
              timeoutSeconds: s.dhcp.pxeMenu.timeoutSeconds ?? 5,
              items: s.dhcp.pxeMenu.items.map((it) => ({ ...it, ...(typeof it.bootfile === 'object' ? { bootfile: { ...it.bootfile } } : {}) })),
            },
          }
        : {}),
    },
  };
  // What the schema cannot say: one of boot/bootfile per item, and the menu fits in option 43.
  for (const p of server.dhcp.pxeMenu ? menuProblems(server.dhcp.pxeMenu) : []) {
    const path: PathSeg[] = ['server', 'dhcp', 'pxeMenu', ...p.path];
    issue(at(path), path, p.message);
  }

  const packages: Record<string, PackageDef> = {};
  for (const [id, p] of Object.entries(raw.packages ?? {})) {
    packages[id] = {
      id,
      kind: p.kind,
      path: isAbsolute(p.path) ? p.path : resolve(server.contentDir, p.path),
      ...(p.description ? { description: p.description } : {}),
      models: p.models ?? [],
    };
  }

  const sequences: Record<string, SequenceDef> = {};
  for (const [name, q] of Object.entries(raw.sequences ?? {})) {
    const variables: Record<string, string | null> = {};
    for (const [k, v] of Object.entries(q.variables ?? {})) variables[k] = v === null ? null : String(v);
    sequences[name] = {
      name,
      ...(q.description ? { description: q.description } : {}),
      ...(q.profile ? { profile: q.profile } : {}),
      variables,
      onFailure: q.onFailure ?? 'local',
      steps: q.steps,
    };
  }

  const groups: Record<string, GroupEntry> = {};
  for (const [name, g] of Object.entries(raw.machines?.groups ?? {})) {
    groups[name] = {
      name,
      ...(g.description ? { description: g.description } : {}),
      labels: g.labels ?? {},
      macPrefixes: (g.macPrefixes ?? []).map((p) => normalizeMacPrefix(p) ?? p),
      ...(g.sequence ? { sequence: g.sequence } : {}),
      ...(g.action ? { action: g.action } : {}),
      variables: toVars(g.variables),
    };
  }

  const d = raw.machines?.default;
  const defaultRule = { action: d?.action ?? 'ignore', ...(d?.sequence ? { sequence: d.sequence } : {}), variables: toVars(d?.variables) };

  const b = raw.boot ?? {};
  const menu = b.menu
    ? { title: b.menu.title ?? 'swarmboot', timeoutSeconds: b.menu.timeoutSeconds ?? 30, entries: b.menu.entries.map((e) => ({ label: e.label, profile: e.profile })) }
    : undefined;

  const config: LoadedConfig = {
    file: src.file,
    files: sources.map((x) => x.file),
    digest: createHash('sha256').update(sources.map((x) => `${x.file}\0${x.text}`).join('\0')).digest('hex'),
    server,
    loaders: { ...(b.loaders ?? {}) },
    profiles: { ...(b.profiles ?? {}) },
    localBoot: { bios: b.localBoot?.bios ?? 'sanboot', biosDrive: b.localBoot?.biosDrive ?? 0x80, uefi: b.localBoot?.uefi ?? 'exit', pxe: b.localBoot?.pxe ?? 'auto' },
    ...(menu ? { menu } : {}),
    packages,
    sequences,
    defaultRule,
    groups,
    hosts,
    locate: (path) => src.locate(path),
    index: { byMac: new Map(), byUuid: new Map(), prefixes: [] },
  };

  issues.push(...crossCheck(config, at, hostSites, aside));
  if (issues.length) throw new ConfigError(issues.sort(byLocation));

  for (const h of hosts) {
    if (h.mac) config.index.byMac.set(h.mac, h);
    if (h.uuid) config.index.byUuid.set(h.uuid, h);
  }
  for (const g of Object.values(groups)) for (const p of g.macPrefixes) config.index.prefixes.push({ prefix: p, group: g.name });
  config.index.prefixes.sort((a, b2) => b2.prefix.length - a.prefix.length);
  return deepFreeze(config);
}

function hostEntry(h: RawHost, index: number, origin: Location): HostEntry {
  return {
    index,
    ...(h.mac ? { mac: normalizeMac(h.mac) ?? h.mac } : {}),
    ...(h.uuid ? { uuid: normalizeUuid(h.uuid) ?? h.uuid } : {}),
    ...(h.ip ? { ip: h.ip } : {}),
    ...(h.hostname ? { hostname: h.hostname } : {}),
    ...(h.group ? { group: h.group } : {}),
    ...(h.sequence ? { sequence: h.sequence } : {}),
    ...(h.action ? { action: h.action } : {}),
    labels: h.labels ?? {},
    variables: toVars(h.variables),
    ...(h.deployment ? { deployment: h.deployment } : {}),
    origin,
  };
}

/** `machines/*.yaml` → the matching files, sorted; `*` and `?` only in the last path segment. */
function expandInclude(baseDir: string, pattern: string): string[] {
  const full = resolve(baseDir, pattern);
  const name = basename(full);
  if (!/[*?]/.test(name)) return existsSync(full) ? [full] : [];
  const dir = dirname(full);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return [];
  const re = new RegExp(`^${name.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return readdirSync(dir)
    .filter((f) => re.test(f))
    .sort()
    .map((f) => join(dir, f));
}

function byLocation(a: ConfigIssue, b: ConfigIssue): number {
  return a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o) && !(o instanceof Map)) {
    Object.freeze(o);
    for (const v of Object.values(o as object)) deepFreeze(v);
  }
  return o;
}
