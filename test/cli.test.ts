import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { NODE, ROOT, tempDir, ADMIN_TOKEN } from './helpers.ts';
import { createDemo } from '../server/demo.ts';
import { startDaemon } from '../server/daemon.ts';
import { silentLogger } from '../server/log.ts';

const cli = (...args: string[]) => spawnSync(NODE, [join(ROOT, 'cli.ts'), ...args], { encoding: 'utf8', env: { ...process.env, NODE_NO_WARNINGS: '1' } });

test('swarmboot --help lists every command and exits 0; --version prints the package version', () => {
  const help = cli('--help');
  assert.equal(help.status, 0);
  for (const cmd of ['serve --config FILE', 'check-config FILE', 'content scan --config FILE', 'demo', 'CAP_NET_BIND_SERVICE']) assert.ok(help.stdout.includes(cmd), cmd);
  const version = cli('--version');
  assert.equal(version.status, 0);
  assert.equal(version.stdout.trim(), JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
});

test('swarmboot with no command, an unknown command or a missing file says so and exits non-zero', () => {
  assert.equal(cli().status, 1);
  const unknown = cli('frobnicate');
  assert.equal(unknown.status, 64);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  const noFile = cli('serve');
  assert.equal(noFile.status, 64);
  assert.match(noFile.stderr, /--config FILE is required/);
  const missing = cli('check-config', '/nonexistent/swarmboot.yaml');
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /\/nonexistent\/swarmboot\.yaml:1:1: .*file not found/);
});

test('check-config passes the bundled example config', () => {
  const r = cli('check-config', join(ROOT, 'config/example.yaml'));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /OK \(2 files, \d+ hosts/);
});

test('the demo (npm start) builds its content set and the example config then serves a real sequence', async () => {
  const { dir, cleanup } = tempDir('sbt-demo-');
  try {
    // The example config in a copy of the tree, so the demo writes under the temporary folder.
    cpSync(join(ROOT, 'config/example.yaml'), join(dir, 'config/example.yaml'));
    cpSync(join(ROOT, 'config/machines'), join(dir, 'config/machines'), { recursive: true });
    const file = join(dir, 'config/example.yaml');
    await createDemo(file);
    assert.ok(existsSync(join(dir, 'demo/tftp/winpe/Boot/BCD')));
    const d = await startDaemon({ configFile: file, logger: silentLogger(), ports: { http: 0, tftp: 0 }, watch: false, env: { SWARMBOOT_ADMIN_TOKEN: ADMIN_TOKEN } });
    try {
      await d.contentReady();
      const url = `http://127.0.0.1:${d.httpAddress().port}`;
      const r = await fetch(`${url}/api/v1/machines/00:11:22:33:44:55/sequence`);
      const body = (await r.json()) as { sequence: string; steps: Array<{ package?: { sha256: string; url: string } | null }> };
      assert.equal(r.status, 200, JSON.stringify(body));
      const pkgs = body.steps.map((s) => s.package).filter((p) => p);
      assert.ok(pkgs.length > 0);
      for (const p of pkgs) assert.match(p!.sha256, /^[0-9a-f]{64}$/);
      // A demo package downloads and matches its hash.
      const one = pkgs.find((p) => !p!.url.endsWith('/'))!;
      const bytes = Buffer.from(await (await fetch(one.url.replace(/^http:\/\/[^/]+/, url))).arrayBuffer());
      const { createHash } = await import('node:crypto');
      assert.equal(createHash('sha256').update(bytes).digest('hex'), one.sha256);
    } finally {
      await d.close();
    }
  } finally {
    cleanup();
  }
});

test('swarmboot backup copies the state database while the daemon runs', async () => {
  const { dir, cleanup } = tempDir('sbt-backup-');
  const { writeFiles, serverSection, startCli } = await import('./helpers.ts');
  const { DatabaseSync } = await import('node:sqlite');
  writeFiles(dir, { 'swarmboot.yaml': `${serverSection()}sequences:\n  s: { steps: [{ type: command, run: "a" }] }\nmachines:\n  hosts: [{ mac: "00:00:00:00:00:01", sequence: s }]\n` });
  const file = join(dir, 'swarmboot.yaml');
  const d = await startCli(['serve', '--config', file, '--no-watch']);
  try {
    assert.equal((await fetch(`${d.url}/api/v1/machines/00:00:00:00:00:01/sequence`)).status, 200);
    const out = join(dir, 'backup.db');
    const r = cli('backup', '--config', file, out);
    assert.equal(r.status, 0, r.stderr);
    const copy = new DatabaseSync(out, { readOnly: true });
    const row = copy.prepare('SELECT state, sequence FROM machines WHERE mac = ?').get('00:00:00:00:00:01') as { state: string; sequence: string };
    copy.close();
    assert.deepEqual({ ...row }, { state: 'booting', sequence: 's' });
    const again = cli('backup', '--config', file, out);
    assert.equal(again.status, 1, 'an existing file is never overwritten');
    assert.match(again.stderr, /exists/);
  } finally {
    await d.stop();
    cleanup();
  }
});
