#!/usr/bin/env node
// Launcher: swarmboot needs Node 22.13+ (node:sqlite). When started by an older system Node, re-run
// under the Node 24 that the package brings as a dependency (the npm package `node`), passing
// signals on, so `systemctl reload` (SIGHUP) and stop (SIGTERM) reach the daemon itself.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major > 22 || (major === 22 && minor >= 13)) {
  await import('../dist/cli.js');
} else {
  const here = dirname(fileURLToPath(import.meta.url));
  let bundled;
  try {
    bundled = join(dirname(createRequire(import.meta.url).resolve('node/package.json')), 'bin', 'node');
  } catch {
    bundled = join(here, '..', 'node_modules', 'node', 'bin', 'node');
  }
  if (!existsSync(bundled)) {
    process.stderr.write(`swarmboot needs Node.js 22.13 or newer (this is ${process.version}); run \`npm ci\` in the swarmboot folder to get the bundled Node 24\n`);
    process.exit(1);
  }
  const child = spawn(bundled, [join(here, '..', 'dist', 'cli.js'), ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const sig of ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGUSR1', 'SIGUSR2']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
  child.on('error', (err) => {
    process.stderr.write(`swarmboot: cannot start ${bundled}: ${err.message}\n`);
    process.exit(1);
  });
}
