/**
 * Checks the schema cannot express: references between sections (a step naming a package or a
 * variable that does not exist), duplicates (a MAC listed twice), and rules that depend on several
 * keys at once. Each problem points at the key that is wrong.
 */
import { BUILTIN_VARIABLES, type HostSite, type LoadedConfig } from './load.ts';
import { formatPath, type ConfigIssue, type Location, type PathSeg } from './yaml-source.ts';
import { templateVariables } from './template.ts';
import { wasSetAside, type SetAside } from './set-aside.ts';

export function crossCheck(
  cfg: LoadedConfig,
  at: (path: PathSeg[], keyOf?: string) => Location,
  hostSites: HostSite[],
  aside?: SetAside,
): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  /** A reference to something whose definition had its own error is not reported again. */
  const defined = { packages: cfg.packages, sequences: cfg.sequences, profiles: cfg.profiles, groups: cfg.groups };
  const missing = (set: keyof typeof defined, name: string) => !Object.hasOwn(defined[set], name) && !wasSetAside(aside, set, name);
  const add = (path: PathSeg[], message: string, where?: Location) => issues.push({ ...(where ?? at(path)), key: formatPath(path), message });
  const hostAt = (i: number, sub: PathSeg[]) => {
    const site = hostSites[i]!;
    // Hosts from an include file are named `hosts[j]` inside that file.
    const keyPath = site.path[0] === 'machines' ? site.path : ['hosts', ...site.path];
    return { where: site.src.locate([...site.path, ...sub]), path: [...keyPath, ...sub] };
  };
  const builtins = new Set<string>(BUILTIN_VARIABLES);
  const names = (o: object) => Object.keys(o);
  const list = (xs: string[]) => (xs.length ? xs.join(', ') : '(none defined)');

  // --- sequences
  for (const [name, seq] of Object.entries(cfg.sequences)) {
    const base: PathSeg[] = ['sequences', name];
    if (seq.profile && missing('profiles', seq.profile)) add([...base, 'profile'], `boot profile "${seq.profile}" does not exist; defined: ${list(names(cfg.profiles))}`);
    for (const v of Object.keys(seq.variables)) {
      if (builtins.has(v)) add([...base, 'variables', v], `"${v}" is a built-in variable and cannot be redefined`);
    }
    const known = new Set([...builtins, ...Object.keys(seq.variables)]);
    seq.steps.forEach((step, i) => {
      const sp: PathSeg[] = [...base, 'steps', i];
      if ('package' in step && step.package !== 'auto') {
        const pkg = cfg.packages[step.package];
        if (!pkg && missing('packages', step.package)) add([...sp, 'package'], `package "${step.package}" does not exist; defined: ${list(names(cfg.packages))}`);
        else if (pkg && step.type === 'apply-image' && pkg.kind !== 'wim') add([...sp, 'package'], `apply-image needs a package of kind wim; "${step.package}" is ${pkg.kind}`);
        else if (pkg && step.type === 'drivers' && pkg.kind !== 'drivers') add([...sp, 'package'], `drivers needs a package of kind drivers; "${step.package}" is ${pkg.kind}`);
      }
      if (step.type === 'drivers' && step.package === 'auto' && !aside?.packages.size && !Object.values(cfg.packages).some((p) => p.kind === 'drivers' && p.models.length > 0)) {
        add([...sp, 'package'], 'package "auto" picks drivers by model, but no drivers package lists any models');
      }
      const texts: Array<[string, string | undefined]> = [
        ['run', step.type === 'command' ? step.run : undefined],
        ['command', step.type === 'install-package' ? step.command : undefined],
      ];
      for (const [key, text] of texts) {
        for (const v of templateVariables(text ?? '')) {
          if (!known.has(v)) add([...sp, key], `variable "${v}" is not defined; declare it in sequences.${name}.variables or use a built-in (${BUILTIN_VARIABLES.join(', ')})`);
        }
      }
    });
  }

  // --- profiles and menu: templates may use built-ins and any variable declared anywhere
  const declared = new Set<string>(builtins);
  for (const s of Object.values(cfg.sequences)) for (const v of Object.keys(s.variables)) declared.add(v);
  for (const g of Object.values(cfg.groups)) for (const v of Object.keys(g.variables)) declared.add(v);
  for (const h of cfg.hosts) for (const v of Object.keys(h.variables)) declared.add(v);
  for (const v of Object.keys(cfg.defaultRule.variables)) declared.add(v);
  for (const [name, p] of Object.entries(cfg.profiles)) {
    const texts: Array<[PathSeg[], string]> = [];
    if (p.type === 'linux') {
      texts.push([['kernel'], p.kernel]);
      (p.initrds ?? []).forEach((x, i) => texts.push([['initrds', i], x]));
      if (p.cmdline) texts.push([['cmdline'], p.cmdline]);
    } else if (p.type === 'ipxe') texts.push([['script'], p.script]);
    for (const [sub, text] of texts) {
      for (const v of templateVariables(text)) {
        if (v === 'step') add(['boot', 'profiles', name, ...sub], 'variable "step" is only known inside the steps of a sequence');
        else if (!declared.has(v) && !aside?.variables) add(['boot', 'profiles', name, ...sub], `variable "${v}" is not defined anywhere; built-ins: ${BUILTIN_VARIABLES.join(', ')}`);
      }
    }
  }
  cfg.menu?.entries.forEach((e, i) => {
    if (e.profile !== 'local' && missing('profiles', e.profile)) add(['boot', 'menu', 'entries', i, 'profile'], `boot profile "${e.profile}" does not exist; use one of: ${list(['local', ...names(cfg.profiles)])}`);
  });

  // --- default rule
  const d = cfg.defaultRule;
  checkAction(['machines', 'default'], d.action, d.sequence);
  if (d.action === 'sequence' && d.sequence) checkRequiredVars(['machines', 'default'], d.sequence, d.variables, 'machines.default.variables');

  // --- groups
  const prefixOwner = new Map<string, string>();
  for (const [name, g] of Object.entries(cfg.groups)) {
    const gp: PathSeg[] = ['machines', 'groups', name];
    if (g.sequence && missing('sequences', g.sequence)) add([...gp, 'sequence'], `sequence "${g.sequence}" does not exist; defined: ${list(names(cfg.sequences))}`);
    if (g.action) checkAction(gp, g.action, g.sequence);
    g.macPrefixes.forEach((p, i) => {
      const owner = prefixOwner.get(p);
      if (owner) add([...gp, 'macPrefixes', i], `MAC prefix ${p} is already claimed by group "${owner}": a machine cannot be in both`);
      else prefixOwner.set(p, name);
    });
    if (g.sequence && g.macPrefixes.length > 0 && (g.action ?? 'sequence') === 'sequence') {
      checkRequiredVars(gp, g.sequence, g.variables, `machines.groups.${name}.variables (machines matched by MAC prefix have no host entry)`);
    }
  }

  // --- bandwidth limits (the schema checks the spelling; zero is no rate)
  const lim = cfg.server.http.limits;
  if (lim.perClientBytesPerSec !== undefined && !(lim.perClientBytesPerSec > 0)) add(['server', 'http', 'limits', 'perClient'], 'must be a rate above zero, such as 50Mbit');
  lim.subnets.forEach((x, i) => {
    if (!(x.bytesPerSec > 0)) add(['server', 'http', 'limits', 'subnets', i, 'rate'], 'must be a rate above zero, such as 50Mbit');
  });

  // --- DHCP pools
  const dhcp = cfg.server.dhcp;
  dhcp.pools.forEach((p, i) => {
    const pp: PathSeg[] = ['server', 'dhcp', 'pools', i];
    if (!inSubnet(p.rangeStart, p.subnet)) add([...pp, 'rangeStart'], `${p.rangeStart} is outside ${p.subnet}`);
    if (!inSubnet(p.rangeEnd, p.subnet)) add([...pp, 'rangeEnd'], `${p.rangeEnd} is outside ${p.subnet}`);
    if (ipToInt(p.rangeStart) > ipToInt(p.rangeEnd)) add([...pp, 'rangeEnd'], `range end ${p.rangeEnd} is before its start ${p.rangeStart}`);
    if (p.router && !inSubnet(p.router, p.subnet)) add([...pp, 'router'], `router ${p.router} is outside ${p.subnet}`);
  });
  if (dhcp.enabled && dhcp.mode === 'full' && dhcp.pools.length === 0) add(['server', 'dhcp', 'mode'], 'full DHCP mode needs at least one entry in server.dhcp.pools');

  // --- hosts
  const byMac = new Map<string, number>();
  const byUuid = new Map<string, number>();
  const byIp = new Map<string, number>();
  const inPool = (ip: string) => cfg.server.dhcp.pools.some((p) => inSubnet(ip, p.subnet));
  cfg.hosts.forEach((h, i) => {
    const here = (sub: PathSeg[]) => hostAt(i, sub);
    const report = (sub: PathSeg[], message: string) => {
      const { where, path } = here(sub);
      add(path, message, where);
    };
    if (!h.mac && !h.uuid) report([], 'a host needs a mac or a uuid to be recognised');
    if (h.mac) {
      const first = byMac.get(h.mac);
      if (first !== undefined) report(['mac'], `MAC ${h.mac} is listed twice; first at ${fmt(cfg.hosts[first]!.origin)}`);
      else byMac.set(h.mac, i);
    }
    if (h.uuid) {
      const first = byUuid.get(h.uuid);
      if (first !== undefined) report(['uuid'], `UUID ${h.uuid} is listed twice; first at ${fmt(cfg.hosts[first]!.origin)}`);
      else byUuid.set(h.uuid, i);
    }
    if (h.ip) {
      const first = byIp.get(h.ip);
      if (first !== undefined) report(['ip'], `address ${h.ip} is reserved twice; first at ${fmt(cfg.hosts[first]!.origin)}`);
      else byIp.set(h.ip, i);
      if (!h.mac) report(['ip'], 'an address reservation needs the host\'s mac');
      if (cfg.server.dhcp.mode === 'full' && cfg.server.dhcp.pools.length > 0 && !inPool(h.ip)) report(['ip'], `address ${h.ip} is in no subnet of server.dhcp.pools`);
    }
    const group = h.group ? cfg.groups[h.group] : undefined;
    if (h.group && missing('groups', h.group)) report(['group'], `group "${h.group}" does not exist; defined: ${list(names(cfg.groups))}`);
    if (h.sequence && missing('sequences', h.sequence)) report(['sequence'], `sequence "${h.sequence}" does not exist; defined: ${list(names(cfg.sequences))}`);
    const action = h.action ?? (h.sequence ? 'sequence' : group?.action ?? (group?.sequence ? 'sequence' : undefined));
    const sequence = h.sequence ?? group?.sequence;
    if (h.action === 'sequence' && !sequence && !(h.group && wasSetAside(aside, 'groups', h.group))) report(['action'], 'action "sequence" needs a sequence (on the host or its group)');
    if (h.action === 'menu' && !cfg.menu && !aside?.menu) report(['action'], 'action "menu" needs boot.menu to be configured');
    if (action === 'sequence' && sequence && cfg.sequences[sequence]) {
      const have: Record<string, string> = { ...(group?.variables ?? {}), ...h.variables, ...(h.hostname ? { hostname: h.hostname } : {}) };
      for (const [v, dflt] of Object.entries(cfg.sequences[sequence].variables)) {
        if (dflt === null && have[v] === undefined) report(['variables'], `sequence "${sequence}" requires variable "${v}" for every machine; set it on this host or its group`);
      }
    }
  });

  return issues;

  function checkAction(path: PathSeg[], action: string, sequence: string | undefined) {
    if (action === 'sequence' && !sequence) add([...path, 'action'], 'action "sequence" needs a "sequence" key naming the task sequence');
    if (action !== 'sequence' && sequence && path[1] === 'default') add([...path, 'sequence'], `"sequence" is only used with action "sequence" (action is "${action}")`);
    if (sequence && missing('sequences', sequence) && path[1] === 'default') add([...path, 'sequence'], `sequence "${sequence}" does not exist; defined: ${list(names(cfg.sequences))}`);
    if (action === 'menu' && !cfg.menu && !aside?.menu) add([...path, 'action'], 'action "menu" needs boot.menu to be configured');
  }

  function checkRequiredVars(path: PathSeg[], sequence: string, have: Record<string, string>, where: string) {
    const seq = cfg.sequences[sequence];
    if (!seq) return;
    for (const [v, dflt] of Object.entries(seq.variables)) {
      if (dflt === null && have[v] === undefined) add([...path, 'sequence'], `sequence "${sequence}" requires variable "${v}"; set it in ${where}`);
    }
  }
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((a, o) => (a << 8) + Number(o), 0) >>> 0;
}

function inSubnet(ip: string, cidr: string): boolean {
  const [net, bits] = cidr.split('/');
  const mask = Number(bits) === 0 ? 0 : (~0 << (32 - Number(bits))) >>> 0;
  return (ipToInt(ip) & mask) === (ipToInt(net!) & mask);
}

function fmt(l: Location): string {
  return `${l.file}:${l.line}:${l.column}`;
}
