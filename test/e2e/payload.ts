/**
 * The Linux payload the e2e VMs boot: Debian's kernel (downloaded with `apt-get download`, unpacked
 * with `dpkg -x`, never installed) and a small busybox initramfs that fetches its task sequence
 * from swarmboot, prints it on the console between markers, reports step events and powers off.
 *
 * Console protocol (the tests grep for these lines):
 *   SWARMBOOT-IP <if> <ip>                    lease from udhcpc
 *   SWARMBOOT-MAC <mac>
 *   SWARMBOOT-SEQUENCE-STATUS <status line>   e.g. "HTTP/1.1 200 OK", or wget's error text
 *   SWARMBOOT-SEQUENCE-BEGIN / -END           the raw JSON body (200 only) between them
 *   SWARMBOOT-SEQUENCE-ERROR-BODY <json>      the body of a refused (4xx/5xx) sequence request
 *   SWARMBOOT-STEPS <n>
 *   SWARMBOOT-EVENT <type> <step> <ok|fail>   one per POST to /events
 *   SWARMBOOT-DONE                            just before `poweroff -f`
 *   SWARMBOOT-ERROR <text>                    something went wrong before the sequence
 * Kernel command line: `swarmboot=<base URL>` (required), `swarmboot.steps=<n>` (overrides the
 * step count parsed from the JSON).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';

const run = promisify(execFile);

/** Modules the initramfs loads, in this order after their dependencies: the NICs QEMU gives the VMs. */
export const NIC_MODULES = ['e1000', 'virtio_pci', 'virtio_net'];

export interface Payload {
  kernel: string;
  initrd: string;
  /** e.g. linux-image-6.1.0-56-amd64 */
  kernelPackage: string;
  /** Debian version of kernelPackage, e.g. 6.1.192-2 */
  kernelVersion: string;
  /** Module files in the initramfs, in load order. */
  modules: string[];
}

/** The `linux-image-<abi>-amd64` package the `linux-image-amd64` metapackage points at, and its version. */
export async function kernelPackage(): Promise<{ name: string; version: string }> {
  const { stdout } = await run('apt-cache', ['depends', 'linux-image-amd64']);
  const name = /Depends:\s*(linux-image-\d[^\s]*-amd64)\b/.exec(stdout)?.[1];
  if (!name) throw new Error('apt-cache knows no linux-image-amd64 dependency: run `apt-get update` first');
  const show = await run('apt-cache', ['show', '--no-all-versions', name]);
  const version = /^Version:\s*(\S+)/m.exec(show.stdout)?.[1];
  if (!version) throw new Error(`apt-cache show ${name} gave no Version`);
  return { name, version };
}

/** $SWARMBOOT_E2E_CACHE, or a folder under the system temp dir that survives between runs. */
export function defaultCacheDir(): string {
  return process.env.SWARMBOOT_E2E_CACHE ?? path.join(tmpdir(), 'swarmboot-e2e-cache');
}

/** Build (or reuse from cacheDir) the kernel and initramfs; keyed by kernel, busybox and script versions. */
export async function buildPayload(cacheDir: string, log: (msg: string) => void = () => {}): Promise<Payload> {
  const kpkg = await kernelPackage();
  const busybox = '/bin/busybox';
  const bbVersion = (await run('dpkg-query', ['-W', '-f=${Version}', 'busybox-static'])).stdout.trim();
  if (!bbVersion || !existsSync(busybox)) throw new Error('busybox-static is not installed (see .ci/apt/e2e.txt)');
  const scriptsHash = createHash('sha256').update(INIT_SCRIPT).update(UDHCPC_SCRIPT).update(STEP_COUNT_AWK).update(NIC_MODULES.join(',')).update(FORMAT).digest('hex').slice(0, 12);
  const key = `${kpkg.name}_${kpkg.version}_busybox-${bbVersion}_${scriptsHash}`.replace(/[^A-Za-z0-9._+-]/g, '_');
  const dir = path.join(cacheDir, key);
  const manifest = path.join(dir, 'payload.json');
  if (existsSync(manifest)) {
    const p = JSON.parse(readFileSync(manifest, 'utf8')) as Omit<Payload, 'kernel' | 'initrd'>;
    return { ...p, kernel: path.join(dir, 'vmlinuz'), initrd: path.join(dir, 'initrd.gz') };
  }

  mkdirSync(cacheDir, { recursive: true });
  const work = path.join(cacheDir, `.build-${process.pid}-${Date.now()}`);
  mkdirSync(work, { recursive: true });
  try {
    log(`payload: apt-get download ${kpkg.name} (${kpkg.version})`);
    await run('apt-get', ['download', '-q', `${kpkg.name}=${kpkg.version}`], { cwd: work, maxBuffer: 16 << 20 });
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${kpkg.name} left no .deb in ${work}`);
    const root = path.join(work, 'x');
    log(`payload: dpkg -x ${deb}`);
    await run('dpkg', ['-x', path.join(work, deb), root]);
    const abi = kpkg.name.replace(/^linux-image-/, '');
    const vmlinuz = path.join(root, 'boot', `vmlinuz-${abi}`);
    const modRoot = path.join(root, 'lib', 'modules', abi);
    if (!existsSync(vmlinuz) || !existsSync(modRoot)) throw new Error(`${deb} has no boot/vmlinuz-${abi} or lib/modules/${abi}`);

    const mods = moduleClosure(modRoot, NIC_MODULES);
    const files: CpioEntry[] = [
      ...['bin', 'dev', 'etc', 'etc/udhcpc', 'lib', 'lib/modules', 'proc', 'sys', 'tmp', 'run', 'sbin', 'usr', 'usr/bin', 'usr/sbin'].map((d) => ({ name: d, mode: 0o040755 })),
      { name: 'dev/console', mode: 0o020600, rdev: [5, 1] as [number, number] },
      { name: 'dev/null', mode: 0o020666, rdev: [1, 3] as [number, number] },
      { name: 'bin/busybox', mode: 0o100755, data: readFileSync(busybox) },
      { name: 'bin/sh', mode: 0o120777, data: Buffer.from('busybox') },
      { name: 'init', mode: 0o100755, data: Buffer.from(INIT_SCRIPT) },
      { name: 'etc/udhcpc/default.script', mode: 0o100755, data: Buffer.from(UDHCPC_SCRIPT) },
      { name: 'etc/stepcount.awk', mode: 0o100644, data: Buffer.from(STEP_COUNT_AWK) },
      { name: 'etc/modules', mode: 0o100644, data: Buffer.from(mods.map((m) => path.basename(m)).join('\n') + '\n') },
      ...mods.map((m) => ({ name: `lib/modules/${path.basename(m)}`, mode: 0o100644, data: readFileSync(m) })),
    ];
    const initrd = gzipSync(cpioNewc(files), { level: 9 });

    const out = path.join(work, 'out');
    mkdirSync(out);
    copyFileSync(vmlinuz, path.join(out, 'vmlinuz'));
    writeFileSync(path.join(out, 'initrd.gz'), initrd);
    const meta = { kernelPackage: kpkg.name, kernelVersion: kpkg.version, modules: mods.map((m) => path.relative(modRoot, m)) };
    writeFileSync(path.join(out, 'payload.json'), JSON.stringify(meta, null, 2) + '\n');
    // Publish atomically: a concurrent run either sees the whole entry or none.
    try {
      renameSync(out, dir);
    } catch (e) {
      if (!existsSync(manifest)) throw e;
    }
    log(`payload: ${kpkg.name} ${kpkg.version}, initrd ${initrd.length} bytes, modules ${meta.modules.join(' ')}`);
    return { ...meta, kernel: path.join(dir, 'vmlinuz'), initrd: path.join(dir, 'initrd.gz') };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Modules: the package ships no modules.dep (depmod makes it at install time), so the dependency
// closure comes from each module's own `.modinfo` section (`depends=a,b`), as depmod reads it.

/** Module files for `names` and everything they depend on, dependencies first. */
export function moduleClosure(modRoot: string, names: string[]): string[] {
  const index = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ko')) index.set(e.name.slice(0, -3).replace(/-/g, '_'), p);
    }
  };
  walk(path.join(modRoot, 'kernel'));
  const builtin = new Set(
    existsSync(path.join(modRoot, 'modules.builtin'))
      ? readFileSync(path.join(modRoot, 'modules.builtin'), 'utf8').split('\n').filter(Boolean).map((l) => path.basename(l, '.ko').replace(/-/g, '_'))
      : [],
  );
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string, chain: string[]): void => {
    const n = name.replace(/-/g, '_');
    if (seen.has(n) || builtin.has(n)) return;
    const file = index.get(n);
    if (!file) throw new Error(`module ${n} (needed by ${chain.join(' → ') || 'the initramfs'}) is not in ${modRoot}`);
    seen.add(n);
    for (const dep of modinfo(readFileSync(file)).depends) visit(dep, [...chain, n]);
    order.push(file);
  };
  for (const n of names) visit(n, []);
  return order;
}

/** The `.modinfo` section of an ELF64 little-endian kernel module. */
export function modinfo(elf: Buffer): { depends: string[]; fields: Map<string, string[]> } {
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) throw new Error('not an ELF64 little-endian file');
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  const sect = (i: number) => {
    const h = shoff + i * shentsize;
    return { name: elf.readUInt32LE(h), offset: Number(elf.readBigUInt64LE(h + 0x18)), size: Number(elf.readBigUInt64LE(h + 0x20)) };
  };
  const strtab = sect(shstrndx);
  const fields = new Map<string, string[]>();
  for (let i = 0; i < shnum; i++) {
    const s = sect(i);
    const start = strtab.offset + s.name;
    const name = elf.toString('latin1', start, elf.indexOf(0, start));
    if (name !== '.modinfo') continue;
    for (const kv of elf.toString('latin1', s.offset, s.offset + s.size).split('\0')) {
      const eq = kv.indexOf('=');
      if (eq <= 0) continue;
      const k = kv.slice(0, eq);
      fields.set(k, [...(fields.get(k) ?? []), kv.slice(eq + 1)]);
    }
  }
  const depends = (fields.get('depends') ?? []).flatMap((d) => d.split(',')).filter(Boolean);
  return { depends, fields };
}

// ---------------------------------------------------------------------------------------------
// cpio "newc", the format the kernel unpacks an initramfs from.

export interface CpioEntry {
  name: string;
  /** Full st_mode: type bits | permissions. */
  mode: number;
  data?: Buffer;
  /** Device numbers for character/block nodes. */
  rdev?: [number, number];
}

/** A newc archive with a trailer; deterministic (mtime 0, uid/gid 0). */
export function cpioNewc(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let size = 0;
  const push = (b: Buffer) => {
    parts.push(b);
    size += b.length;
  };
  const pad = () => {
    if (size % 4) push(Buffer.alloc(4 - (size % 4)));
  };
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  let ino = 1;
  for (const e of [...entries, { name: 'TRAILER!!!', mode: 0 }] as CpioEntry[]) {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(e.name + '\0');
    const isDir = (e.mode & 0o170000) === 0o040000;
    const fields = [e.name === 'TRAILER!!!' ? 0 : ino++, e.mode, 0, 0, isDir ? 2 : 1, 0, data.length, 0, 0, e.rdev?.[0] ?? 0, e.rdev?.[1] ?? 0, name.length, 0];
    push(Buffer.from('070701' + fields.map(hex).join(''), 'latin1'));
    push(name);
    pad();
    push(data);
    pad();
  }
  return Buffer.concat(parts, size);
}

// ---------------------------------------------------------------------------------------------
// What runs in the VM. Bumping FORMAT (or editing a script) makes a new cache entry.

const FORMAT = 'payload-v1';

/**
 * busybox awk: how many objects the top-level "steps" array holds. A real tokenizer (strings,
 * escapes, depth), because step objects can nest other objects with an "index" key (WIM images).
 */
export const STEP_COUNT_AWK = String.raw`{ s = s $0 "\n" }
END {
  n = length(s); depth = 0; instr = 0; esc = 0; str = ""; last = ""; key = ""; insteps = 0; count = 0
  for (k = 1; k <= n; k++) {
    c = substr(s, k, 1)
    if (instr) {
      if (esc) { esc = 0; str = str c }
      else if (c == "\\") esc = 1
      else if (c == "\"") { instr = 0; last = str }
      else str = str c
      continue
    }
    if (c == "\"") { instr = 1; str = ""; continue }
    if (c == ":") { key = last; continue }
    if (c == "{" || c == "[") {
      depth++
      if (c == "[" && depth == 2 && key == "steps") insteps = 1
      else if (c == "{" && insteps && depth == 3) count++
      continue
    }
    if (c == "}" || c == "]") {
      if (c == "]" && insteps && depth == 2) insteps = 0
      depth--
    }
  }
  print count
}`;

export const UDHCPC_SCRIPT = `#!/bin/sh
# udhcpc calls this with $1 = deconfig | bound | renew | nak | leasefail.
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ifconfig "$interface" "$ip" netmask "\${subnet:-255.255.255.0}" up
    if [ -n "$router" ]; then
      ip route del default 2>/dev/null
      for r in $router; do ip route add default via "$r" dev "$interface" && break; done
    fi
    echo "SWARMBOOT-IP $interface $ip"
    ;;
esac
exit 0
`;

export const INIT_SCRIPT = `#!/bin/sh
# swarmboot e2e payload: sequence -> console, one event per step start/finish, power off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp /run
exec </dev/console >/dev/console 2>&1

finish() {
  echo "SWARMBOOT-DONE"
  sync
  poweroff -f
  sleep 5
  echo o > /proc/sysrq-trigger
}
fail() { echo "SWARMBOOT-ERROR $*"; dmesg | tail -n 30; finish; }

# Kernel chatter (NIC link up, …) would land in the middle of the markers: console gets alerts only.
dmesg -n 1
echo "SWARMBOOT-INIT $(uname -r)"
for m in $(cat /etc/modules); do
  insmod "/lib/modules/$m" || echo "SWARMBOOT-INSMOD-FAILED $m"
done

BASE=""; STEPS=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    swarmboot=*) BASE="\${arg#swarmboot=}" ;;
    swarmboot.steps=*) STEPS="\${arg#swarmboot.steps=}" ;;
  esac
done
BASE="\${BASE%/}"
[ -n "$BASE" ] || fail "no swarmboot=<base URL> on the kernel command line"

IF=""
i=0
while [ -z "$IF" ] && [ $i -lt 100 ]; do
  if [ -e /sys/class/net/eth0 ]; then IF=eth0; else
    for n in /sys/class/net/*; do n="\${n##*/}"; [ "$n" != lo ] && [ -e "/sys/class/net/$n" ] && { IF="$n"; break; }; done
  fi
  [ -n "$IF" ] || { sleep 0.1; i=$((i + 1)); }
done
[ -n "$IF" ] || fail "no network interface appeared"
ip link set lo up
ip link set "$IF" up
udhcpc -i "$IF" -f -q -n -t 10 -T 2 -s /etc/udhcpc/default.script || fail "udhcpc got no lease on $IF"

MAC="$(cat /sys/class/net/$IF/address)"
echo "SWARMBOOT-MAC $MAC"
API="$BASE/api/v1/machines/$MAC"

wget -S -O /tmp/sequence.json "$API/sequence" 2>/tmp/wget.err
rc=$?
status="$(grep -m1 'HTTP/' /tmp/wget.err | sed 's/^ *//')"
[ -n "$status" ] || status="$(tail -n1 /tmp/wget.err)"
if [ $rc -ne 0 ]; then
  echo "SWARMBOOT-SEQUENCE-STATUS \${status:-wget exit $rc}"
  # busybox wget drops the body of an error reply; a raw HTTP/1.0 GET shows the JSON ("action": ...).
  hostport="\${BASE#http://}"; hostport="\${hostport%%/*}"; prefix="\${BASE#http://$hostport}"
  host="\${hostport%:*}"; port="\${hostport##*:}"; [ "$port" = "$hostport" ] && port=80
  body="$(printf 'GET %s/api/v1/machines/%s/sequence HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n' "$prefix" "$MAC" "$hostport" | nc -w 5 "$host" "$port" 2>/dev/null | tr -d '\\r' | sed '1,/^$/d')"
  echo "SWARMBOOT-SEQUENCE-ERROR-BODY $body"
  finish
fi
echo "SWARMBOOT-SEQUENCE-STATUS $status"
echo "SWARMBOOT-SEQUENCE-BEGIN"
cat /tmp/sequence.json
echo
echo "SWARMBOOT-SEQUENCE-END"

[ -n "$STEPS" ] || STEPS="$(awk -f /etc/stepcount.awk /tmp/sequence.json)"
echo "SWARMBOOT-STEPS $STEPS"

post() {
  if wget -q -O /dev/null --header='Content-Type: application/json' --post-data="{\\"type\\":\\"$1\\",\\"step\\":$2}" "$API/events" 2>/tmp/post.err; then
    echo "SWARMBOOT-EVENT $1 $2 ok"
  else
    echo "SWARMBOOT-EVENT $1 $2 fail $(tail -n1 /tmp/post.err)"
  fi
}
s=0
while [ "$s" -lt "$STEPS" ]; do
  post step-started $s
  post step-finished $s
  s=$((s + 1))
done
finish
`;
