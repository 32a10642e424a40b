/**
 * DHCP load generator for bench/dhcp.ts, run inside the client namespace. Sends PXE DISCOVERs
 * (unique MAC and xid each; options 53, 55, 57, 60, 93, 94, 97) by broadcast from port 68 like
 * firmware, and matches the OFFERs that come back by xid. Commands on stdin, one JSON per line:
 *   {"rate": 10000, "ms": 3000, "lateMs": 1000}  → one JSON result line on stdout; a reply later
 *                                                  than lateMs counts as lost (a client would have
 *                                                  moved on), so a deep socket queue cannot hide overload
 *   {"ceiling": 1000}                             → unpaced send rate for that long (no waiting for replies)
 * Bounded: each command ends by itself; the process exits when stdin closes.
 */
import dgram from 'node:dgram';
import { execFileSync } from 'node:child_process';
import readline from 'node:readline';
import { clientBuf, MsgType } from '../test/dhcp/packets.ts';

const iface = process.argv[2] ?? 'eth0';
const serverPort = Number(process.argv[3] ?? 67);
execFileSync('ip', ['route', 'replace', '255.255.255.255', 'dev', iface]);

const template = clientBuf({ type: MsgType.DISCOVER, mac: '02:00:00:00:00:00', xid: 0, arch: 0, uuid: '4c4c4544-0042-3510-8052-b4c04f4d4d31' });
const ARCH_OFF = template.indexOf(Buffer.from([93, 2, 0, 0])) + 3;
const VC_OFF = template.indexOf(Buffer.from('PXEClient:Arch:00000')) + 19;
const ARCHES = [0, 7, 9];

const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true, recvBufferSize: 8 << 20, sendBufferSize: 8 << 20 });
await new Promise<void>((r) => sock.bind(68, '0.0.0.0', r));
sock.setBroadcast(true);

let xidBase = 0x10000000;
let cur: { base: number; n: number; sentAt: Float64Array; got: Uint8Array; lat: number[]; dup: number } | undefined;
sock.on('message', (b) => {
  if (!cur || b.length < 240 || b[0] !== 2) return;
  const i = b.readUInt32BE(4) - cur.base;
  if (i < 0 || i >= cur.n) return;
  if (cur.got[i]) { cur.dup++; return; }
  cur.got[i] = 1;
  cur.lat.push(performance.now() - cur.sentAt[i]!);
});

function packet(seq: number, xid: number): Buffer {
  const b = Buffer.allocUnsafe(template.length);
  template.copy(b);
  b.writeUInt32BE(xid, 4);
  b.writeUInt32BE(seq, 30); // MAC 02:00:<seq>
  const arch = ARCHES[seq % ARCHES.length]!;
  b[ARCH_OFF] = arch;
  b[VC_OFF] = 0x30 + (arch % 10);
  return b;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const immediate = () => new Promise((r) => setImmediate(r));

async function run(rate: number, ms: number, lateMs: number) {
  const n = Math.ceil((rate * ms) / 1000);
  const base = xidBase;
  xidBase = (xidBase + n + 1000) >>> 0;
  cur = { base, n, sentAt: new Float64Array(n), got: new Uint8Array(n), lat: [], dup: 0 };
  const c = cur;
  const t0 = performance.now();
  let sent = 0;
  let errors = 0;
  while (sent < n) {
    const due = Math.min(n, Math.floor(((performance.now() - t0) * rate) / 1000));
    let burst = 0;
    while (sent < due && burst < 256) {
      c.sentAt[sent] = performance.now();
      try { sock.send(packet(base + sent, base + sent), serverPort, '255.255.255.255'); } catch { errors++; }
      sent++;
      burst++;
    }
    await immediate();
  }
  const sendMs = performance.now() - t0;
  await sleep(Math.max(0, lateMs - (performance.now() - t0 - sendMs)));
  cur = undefined;
  const late = c.lat.filter((l) => l > lateMs).length;
  const lat = c.lat.filter((l) => l <= lateMs).sort((a, b) => a - b);
  const pct = (p: number) => (lat.length ? Number(lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]!.toFixed(3)) : null);
  const received = lat.length;
  return { rate, sent, achieved: Math.round((sent / sendMs) * 1000), received, late, loss: Number((1 - received / sent).toFixed(4)), dup: c.dup, errors, p50: pct(50), p99: pct(99), p999: pct(99.9), max: lat.length ? Number(lat[lat.length - 1]!.toFixed(3)) : null };
}

async function ceiling(ms: number) {
  const t0 = performance.now();
  let sent = 0;
  while (performance.now() - t0 < ms) {
    for (let k = 0; k < 256; k++) sock.send(packet(sent, 0x7f000000 + sent++), serverPort, '255.255.255.255');
    await immediate();
  }
  return { ceilingSendPerS: Math.round((sent / (performance.now() - t0)) * 1000) };
}

const rl = readline.createInterface({ input: process.stdin });
process.stdout.write('READY\n');
for await (const line of rl) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line) as { rate?: number; ms?: number; lateMs?: number; ceiling?: number };
  const res = cmd.ceiling ? await ceiling(cmd.ceiling) : await run(cmd.rate!, cmd.ms ?? 3000, cmd.lateMs ?? 1000);
  process.stdout.write(JSON.stringify(res) + '\n');
}
sock.close();
