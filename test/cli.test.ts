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
    const cmdline = readFileSync(`/proc/${d.child.pid}/cmdline`, 'utf8').split('\0');
    assert.ok(cmdline.includes('--max-semi-space-size=4'), `serve re-executes itself with a small young generation, same PID: ${cmdline.join(' ')}`);
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

/** A system Node older than 22.13, as Debian 12 and this project's CI machines have, if there is one. */
function oldSystemNode(): string | undefined {
  for (const p of ['/usr/bin/node', '/usr/local/bin/node']) {
    const r = spawnSync(p, ['-p', 'process.versions.node'], { encoding: 'utf8' });
    if (r.status !== 0) continue;
    const [major, minor] = r.stdout.trim().split('.').map(Number) as [number, number];
    if (major < 22 || (major === 22 && minor < 13)) return p;
  }
  return undefined;
}

test('bin/swarmboot.js under an old system Node runs the daemon on the bundled Node 24 and passes SIGHUP and SIGTERM on', { skip: !oldSystemNode() && 'no system Node older than 22.13 here' }, async () => {
  const { dir, cleanup } = tempDir('sbt-launch-');
  const { writeFiles, serverSection } = await import('./helpers.ts');
  const { spawn } = await import('node:child_process');
  // The launcher runs dist/ (npm ci builds it): build it from the current sources first.
  const built = spawnSync(NODE, [join(ROOT, 'node_modules/.bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { encoding: 'utf8' });
  assert.equal(built.status, 0, built.stdout + built.stderr);
  writeFiles(dir, { 'swarmboot.yaml': `${serverSection()}sequences:\n  a: { steps: [{ type: command, run: a }] }\n  b: { steps: [{ type: command, run: b }] }\nmachines:\n  hosts: [{ mac: "00:00:00:00:00:01", sequence: a }]\n` });
  const file = join(dir, 'swarmboot.yaml');
  const child = spawn(oldSystemNode()!, [join(ROOT, 'bin/swarmboot.js'), 'serve', '--config', file, '--no-watch'], {
    env: { ...process.env, PATH: '/usr/bin:/bin', SWARMBOOT_ADMIN_TOKEN: ADMIN_TOKEN },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  const until = async (re: RegExp) => {
    for (let i = 0; i < 300 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(out, re);
  };
  try {
    await until(/"listen":"127\.0\.0\.1:(\d+)"/);
    const port = /"listen":"127\.0\.0\.1:(\d+)"/.exec(out)![1];
    const seq = async () => ((await (await fetch(`http://127.0.0.1:${port}/api/v1/machines/00:00:00:00:00:01/sequence`)).json()) as { sequence: string }).sequence;
    assert.equal(await seq(), 'a');
    writeFiles(dir, { 'swarmboot.yaml': `${serverSection()}sequences:\n  a: { steps: [{ type: command, run: a }] }\n  b: { steps: [{ type: command, run: b }] }\nmachines:\n  hosts: [{ mac: "00:00:00:00:00:01", sequence: b }]\n` });
    child.kill('SIGHUP'); // what `systemctl reload` sends to the launcher
    await until(/"result":"applied".*SIGHUP reload/);
    assert.equal(await seq(), 'b', 'the daemon behind the launcher reloaded');
    child.kill('SIGTERM');
    assert.equal(await exited, 0, 'SIGTERM stops the daemon cleanly');
  } finally {
    child.kill('SIGKILL');
    cleanup();
  }
});
