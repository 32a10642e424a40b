/**
 * 1% random packet loss in both directions between two network namespaces this test creates
 * (`sbtftp-srv-<pid>`, `sbtftp-cli-<pid>`, joined by a veth pair). The server runs in one, real clients in
 * the other; every file must still arrive byte-identical, and the server must show it resent.
 *
 * Loss comes from an nftables rule dropping 1% of incoming UDP at random in each namespace (sparing ACK 0,
 * which atftp's client cannot afford to lose); without nftables, from `tc qdisc … netem loss 1%`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync, rmSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SRV = `sbtftp-srv-${process.pid}`;
const CLI = `sbtftp-cli-${process.pid}`;
const SRV_IP = '10.231.0.1';
const CLI_IP = '10.231.0.2';
const SERVE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'serve.ts');

let dir = '';
const children: ChildProcess[] = [];
const files: Record<string, string> = {};
let lossMethod = '';

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

function must(cmd: string, args: string[]): void {
  const r = run(cmd, args);
  if (!r.ok) throw new Error(`${cmd} ${args.join(' ')}: ${r.out}`);
}

before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sbtftp-loss-'));
  chmodSync(dir, 0o755);
  for (const [name, size] of [
    ['ws.bin', 16 * 1024 * 1024],
    ['lock.bin', 6 * 1024 * 1024],
    ['small.bin', 3 * 1024 * 1024],
  ] as const) {
    const data = randomBytes(size);
    writeFileSync(path.join(dir, name), data);
    files[name] = createHash('sha256').update(data).digest('hex');
  }
  must('ip', ['netns', 'add', SRV]);
  must('ip', ['netns', 'add', CLI]);
  for (const ns of [SRV, CLI]) must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  must('ip', ['-n', SRV, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', CLI]);
  must('ip', ['-n', SRV, 'addr', 'add', `${SRV_IP}/24`, 'dev', 'eth0']);
  must('ip', ['-n', CLI, 'addr', 'add', `${CLI_IP}/24`, 'dev', 'eth0']);
  for (const ns of [SRV, CLI]) must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  // The server may send a window as one UDP GSO buffer: cut it into datagrams before the veth, as a NIC without
  // segmentation offload would, so that the loss rule below meets single datagrams, not whole windows.
  must('ip', ['netns', 'exec', SRV, 'ethtool', '-K', 'eth0', 'tx-udp-segmentation', 'off']);
  // nftables first: its rule can spare the one packet a real client cannot lose. atftp's client aborts
  // on a second OACK ("tftp: unexpected OACK"), and a second OACK is what any server (atftpd's too)
  // sends when ACK 0 is lost. Everything else takes 1% loss (these files are too small to roll over, so
  // no other ACK 0 is spared). Dropped on input, so a sender never sees an error: it looks like loss on the wire.
  const rules = `table inet sbtftp_loss {
  chain in {
    type filter hook input priority 0; policy accept;
    meta l4proto udp @th,64,32 0x00040000 accept
    meta l4proto udp numgen random mod 100 < 1 counter drop
  }
}
`;
  const nft = [SRV, CLI].map((ns) => spawnSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: rules, encoding: 'utf8' }));
  if (nft.every((r) => r.status === 0)) lossMethod = 'nftables numgen random 1% on input (ACK 0 spared)';
  else {
    // Without nftables: netem on both ends (a lost ACK 0 then fails atftp's client about 1 run in 100).
    for (const ns of [SRV, CLI]) run('ip', ['netns', 'exec', ns, 'nft', 'delete', 'table', 'inet', 'sbtftp_loss']);
    const netem = [SRV, CLI].every((ns) => run('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', 'root', 'netem', 'loss', '1%']).ok);
    if (!netem) throw new Error(`neither nftables nor tc netem can drop packets here: ${nft.map((r) => r.stderr).join(' ')}`);
    lossMethod = 'tc netem loss 1%';
  }
});

after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  run('ip', ['netns', 'del', CLI]);
  run('ip', ['netns', 'del', SRV]);
  rmSync(dir, { recursive: true, force: true });
});

function download(cmd: string, args: string[]): Promise<{ sha: string; code: number | null; stderr: string }> {
  const quoted = ['ip', 'netns', 'exec', CLI, cmd, ...args].map((a) => `'${a}'`).join(' ');
  return new Promise((resolve, reject) => {
    const p = spawn('bash', ['-c', `set -o pipefail; ${quoted} | sha256sum`], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(p);
    let stderr = '';
    let out = '';
    p.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => resolve({ sha: out.split(/\s/)[0] ?? '', code, stderr }));
  });
}

function dropped(ns: string): number {
  const out = run('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'inet', 'sbtftp_loss']).out;
  return Number(out.match(/packets (\d+)/)?.[1] ?? 0);
}

test('1% loss both ways: atftp (ws16), curl and tftp-hpa (lock-step) still get byte-identical files', { timeout: 240_000 }, async (t) => {
  const server = spawn('ip', ['netns', 'exec', SRV, process.execPath, SERVE, dir, SRV_IP, '69'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(server);
  let out = '';
  let err = '';
  server.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  server.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const t0 = Date.now();
  while (!/READY/.test(out)) {
    if (server.exitCode !== null || Date.now() - t0 > 15000) assert.fail(`server did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const runs: Array<[string, string, string, string[]]> = [
    ['atftp blksize 1456 windowsize 16', 'ws.bin', 'atftp', ['--get', '-r', 'ws.bin', '-l', '/dev/stdout', '--option', 'blksize 1456', '--option', 'windowsize 16', SRV_IP, '69']],
    ['curl blksize 1456', 'lock.bin', 'curl', ['-sS', '--tftp-blksize', '1456', '-o', '-', `tftp://${SRV_IP}/lock.bin`]],
    ['tftp-hpa 512', 'small.bin', 'tftp', [SRV_IP, '69', '-m', 'binary', '-c', 'get', 'small.bin', '/dev/stdout']],
  ];
  const start = Date.now();
  const results = await Promise.all(runs.map(([, , cmd, args]) => download(cmd, args)));
  const seconds = (Date.now() - start) / 1000;
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  const stats = JSON.parse(out.match(/STATS (.*)/)?.[1] ?? '{}') as { transfers?: Record<string, number>; retransmits?: number };
  t.diagnostic(
    `${lossMethod}: ${seconds.toFixed(1)} s; dropped srv-in ${dropped(SRV)} cli-in ${dropped(CLI)}; server ${JSON.stringify(stats.transfers)}, ${stats.retransmits} DATA resent`,
  );
  runs.forEach(([name, file], i) => {
    const r = results[i]!;
    assert.equal(r.code, 0, `${name} exited ${r.code}: ${r.stderr}`);
    assert.equal(r.sha, files[file], `${name}: file differs after loss`);
  });
  assert.ok((stats.retransmits ?? 0) > 0, 'no retransmission under loss?');
  if (lossMethod.startsWith('nftables')) {
    assert.ok(dropped(SRV) > 10 && dropped(CLI) > 10, 'the loss rules dropped (almost) nothing: the test proved nothing');
  }
});
