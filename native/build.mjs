#!/usr/bin/env node
/**
 * Builds native/udp_batch.c into native/build/udp_batch-<hash>.node with the system C compiler (`$CC`, else cc,
 * gcc, clang) and the headers of the Node that runs this script. The name carries a hash of the source, platform
 * and architecture, so an edited source or another machine never loads a stale binary; N-API is ABI-stable, so one
 * build serves every later Node.
 *
 * Run by `npm install`/`npm ci` (the package's install script) and, when the file is missing, by the TFTP server
 * the first time it starts (server/tftp/batch-send.ts). Without a compiler or headers it says why and exits 0: the
 * server then sends with Node's dgram, one syscall per datagram. `--strict` exits 1 instead.
 * Prints the path of the built (or already present) addon on stdout.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SOURCE = path.join(HERE, 'udp_batch.c');
const strict = process.argv.includes('--strict');

/** The addon's file name for this source on this platform (server/tftp/batch-send.ts computes the same). */
function addonName(src) {
  const h = createHash('sha256').update(src).update(`${process.platform}-${process.arch}`).digest('hex').slice(0, 16);
  return `udp_batch-${h}.node`;
}

function fail(why) {
  process.stderr.write(`native/build.mjs: udp_batch not built (${why}); TFTP sends through Node's dgram instead\n`);
  process.exit(strict ? 1 : 0);
}

if (process.platform !== 'linux') fail(`${process.platform}: UDP GSO and sendmmsg are Linux only`);
const src = readFileSync(SOURCE);
const out = path.join(HERE, 'build', addonName(src));
if (existsSync(out)) {
  process.stdout.write(`${out}\n`);
  process.exit(0);
}

// Node's own headers: an official distribution keeps them beside bin/, the npm `node` package (this project's
// runtime) in its node-<platform>-<arch> dependency, Debian's libnode-dev in /usr. Any Node's serve: N-API is stable.
const prefix = path.resolve(path.dirname(realpathSync(process.execPath)), '..');
const include = [
  path.join(prefix, 'include/node'),
  path.join(prefix, 'node_modules', `node-${process.platform}-${process.arch}`, 'include/node'),
  '/usr/include/node',
  '/usr/local/include/node',
].find((d) => existsSync(path.join(d, 'node_api.h')));
if (!include) fail(`no node_api.h beside ${process.execPath} nor in /usr/include/node`);

const compilers = process.env.CC ? [process.env.CC] : ['cc', 'gcc', 'clang'];
try {
  mkdirSync(path.dirname(out), { recursive: true });
} catch (e) {
  fail(`cannot create ${path.dirname(out)}: ${e.code ?? e.message} (run npm ci, or node native/build.mjs, as its owner)`);
}
const tmp = `${out}.${process.pid}.tmp`;
const errors = [];
for (const cc of compilers) {
  try {
    execFileSync(cc, ['-shared', '-fPIC', '-O2', '-Wall', '-DNODE_GYP_MODULE_NAME=udp_batch', '-DNAPI_VERSION=8', `-I${include}`, '-o', tmp, SOURCE], {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 60_000,
    });
    // Renamed into place whole: a server starting meanwhile sees either no file or a complete one.
    renameSync(tmp, out);
    // Builds of earlier sources are never loaded again (a server that has one open keeps its mapping).
    for (const f of readdirSync(path.dirname(out))) {
      if (/^udp_batch-[0-9a-f]{16}\.node$/.test(f) && f !== path.basename(out)) rmSync(path.join(path.dirname(out), f), { force: true });
    }
    process.stdout.write(`${out}\n`);
    process.exit(0);
  } catch (e) {
    rmSync(tmp, { force: true });
    errors.push(e.code === 'ENOENT' ? null : `${cc}: ${(e.stderr?.toString().trim() || e.message).split('\n').slice(0, 3).join(' ')}`);
  }
}
fail(errors.some((e) => e) ? errors.filter((e) => e).join('; ') : `no C compiler: ${compilers.join(', ')} not found (set CC, or install gcc and libc6-dev)`);
