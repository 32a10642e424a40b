import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfigText } from '../../config/load.ts';
import { resolveAssignment } from '../../boot/assign.ts';

const cfg = loadConfigText(
  '/cfg/assign.yaml',
  `
sequences:
  win: { variables: { locale: en-US, ou: "OU=Default" }, steps: [{ type: command, run: "x" }] }
  lab: { steps: [{ type: command, run: "y" }] }
  kiosk: { steps: [{ type: command, run: "z" }] }
  fleet: { steps: [{ type: command, run: "w" }] }
machines:
  default: { action: sequence, sequence: fleet, variables: { site: unknown } }
  groups:
    vendor: { macPrefixes: ["52:54:00"], sequence: lab, labels: { room: lab }, variables: { locale: fr-FR } }
    vendor-sub: { macPrefixes: ["52:54:00:aa"], action: local }
    finance: { sequence: win, labels: { dept: fin }, variables: { ou: "OU=Finance" } }
  hosts:
    - mac: 52:54:00:00:00:09
      hostname: by-mac
      sequence: kiosk
    - uuid: 11111111-2222-3333-4444-555555555555
      hostname: by-uuid
      group: finance
      variables: { locale: de-DE }
    - mac: 00:aa:00:00:00:01
      hostname: member
      group: finance
    - mac: 00:aa:00:00:00:02
      uuid: 99999999-2222-3333-4444-555555555555
      hostname: mac-entry
      action: local
    - uuid: 99999999-2222-3333-4444-555555555556
      hostname: uuid-entry
      sequence: win
    - mac: 00:aa:00:00:00:03
      deployment: second
      sequence: win
`,
);

test('exact MAC wins over the group whose prefix also matches', () => {
  const a = resolveAssignment(cfg, { mac: '52:54:00:00:00:09' });
  assert.equal(a.matchedBy, 'mac');
  assert.equal(a.sequence, 'kiosk');
  assert.equal(a.hostname, 'by-mac');
  assert.equal(a.deploymentKey, 'kiosk');
});

test('UUID selects a host when the MAC is unknown; group variables and labels are inherited, host overrides', () => {
  const a = resolveAssignment(cfg, { mac: '00:00:00:00:00:77', uuid: '11111111-2222-3333-4444-555555555555' });
  assert.equal(a.matchedBy, 'uuid');
  assert.equal(a.group, 'finance');
  assert.equal(a.sequence, 'win');
  assert.deepEqual(a.labels, { dept: 'fin' });
  assert.equal(a.variables.ou, 'OU=Finance', 'group overrides sequence default');
  assert.equal(a.variables.locale, 'de-DE', 'host overrides sequence default');
  assert.equal(a.variables.hostname, 'by-uuid');
});

test('MAC prefix: the longest matching prefix wins, whatever the order in the file', () => {
  const general = resolveAssignment(cfg, { mac: '52:54:00:12:34:56' });
  assert.equal(general.matchedBy, 'mac-prefix');
  assert.equal(general.group, 'vendor');
  assert.equal(general.sequence, 'lab');
  assert.equal(general.variables.locale, 'fr-FR');
  const specific = resolveAssignment(cfg, { mac: '52:54:00:aa:00:01' });
  assert.equal(specific.group, 'vendor-sub');
  assert.equal(specific.action, 'local');
  assert.equal(specific.sequence, undefined);
});

test('unknown machines get the default rule with its variables', () => {
  const a = resolveAssignment(cfg, { mac: 'de:ad:be:ef:00:01' });
  assert.equal(a.matchedBy, 'default');
  assert.equal(a.sequence, 'fleet');
  assert.equal(a.variables.site, 'unknown');
});

test('MAC and UUID naming different hosts: the MAC wins, with a note for the log', () => {
  const a = resolveAssignment(cfg, { mac: '00:aa:00:00:00:02', uuid: '99999999-2222-3333-4444-555555555556' });
  assert.equal(a.matchedBy, 'mac');
  assert.equal(a.hostname, 'mac-entry');
  assert.equal(a.action, 'local');
  assert.match(a.note ?? '', /the MAC wins/);
});

test('a host in a group with no sequence of its own gets the group sequence', () => {
  const a = resolveAssignment(cfg, { mac: '00:aa:00:00:00:01' });
  assert.equal(a.sequence, 'win');
  assert.equal(a.group, 'finance');
  assert.equal(a.variables.ou, 'OU=Finance');
});

test('the host deployment key is part of the deployment identity', () => {
  assert.equal(resolveAssignment(cfg, { mac: '00:aa:00:00:00:03' }).deploymentKey, 'win#second');
});

test('with no default rule, unknown machines are ignored', () => {
  const bare = loadConfigText('/x.yaml', 'machines: {}\n');
  const a = resolveAssignment(bare, { mac: '00:00:00:00:00:01' });
  assert.equal(a.action, 'ignore');
});

test('a host found by UUID wins over a group that claims the MAC by prefix', () => {
  const a = resolveAssignment(cfg, { mac: '52:54:00:77:77:77', uuid: '11111111-2222-3333-4444-555555555555' });
  assert.equal(a.matchedBy, 'uuid', 'a host entry is more specific than a vendor prefix');
  assert.equal(a.hostname, 'by-uuid');
  assert.equal(a.sequence, 'win');
  assert.equal(a.group, 'finance', 'its own group, not the prefix group');
  const noUuid = resolveAssignment(cfg, { mac: '52:54:00:77:77:77' });
  assert.equal(noUuid.group, 'vendor');
});
