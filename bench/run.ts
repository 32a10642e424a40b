/**
 * `npm run bench -- NAME`: runs bench/NAME.ts in its own Node process. Every benchmark starts its
 * baseline (atftpd, dnsmasq, nginx, plain HTTP) in the same run and ends with one line per figure:
 *   BENCH <name> <metric>=<value> baseline=<who>:<value> ratio=<value/baseline>
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const available = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.includes('-'))
  .map((f) => f.slice(0, -3))
  .sort();
const name = process.argv[2];
if (!name || !existsSync(join(here, `${name}.ts`)) || name === 'run') {
  process.stderr.write(`usage: npm run bench -- NAME\navailable: ${available.join(', ')}\n`);
  process.exit(name ? 2 : 0);
}
const r = spawnSync(process.execPath, [join(here, `${name}.ts`), ...process.argv.slice(3)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
