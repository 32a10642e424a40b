/**
 * Which rule of the config applies to a machine. The most specific match wins, whatever the order
 * in the file: a host entry by exact MAC, then a host entry by SMBIOS UUID, then the group with the
 * longest matching MAC prefix, then `machines.default`. When the MAC and the UUID name different
 * host entries, the MAC wins (a UUID can be cloned with a VM or blank on cheap boards; a MAC is what
 * the network actually saw) and the assignment carries a note so the conflict is logged.
 */
import type { GroupEntry, HostEntry, LoadedConfig, Vars } from '../config/load.ts';
import type { MachineAction } from '../config/schema.ts';

export interface Assignment {
  matchedBy: 'mac' | 'uuid' | 'mac-prefix' | 'default';
  host?: HostEntry;
  group?: string;
  action: MachineAction;
  sequence?: string;
  hostname?: string;
  labels: Record<string, string>;
  /** Sequence defaults < default/group < host < hostname. */
  variables: Vars;
  /**
   * Identity of the deployment the config asks for. A machine whose finished deployment had another
   * key is deployed again: the admin assigned another sequence, or bumped the host's `deployment`.
   */
  deploymentKey?: string;
  note?: string;
}

export interface MachineIdentity {
  mac: string;
  uuid?: string;
}

export function resolveAssignment(cfg: LoadedConfig, id: MachineIdentity): Assignment {
  const byMac = cfg.index.byMac.get(id.mac);
  const byUuid = id.uuid ? cfg.index.byUuid.get(id.uuid) : undefined;
  let note: string | undefined;
  if (byMac && byUuid && byMac !== byUuid) {
    note = `MAC matches host at ${byMac.origin.file}:${byMac.origin.line} and UUID matches host at ${byUuid.origin.file}:${byUuid.origin.line}; the MAC wins`;
  }
  const host = byMac ?? byUuid;
  if (host) {
    const group = host.group ? cfg.groups[host.group] : undefined;
    return fromRule(cfg, byMac ? 'mac' : 'uuid', host, group, note);
  }
  const prefix = cfg.index.prefixes.find((p) => id.mac.startsWith(p.prefix));
  if (prefix) return fromRule(cfg, 'mac-prefix', undefined, cfg.groups[prefix.group], note);
  return fromRule(cfg, 'default', undefined, undefined, note);
}

function fromRule(cfg: LoadedConfig, matchedBy: Assignment['matchedBy'], host: HostEntry | undefined, group: GroupEntry | undefined, note: string | undefined): Assignment {
  const d = cfg.defaultRule;
  let action: MachineAction;
  let sequence: string | undefined;
  let usesDefault = false;
  if (host?.action) {
    action = host.action;
    sequence = host.sequence ?? group?.sequence;
  } else if (host?.sequence) {
    action = 'sequence';
    sequence = host.sequence;
  } else if (group?.action) {
    action = group.action;
    sequence = group.sequence;
  } else if (group?.sequence) {
    action = 'sequence';
    sequence = group.sequence;
  } else {
    action = d.action;
    sequence = d.sequence;
    usesDefault = true;
  }
  if (action !== 'sequence') sequence = undefined;

  const seqDefaults: Vars = {};
  const seq = sequence ? cfg.sequences[sequence] : undefined;
  for (const [k, v] of Object.entries(seq?.variables ?? {})) if (v !== null) seqDefaults[k] = v;
  const hostname = host?.hostname;
  const variables: Vars = {
    ...seqDefaults,
    ...(usesDefault ? d.variables : {}),
    ...(group?.variables ?? {}),
    ...(host?.variables ?? {}),
    ...(hostname ? { hostname } : {}),
  };
  const deploymentKey = sequence ? (host?.deployment ? `${sequence}#${host.deployment}` : sequence) : undefined;
  return {
    matchedBy,
    ...(host ? { host } : {}),
    ...(group ? { group: group.name } : {}),
    action,
    ...(sequence ? { sequence } : {}),
    ...(hostname ? { hostname } : {}),
    labels: { ...(group?.labels ?? {}), ...(host?.labels ?? {}) },
    variables,
    ...(deploymentKey ? { deploymentKey } : {}),
    ...(note ? { note } : {}),
  };
}
