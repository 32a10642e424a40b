import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFileSync, renameSync } from 'node:fs';
import { tempDir, writeFiles, daemonFor, serverSection, startCli, ADMIN_TOKEN } from '../helpers.ts';
import { startDaemon } from '../../server/daemon.ts';
import { silentLogger } from '../../server/log.ts';

const seqs = `
sequences:
  a: { steps: [{ type: command, run: "a" }] }
  b: { steps: [{ type: command, run: "b" }] }
`;
const withHost = (seq: string) => `${serverSection()}${seqs}machines:\n  hosts:\n    - mac: 00:00:00:00:00:01\n      sequence: ${seq}\n`;

async function until(fn: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const start = Date.now();
  while (!(await fn())) {
    if (Date.now() - start > ms) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a changed file is reloaded; an invalid one is refused and the last good config keeps serving', async () => {
  const { dir, cleanup } = tempDir('sbt-reload-');
  const file = join(dir, 'swarmboot.yaml');
  writeFiles(dir, { 'swarmboot.yaml': withHost('a') });
  const d = await startDaemon({ configFile: file, logger: silentLogger(), ports: { http: 0 }, watch: true, env: { SWARMBOOT_ADMIN_TOKEN: ADMIN_TOKEN } });
  const url = `http://127.0.0.1:${d.httpAddress().port}`;
  const seqOf = async () => (await (await fetch(`${url}/api/v1/machines/00:00:00:00:00:01/sequence`)).json()).sequence;
  try {
    assert.equal(await seqOf(), 'a');
    // Editors save by writing a new file and renaming it over the old one.
    writeFileSync(`${file}.tmp`, withHost('b'));
    renameSync(`${file}.tmp`, file);
    await until(() => d.config().hosts[0]?.sequence === 'b');
    assert.equal(await seqOf(), 'b');

    const good = d.config();
    writeFileSync(file, withHost('b').replace('sequence: b', 'sequense: b'));
    await until(async () => /swarmboot_config_reloads_total\{result="refused"\} [1-9]/.test(await (await fetch(`${url}/metrics`)).text()));
    assert.equal(d.config(), good, 'the snapshot object is unchanged');
    const health = await (await fetch(`${url}/healthz`)).json();
    assert.equal(health.status, 'degraded', 'health says an older config is serving');
    assert.match(await (await fetch(`${url}/metrics`)).text(), /swarmboot_config_last_reload_ok 0/);
    assert.match(health.config.lastReloadError[0], /swarmboot\.yaml:\d+:\d+: machines\.hosts\[0\]\.sequense: unknown key/);
    assert.equal(await seqOf(), 'b', 'still served from the last good config');

    writeFileSync(file, withHost('a'));
    await until(() => d.config().hosts[0]?.sequence === 'a');
    const healthy = await (await fetch(`${url}/healthz`)).json();
    assert.equal(healthy.config.lastReloadError, null);
    assert.equal(healthy.status, 'ok');
  } finally {
    await d.close();
    cleanup();
  }
});

test('SIGHUP reloads the config in the real daemon; a bad file on SIGHUP is refused with its location', async () => {
  const { dir, cleanup } = tempDir('sbt-hup-');
  const file = join(dir, 'swarmboot.yaml');
  writeFiles(dir, { 'swarmboot.yaml': withHost('a') });
  const cli = await startCli(['serve', '--config', file, '--no-watch']);
  const seqOf = async () => (await (await fetch(`${cli.url}/api/v1/machines/00:00:00:00:00:01/sequence`)).json()).sequence;
  try {
    assert.equal(await seqOf(), 'a');
    writeFileSync(file, withHost('b'));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await seqOf(), 'a', '--no-watch: nothing changes before SIGHUP');
    cli.child.kill('SIGHUP');
    await cli.waitForLog(/"result":"applied".*SIGHUP reload/);
    assert.equal(await seqOf(), 'b');
    writeFileSync(file, withHost('b').replace('mac: 00:00:00:00:00:01', 'mac: 00:00:00:00:00:0g'));
    cli.child.kill('SIGHUP');
    await cli.waitForLog(/"result":"refused".*SIGHUP reload/);
    assert.match(cli.logs(), /swarmboot\.yaml:\d+:\d+: machines\.hosts\[0\]\.mac: must be a MAC address/);
    assert.equal(await seqOf(), 'b');
  } finally {
    assert.equal(await cli.stop(), 0, 'SIGTERM shuts down cleanly');
    cleanup();
  }
});

test('daemonFor helper keeps working with watch off', async () => {
  const { dir, cleanup } = tempDir('sbt-reload2-');
  writeFiles(dir, { 'swarmboot.yaml': withHost('a') });
  const d = await daemonFor(join(dir, 'swarmboot.yaml'));
  try {
    writeFiles(dir, { 'swarmboot.yaml': withHost('b') });
    assert.equal((await d.reload('test')).result, 'applied');
    assert.equal((await d.reload('test')).result, 'unchanged');
  } finally {
    await d.close();
    cleanup();
  }
});

test('a change to an included host file is reloaded too', async () => {
  const { dir, cleanup } = tempDir('sbt-reload-inc-');
  const file = join(dir, 'swarmboot.yaml');
  const hosts = (seq: string) => `- mac: 00:00:00:00:00:02\n  sequence: ${seq}\n`;
  writeFiles(dir, { 'swarmboot.yaml': `${serverSection()}${seqs}machines:\n  include: [lab/*.yaml]\n`, 'lab/hosts.yaml': hosts('a') });
  const d = await startDaemon({ configFile: file, logger: silentLogger(), ports: { http: 0 }, watch: true, env: { SWARMBOOT_ADMIN_TOKEN: ADMIN_TOKEN } });
  try {
    assert.equal(d.config().hosts[0]?.sequence, 'a');
    writeFileSync(join(dir, 'lab/hosts.yaml'), hosts('b'));
    await until(() => d.config().hosts[0]?.sequence === 'b');
  } finally {
    await d.close();
    cleanup();
  }
});
