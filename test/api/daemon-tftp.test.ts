import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync } from 'node:fs';
import { startDaemon } from '../../server/daemon.ts';
import { silentLogger } from '../../server/log.ts';
import { tempDir, writeFiles, ADMIN_TOKEN } from '../helpers.ts';

test('the daemon serves its TFTP root to a real client (curl), case-insensitively', async () => {
  const { dir, cleanup } = tempDir('sbt-dtftp-');
  writeFiles(dir, {
    'swarmboot.yaml': `server:
  address: 127.0.0.1
  dataDir: data
  http: { host: 127.0.0.1, port: 0 }
  tftp: { enabled: true, host: 127.0.0.1, port: 0, root: tftp }
  dhcp: { enabled: false }
`,
    'tftp/winpe/Boot/BCD': 'bcd-bytes\n'.repeat(1000),
  });
  const d = await startDaemon({ configFile: join(dir, 'swarmboot.yaml'), logger: silentLogger(), ports: { http: 0, tftp: 0 }, watch: false, env: { SWARMBOOT_ADMIN_TOKEN: ADMIN_TOKEN } });
  try {
    const port = d.tftpAddress()!.port;
    const out = join(dir, 'out');
    // Async: the server runs in this process, a synchronous spawn would starve it.
    await promisify(execFile)('curl', ['-s', '--tftp-blksize', '1456', '-o', out, `tftp://127.0.0.1:${port}/WINPE/boot/bcd`], { timeout: 20_000 });
    assert.equal(readFileSync(out, 'utf8'), readFileSync(join(dir, 'tftp/winpe/Boot/BCD'), 'utf8'));
    const metrics = await (await fetch(`http://127.0.0.1:${d.httpAddress().port}/metrics`)).text();
    assert.match(metrics, /swarmboot_tftp_transfers_total\{outcome="ok"\} 1/);
  } finally {
    await d.close();
    cleanup();
  }
});
