/**
 * Shared by the TFTP tests: a server on an ephemeral loopback port for the length of a callback, and curl as the
 * real client that hashes what it downloads.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { startTftp, type TftpOptions, type TftpServer } from '../../server/tftp/server.ts';
import { silentLogger } from '../../server/log.ts';

/** Runs `fn` with a server on `root` (127.0.0.1, port 0, silent; `extra` on top) and closes it afterwards. */
export async function withTftp(root: string, extra: Partial<TftpOptions>, fn: (s: TftpServer, port: number) => Promise<void>): Promise<void> {
  const s = await startTftp({ root, host: '127.0.0.1', port: 0, logger: silentLogger(), ...extra });
  try {
    await fn(s, s.address().port);
  } finally {
    await s.close();
  }
}

/** curl downloads `url` (tftp://…) at blksize 1456, lock-step; resolves with the SHA-256 of what arrived. */
export function curlSha256(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('curl', ['-sS', '-g', '--tftp-blksize', '1456', '-o', '-', url]);
    const h = createHash('sha256');
    let err = '';
    p.stdout.on('data', (d: Buffer) => h.update(d));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(h.digest('hex')) : reject(new Error(`curl exited ${code}: ${err}`))));
  });
}
