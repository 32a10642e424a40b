/**
 * Sets the invalid parts of a config aside so loading can go on and report every other problem in
 * the same run (an admin fixing a file should not meet its errors one phase at a time).
 *
 * A schema problem removes the smallest thing that other checks look at as a whole: a package, a
 * sequence, a profile, a group, a host, or one section of `server`. An unknown key removes only
 * that key. Names set aside are remembered, so a reference to a package whose definition had a
 * typo is not reported a second time as "does not exist".
 */
import type { InvalidAt } from './validate.ts';
import type { PathSeg } from './yaml-source.ts';

export interface SetAside {
  packages: Set<string>;
  sequences: Set<string>;
  profiles: Set<string>;
  groups: Set<string>;
  /** Indices of hosts (in load order) set aside. */
  hosts: Set<number>;
  menu: boolean;
  /** Something that may declare variables was set aside: "variable not defined anywhere" cannot be judged. */
  variables: boolean;
  /** Nothing at all was set aside. */
  readonly empty: boolean;
}

export function emptySetAside(): SetAside {
  const s: SetAside = {
    packages: new Set(),
    sequences: new Set(),
    profiles: new Set(),
    groups: new Set(),
    hosts: new Set(),
    menu: false,
    variables: false,
    get empty() {
      return !this.menu && !this.variables && !this.packages.size && !this.sequences.size && !this.profiles.size && !this.groups.size && !this.hosts.size;
    },
  };
  return s;
}

/** Sections whose entries are set aside one by one, and the name of the set that remembers them. */
const MAPS: Array<{ at: PathSeg[]; set: 'packages' | 'sequences' | 'profiles' | 'groups' }> = [
  { at: ['packages'], set: 'packages' },
  { at: ['sequences'], set: 'sequences' },
  { at: ['boot', 'profiles'], set: 'profiles' },
  { at: ['machines', 'groups'], set: 'groups' },
];

/**
 * Remove the invalid parts of the main config (in place; pass a copy). An invalid host keeps its
 * place in the list as an empty entry (indices locate errors) and is marked in `aside.hosts`.
 */
export function setAsideConfig(raw: Record<string, unknown>, invalid: InvalidAt[], aside: SetAside): void {
  for (const { path, unknownKey } of invalid) {
    if (unknownKey) {
      remove(raw, path);
      continue;
    }
    const map = MAPS.find((m) => startsWith(path, m.at));
    if (map) {
      const name = path[map.at.length];
      if (name === undefined) {
        // The whole section has the wrong shape: everything it would define is unknown.
        const section = get(raw, map.at);
        if (section && typeof section === 'object') for (const k of Object.keys(section)) aside[map.set].add(k);
        remove(raw, map.at);
        aside[map.set].add('*');
      } else {
        aside[map.set].add(String(name));
        remove(raw, [...map.at, name]);
      }
      if (map.set !== 'packages' && map.set !== 'profiles') aside.variables = true;
      continue;
    }
    if (path[0] === 'machines' && path[1] === 'hosts' && typeof path[2] === 'number') {
      // Keep its place in the list (indices locate errors) with an empty, valid entry.
      const list = get(raw, ['machines', 'hosts']) as unknown[];
      list[path[2]] = {};
      aside.hosts.add(path[2]);
      aside.variables = true;
      continue;
    }
    if (path[0] === 'boot' && path[1] === 'menu') aside.menu = true;
    if (path[0] === 'machines' && (path[1] === 'default' || path[1] === 'hosts' || path[1] === undefined)) aside.variables = true;
    if (path[0] === 'machines' && path[1] === 'hosts' && path.length === 2) markAll(raw, ['machines', 'hosts'], aside);
    // Anything else: drop the section of depth two (server.http, boot.loaders, machines.include…),
    // or the top-level key when the problem is right there.
    remove(raw, path.slice(0, Math.min(2, Math.max(1, path.length))));
    if (path.length <= 1) {
      aside.variables = true;
      aside.menu = true;
      for (const m of MAPS) aside[m.set].add('*');
    }
  }
}

/**
 * Hosts of an include file with problems: unknown keys are removed (in place; pass a copy), other
 * problems mark the host (by its index in the file) to be skipped.
 */
export function invalidHostIndices(list: unknown[], invalid: InvalidAt[]): Set<number> | 'all' {
  const bad = new Set<number>();
  for (const { path, unknownKey } of invalid) {
    if (typeof path[0] !== 'number') return 'all';
    if (unknownKey) remove(list as unknown as Record<string, unknown>, path);
    else bad.add(path[0]);
  }
  return bad.size >= list.length ? 'all' : bad;
}

/** Is this name one that was set aside (so a reference to it must not be reported again)? */
export function wasSetAside(aside: SetAside | undefined, set: 'packages' | 'sequences' | 'profiles' | 'groups', name: string): boolean {
  return !!aside && (aside[set].has(name) || aside[set].has('*'));
}

function markAll(raw: Record<string, unknown>, at: PathSeg[], aside: SetAside) {
  const list = get(raw, at);
  if (Array.isArray(list)) list.forEach((_, i) => aside.hosts.add(i));
}

function startsWith(path: PathSeg[], prefix: PathSeg[]): boolean {
  return prefix.every((p, i) => path[i] === p);
}

function get(o: unknown, path: PathSeg[]): unknown {
  let v = o;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[seg as string];
  }
  return v;
}

function remove(o: Record<string, unknown>, path: PathSeg[]) {
  if (path.length === 0) return;
  const parent = get(o, path.slice(0, -1));
  if (parent && typeof parent === 'object' && !Array.isArray(parent)) delete (parent as Record<string, unknown>)[path.at(-1) as string];
}
