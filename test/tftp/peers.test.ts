/**
 * Real peers on loopback: tftp-hpa, atftp and curl download one 300 MB file concurrently, at 512- and
 * 1456-byte blocks (so the 16-bit block counter wraps several times), and the SHA-256 must match.
 * tftp-hpa runs at 512 only: its client (5.2) sends no RFC 2347 options at all (no blksize, tsize or windowsize
 * command or flag), so 512-byte lock-step is all it can ask for; atftp and curl cover the larger blocks.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { mkdtempSync, openSync, writeSync, closeSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startTftp, type TftpServer } from '../../server/tftp/server.ts';
import { silentLogger } from '../../server/log.ts';

const MB = Number(process.env.TFTP_PEER_MB ?? 300);
let dir = '';
let sha = '';
let srv: TftpServer;

const have = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sbtftp-peers-'));
  const fd = openSync(path.join(dir, 'big.bin'), 'w');
  const h = createHash('sha256');
  const chunk = Buffer.allocUnsafe(1024 * 1024);
  for (let i = 0; i < MB; i++) {
    randomFillSync(chunk);
    h.update(chunk);
    writeSync(fd, chunk);
  }
  closeSync(fd);
  sha = h.digest('hex');
  srv = await startTftp({ root: dir, host: '127.0.0.1', port: 0, logger: silentLogger() });
});

after(async () => {
  await srv?.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Runs a client that writes the file to /dev/stdout through a real pipe into sha256sum (a Node stdio pipe is a
 * socket, which /dev/stdout cannot be opened on), so the hashing costs the server's process nothing.
 */
function download(cmd: string, args: string[]): Promise<{ sha: string; code: number | null; stderr: string }> {
  const quoted = [cmd, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((resolve, reject) => {
    const p = spawn('bash', ['-c', `set -o pipefail; ${quoted} | sha256sum`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let out = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => resolve({ sha: out.split(/\s/)[0] ?? '', code, stderr: stderr.slice(-2000) }));
  });
}

test(`tftp-hpa, atftp and curl each download ${MB} MB with block rollover at 512 and 1456 bytes; SHA-256 matches`, { timeout: 280_000 }, async (t) => {
  for (const c of ['tftp', 'atftp', 'curl', 'sha256sum']) {
    if (!have(c)) assert.fail(`${c} is not installed (see .ci/apt/tftp.txt)`);
  }
  const port = String(srv.address().port);
  const url = `tftp://127.0.0.1:${port}/big.bin`;
  const runs: Array<[string, string, string[]]> = [
    ['tftp-hpa 512', 'tftp', ['127.0.0.1', port, '-m', 'binary', '-c', 'get', 'big.bin', '/dev/stdout']],
    ['atftp 1456 ws16', 'atftp', ['--get', '-r', 'big.bin', '-l', '/dev/stdout', '--option', 'blksize 1456', '--option', 'windowsize 16', '127.0.0.1', port]],
    ['atftp 512 ws16', 'atftp', ['--get', '-r', 'big.bin', '-l', '/dev/stdout', '--option', 'blksize 512', '--option', 'windowsize 16', '127.0.0.1', port]],
    ['curl 1456', 'curl', ['-sS', '--tftp-blksize', '1456', '-o', '-', url]],
    ['curl 512', 'curl', ['-sS', '--tftp-blksize', '512', '-o', '-', url]],
  ];
  const t0 = Date.now();
  const results = await Promise.all(runs.map(([, cmd, args]) => download(cmd, args)));
  t.diagnostic(`5 concurrent ${MB} MB downloads in ${((Date.now() - t0) / 1000).toFixed(1)} s; server ${JSON.stringify(srv.stats().transfers)}`);
  runs.forEach(([name], i) => {
    const r = results[i]!;
    assert.equal(r.code, 0, `${name} exited ${r.code}: ${r.stderr}`);
    assert.equal(r.sha, sha, `${name}: SHA-256 differs`);
  });
  assert.equal(srv.stats().transfers.ok, runs.length);
});
