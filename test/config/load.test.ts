import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ConfigError, loadConfig, loadConfigText } from '../../config/load.ts';
import { formatIssue } from '../../config/yaml-source.ts';
import { readFileSync } from 'node:fs';
import { tempDir, writeFiles, ROOT, NODE } from '../helpers.ts';

function issues(text: string, file = '/cfg/swarmboot.yaml'): string[] {
  try {
    loadConfigText(file, text);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    return e.issues.map(formatIssue);
  }
  assert.fail('config was accepted');
}

const BASE = `
packages:
  win11: { kind: wim, path: win11.wim }
  tools: { kind: folder, path: tools }
sequences:
  s1:
    variables: { locale: en-US }
    steps:
      - type: apply-image
        package: win11
      - type: command
        run: "echo {{ locale }} {{ hostname }}"
`;

test('the bundled example config loads', () => {
  const cfg = loadConfig(join(ROOT, 'config/example.yaml'));
  assert.ok(cfg.hosts.length >= 4);
  assert.ok(cfg.files.length >= 2, 'includes are read');
  assert.equal(cfg.index.byMac.get('00:11:22:33:44:56')?.hostname, 'fin-ws-002', 'hyphen MACs are normalised');
  assert.equal(cfg.index.byMac.get('aa:bb:cc:00:00:02')?.hostname, 'class-02', 'bare-hex MACs from includes are normalised');
  assert.ok(Object.isFrozen(cfg), 'snapshot is immutable');
});

test('bad YAML is reported with its line and column', () => {
  const out = issues('server:\n  address: 10.0.0.1\n  http: [1\n  tftp: {}\n');
  assert.ok(out.length >= 1);
  assert.match(out[0]!, /^\/cfg\/swarmboot\.yaml:[34]:\d+: YAML syntax/);
  const tab = issues('server:\n\taddress: 10.0.0.1\n');
  assert.match(tab[0]!, /^\/cfg\/swarmboot\.yaml:2:1: YAML syntax: .*[Tt]ab/);
});

test('duplicate YAML keys are errors', () => {
  const out = issues('server:\n  address: 10.0.0.1\n  address: 10.0.0.2\n');
  assert.equal(out.length, 1);
  assert.match(out[0]!, /:3:3: server\.address: YAML syntax: map keys must be unique; "address" is already set at line 2/);
});

test('an unknown key is an error at the key, with a suggestion', () => {
  const out = issues('server:\n  adress: 10.0.0.1\n');
  assert.deepEqual(out.length, 1);
  assert.match(out[0]!, /^\/cfg\/swarmboot\.yaml:2:3: server\.adress: unknown key "adress" \(did you mean "address"\?\)/);
});

test('a wrong type names the key and what was expected', () => {
  const out = issues('server:\n  http:\n    port: "eighty"\n');
  assert.match(out[0]!, /:3:11: server\.http\.port: must be a whole number/);
  const out2 = issues('server:\n  address: 10.0.0.300\n');
  assert.match(out2[0]!, /:2:12: server\.address: must be a valid ipv4 address/);
});

test('tftp.spinUs: 50 by default, 0 allowed, past 1000 an error at the key', () => {
  assert.equal(loadConfigText('/cfg/swarmboot.yaml', BASE).server.tftp.spinUs, 50);
  assert.equal(loadConfigText('/cfg/swarmboot.yaml', `server:\n  tftp:\n    spinUs: 0\n${BASE}`).server.tftp.spinUs, 0);
  const out = issues(`server:\n  tftp:\n    spinUs: 5000\n${BASE}`);
  assert.match(out[0]!, /:3:13: server\.tftp\.spinUs: /);
});

test('every schema problem is reported, not just the first', () => {
  const out = issues('server:\n  adress: x\n  http: { port: -1 }\nbogus: 1\n');
  assert.equal(out.length, 3, out.join('\n'));
  assert.deepEqual(out.map((l) => l.split(':')[1]), ['2', '3', '4']);
});

test('an unknown step type lists the allowed types; a bad field of a known type is precise', () => {
  const out = issues(`${BASE}      - type: comand\n        run: x\n      - type: reboot\n        into: disk\n`);
  assert.equal(out.length, 2, out.join('\n'));
  assert.match(out[0]!, /sequences\.s1\.steps\[2\]\.type: unknown type; expected one of: apply-image, drivers, install-package, command, reboot/);
  assert.match(out[1]!, /sequences\.s1\.steps\[3\]\.into: must be one of: "local", "pxe"/);
});

test('a step naming a package that does not exist is an error at that key', () => {
  const out = issues(BASE.replace('package: win11', 'package: win12'));
  assert.equal(out.length, 1);
  assert.match(out[0]!, /:10:18: sequences\.s1\.steps\[0\]\.package: package "win12" does not exist; defined: win11, tools/);
});

test('a step of the wrong package kind is an error', () => {
  const out = issues(BASE.replace('package: win11', 'package: tools'));
  assert.match(out[0]!, /apply-image needs a package of kind wim; "tools" is folder/);
});

test('a step naming an undefined variable is an error', () => {
  const out = issues(BASE.replace('{{ locale }}', '{{ locale }} {{ domian }}'));
  assert.equal(out.length, 1);
  assert.match(out[0]!, /sequences\.s1\.steps\[1\]\.run: variable "domian" is not defined/);
});

test('a variable required by a sequence must be set for every machine assigned it', () => {
  const text = `${BASE.replace('{ locale: en-US }', '{ locale: en-US, ou: null }')}machines:
  hosts:
    - mac: 00:00:00:00:00:01
      sequence: s1
    - mac: 00:00:00:00:00:02
      sequence: s1
      variables: { ou: x }
`;
  const out = issues(text);
  assert.equal(out.length, 1, out.join('\n'));
  assert.match(out[0]!, /machines\.hosts\[0\]\.variables: sequence "s1" requires variable "ou"/);
});

test('a MAC listed twice, in any spelling, is an error naming both places', () => {
  const text = `${BASE}machines:
  hosts:
    - mac: 00:11:22:33:44:55
      sequence: s1
    - mac: 00-11-22-33-44-55
      sequence: s1
`;
  const out = issues(text);
  assert.equal(out.length, 1);
  assert.match(out[0]!, /:17:12: machines\.hosts\[1\]\.mac: MAC 00:11:22:33:44:55 is listed twice; first at \/cfg\/swarmboot\.yaml:15:7/);
});

test('every problem is reported in one run: schema errors do not hide reference and duplicate errors', () => {
  const out = issues(`${BASE}  s2:
    profle: winpe
    steps: [{ type: command, run: x }]
  s3:
    steps:
      - type: apply-image
        package: win12
      - type: command
        run: "{{ nowhere }}"
machines:
  hosts:
    - mac: zz:11:22:33:44:55
      sequence: s1
    - mac: 00:11:22:33:44:66
      sequence: s2
    - mac: 00-11-22-33-44-66
      sequence: s3
    - mac: 00:11:22:33:44:77
      sequence: s1
      hostnme: x
    - mac: 00:11:22:33:44:77
      sequence: s1
`);
  const want = [
    /:14:5: sequences\.s2\.profle: unknown key "profle"/,
    /:19:18: sequences\.s3\.steps\[0\]\.package: package "win12" does not exist/,
    /:21:14: sequences\.s3\.steps\[1\]\.run: variable "nowhere" is not defined/,
    /:24:12: machines\.hosts\[0\]\.mac: must be a MAC address/,
    /:28:12: machines\.hosts\[2\]\.mac: MAC 00:11:22:33:44:66 is listed twice/,
    /:32:7: machines\.hosts\[3\]\.hostnme: unknown key "hostnme"/,
    /:33:12: machines\.hosts\[4\]\.mac: MAC 00:11:22:33:44:77 is listed twice/,
  ];
  assert.equal(out.length, want.length, out.join('\n'));
  want.forEach((re, i) => assert.match(out[i]!, re));
});

test('a reference to something whose own definition is invalid is not reported twice', () => {
  const out = issues(`
packages:
  win11: { kind: wim, path: 7 }
sequences:
  s1:
    steps: [{ type: apply-image, package: win11 }]
machines:
  groups:
    lab: { macPrefixes: [52:54:00], sequence: s1, colour: red }
  hosts:
    - { mac: 52:54:00:00:00:01, group: lab }
    - { mac: 52:54:00:00:00:02, group: nolab }
`);
  assert.equal(out.length, 3, out.join('\n'));
  assert.match(out[0]!, /packages\.win11\.path: must be a string/);
  assert.match(out[1]!, /machines\.groups\.lab\.colour: unknown key/);
  assert.match(out[2]!, /machines\.hosts\[1\]\.group: group "nolab" does not exist/);
});

test('duplicates across included files, and errors inside an include, name the include file', () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFiles(dir, {
      'main.yaml': `${BASE}machines:\n  hosts:\n    - mac: 00:11:22:33:44:55\n      sequence: s1\n  include: [more/*.yaml]\n`,
      'more/a.yaml': '- mac: "001122334455"\n  sequence: s1\n',
      'more/b.yaml': '- mac: 00:11:22:33:44:66\n  sequnce: s1\n',
    });
    let err: ConfigError | undefined;
    try {
      loadConfig(join(dir, 'main.yaml'));
    } catch (e) {
      err = e as ConfigError;
    }
    assert.ok(err instanceof ConfigError);
    const lines = err.issues.map(formatIssue);
    assert.equal(lines.length, 2, lines.join('\n'));
    assert.match(lines[0]!, /more\/a\.yaml:1:8: hosts\[0\]\.mac: MAC 00:11:22:33:44:55 is listed twice/);
    assert.match(lines[1]!, /more\/b\.yaml:2:3: \[0\]\.sequnce: unknown key "sequnce" \(did you mean "sequence"\?\)/);

    writeFiles(dir, { 'more/b.yaml': '- mac: 00:11:22:33:44:66\n  sequence: s1\n' });
    const err2 = (() => {
      try {
        loadConfig(join(dir, 'main.yaml'));
      } catch (e) {
        return e as ConfigError;
      }
    })();
    assert.ok(err2);
    assert.match(formatIssue(err2.issues[0]!), /more\/a\.yaml:1:8: hosts\[0\]\.mac: MAC 00:11:22:33:44:55 is listed twice; first at .*main\.yaml:/);
  } finally {
    cleanup();
  }
});

test('a MAC that YAML reads as a number gets a hint to quote it', () => {
  const out = issues(`${BASE}machines:\n  hosts:\n    - mac: 001122334455\n      sequence: s1\n`);
  assert.match(out[0]!, /machines\.hosts\[0\]\.mac: must be a MAC address .*\(YAML read this as a number: put it in quotes\)/);
});

test('dangling references from hosts, groups, default and menu are errors', () => {
  const text = `${BASE}boot:
  menu:
    entries:
      - { label: x, profile: nothere }
machines:
  default: { action: sequence, sequence: s9 }
  groups:
    g1: { sequence: s8, macPrefixes: ["00:1a"] }
    g2: { macPrefixes: ["00-1A"] }
  hosts:
    - mac: 00:00:00:00:00:01
      group: g3
    - uuid: 4C4C4544-0042-3510-8052-B4C04F4E4D32
      sequence: s7
    - hostname: nobody
`;
  const out = issues(text).join('\n');
  assert.match(out, /boot\.menu\.entries\[0\]\.profile: boot profile "nothere" does not exist/);
  assert.match(out, /machines\.default\.sequence: sequence "s9" does not exist/);
  assert.match(out, /machines\.groups\.g1\.sequence: sequence "s8" does not exist/);
  assert.match(out, /machines\.groups\.g2\.macPrefixes\[0\]: MAC prefix 00:1a is already claimed by group "g1"/);
  assert.match(out, /machines\.hosts\[0\]\.group: group "g3" does not exist/);
  assert.match(out, /machines\.hosts\[1\]\.sequence: sequence "s7" does not exist/);
  assert.match(out, /machines\.hosts\[2\]: a host needs a mac or a uuid/);
});

test('DHCP pools and reservations are checked: ranges inside subnets, no address reserved twice', () => {
  const out = issues(`server:
  dhcp:
    mode: full
    pools:
      - { subnet: 10.0.0.0/24, rangeStart: 10.0.0.200, rangeEnd: 10.0.0.100, router: 10.0.1.1 }
      - { subnet: 10.1.0.0/24, rangeStart: 10.2.0.1, rangeEnd: 10.1.0.9 }
machines:
  hosts:
    - { mac: "00:00:00:00:00:01", ip: 10.0.0.5 }
    - { mac: "00:00:00:00:00:02", ip: 10.0.0.5 }
    - { uuid: 11111111-2222-3333-4444-555555555555, ip: 10.9.0.5 }
`).join('\n');
  assert.match(out, /server\.dhcp\.pools\[0\]\.rangeEnd: range end 10\.0\.0\.100 is before its start 10\.0\.0\.200/);
  assert.match(out, /server\.dhcp\.pools\[0\]\.router: router 10\.0\.1\.1 is outside 10\.0\.0\.0\/24/);
  assert.match(out, /server\.dhcp\.pools\[1\]\.rangeStart: 10\.2\.0\.1 is outside 10\.1\.0\.0\/24/);
  assert.match(out, /machines\.hosts\[1\]\.ip: address 10\.0\.0\.5 is reserved twice/);
  assert.match(out, /machines\.hosts\[2\]\.ip: an address reservation needs the host's mac/);
  assert.match(out, /machines\.hosts\[2\]\.ip: address 10\.9\.0\.5 is in no subnet of server\.dhcp\.pools/);
  assert.match(issues('server: { dhcp: { mode: full } }\n')[0]!, /server\.dhcp\.mode: full DHCP mode needs at least one entry/);
});

test('bandwidth limits are written as rates; nonsense and zero are refused', async () => {
  const { parseRate } = await import('../../config/rate.ts');
  assert.equal(parseRate('50Mbit'), 6_250_000);
  assert.equal(parseRate('100 Mbit/s'), 12_500_000);
  assert.equal(parseRate('12.5MB/s'), 12_500_000);
  assert.equal(parseRate(4096), 4096);
  const cfg = loadConfigText('/x.yaml', 'server: { http: { limits: { perClient: 8Mbit, subnets: [{ cidr: 10.1.0.0/16, rate: 2MB/s }] } } }\n');
  assert.deepEqual(cfg.server.http.limits, { perClientBytesPerSec: 1_000_000, subnets: [{ cidr: '10.1.0.0/16', bytesPerSec: 2_000_000 }] });
  assert.match(issues('server: { http: { limits: { perClient: fast } } }\n')[0]!, /server\.http\.limits\.perClient: must be a rate such as 50Mbit/);
  assert.match(issues('server: { http: { limits: { perClient: 0Mbit } } }\n')[0]!, /server\.http\.limits\.perClient: must be a rate above zero/);
});

test('check-config prints every problem with its location and exits non-zero', () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFiles(dir, { 'bad.yaml': 'server:\n  adress: 1\n  http: { prot: 80 }\n' });
    const r = spawnSync(NODE, [join(ROOT, 'cli.ts'), 'check-config', join(dir, 'bad.yaml')], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /bad\.yaml:2:3: server\.adress: unknown key/);
    assert.match(r.stderr, /bad\.yaml:3:11: server\.http\.prot: unknown key "prot" \(did you mean "port"\?\)/);
    const ok = spawnSync(NODE, [join(ROOT, 'cli.ts'), 'check-config', join(ROOT, 'config/example.yaml')], { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /OK \(2 files, 6 hosts/);
  } finally {
    cleanup();
  }
});

test('check-config reads WIM headers: an image the WIM lacks is an error at the step; content scan lists images', async () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFiles(dir, {
      'src/a.txt': 'a\n',
      'swarmboot.yaml': `server: { dataDir: data, contentDir: content }
packages:
  win: { kind: wim, path: win.wim }
  gone: { kind: file, path: nothere.bin }
sequences:
  s:
    steps:
      - type: apply-image
        package: win
        image: "Windows Server"
`,
    });
    const { execFileSync } = await import('node:child_process');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'content'));
    execFileSync('wimcapture', [join(dir, 'src'), join(dir, 'content/win.wim'), 'Windows Pro', '--compress=none'], { stdio: 'ignore' });
    const r = spawnSync(NODE, [join(ROOT, 'cli.ts'), 'check-config', join(dir, 'swarmboot.yaml')], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /swarmboot\.yaml:10:16: sequences\.s\.steps\[0\]\.image: package "win" has no image named "Windows Server"; it has 1 "Windows Pro"/);

    writeFiles(dir, { 'swarmboot.yaml': readFileSync(join(dir, 'swarmboot.yaml'), 'utf8').replace('"Windows Server"', '"windows  pro"') });
    const ok = spawnSync(NODE, [join(ROOT, 'cli.ts'), 'check-config', join(dir, 'swarmboot.yaml')], { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);

    const scan = spawnSync(NODE, [join(ROOT, 'cli.ts'), 'content', 'scan', '--config', join(dir, 'swarmboot.yaml')], { encoding: 'utf8' });
    assert.equal(scan.status, 1, 'a package that cannot be served fails the scan');
    assert.match(scan.stdout, /^win\s+wim\s+1 files .* sha256:[0-9a-f]{64}\n\s+image 1: Windows Pro/m);
    assert.match(scan.stdout, /^gone\s+UNAVAILABLE: .*nothere\.bin/m);
    assert.match(scan.stderr, /hash/, 'progress is shown');
  } finally {
    cleanup();
  }
});
