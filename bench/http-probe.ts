/**
 * UDP helpers for bench/http.ts's "DHCP and TFTP under HTTP load" section. One file, three roles:
 *
 *   node bench/http-probe.ts probe '<json>'   the measuring client (ProbeConfig), run in the probe
 *       namespace. After a short warm-up it runs rounds back to back for `ms`, each round one PXE
 *       DISCOVER (broadcast from port 68, unique MAC and xid, like firmware) → ProxyDHCP OFFER, one
 *       TFTP read of a small file (plain RFC 1350 RRQ: RRQ → first DATA, and the whole transfer in
 *       lock step) and one datagram to the echo control; prints one JSON line of latencies (ms) and
 *       exits. An answer later than 1 s counts as lost.
 *   node bench/http-probe.ts echo ADDR PORT   the control: a UDP echo in its own process beside the
 *       daemon. What it suffers under load is the machine's share (CPU, softirq, scheduling); what
 *       the daemon suffers beyond that is its own event loop.
 *   --import bench/http-probe.ts with SB_BENCH_LAG_FILE set: a preload for the daemon that samples
 *       its event-loop lag (a 2 ms timer, histogram) and, on SIGUSR2, writes the lag since the
 *       previous SIGUSR2 to that file as JSON. Instrumentation only; the daemon's code is unchanged.
 */
import dgram from 'node:dgram';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
const LAG_RESOLUTION_MS = 2;

export interface ProbeConfig {
  /** The daemon's address on the segment. */
  server: string;
  tftpPort: number;
  /** File under the TFTP root to read. */
  file: string;
  echoPort: number;
  iface: string;
  /** How long to measure, after a warm-up of warmMs (default 300) that is not counted. */
  ms: number;
  warmMs?: number;
  /** Pause between rounds (default 10 ms). */
  gapMs?: number;
}

export interface ProbeResult {
  /** Latencies in ms of the answered probes. */
  dhcp: number[];
  tftpFirst: number[];
  tftpAll: number[];
  echo: number[];
  lost: { dhcp: number; tftp: number; echo: number };
  /** Bytes of the TFTP reads that completed, for a sanity check. */
  tftpBytes: number;
}

export interface LagStats {
  /** Event-loop lag beyond the timer's own period, ms. */
  p50: number;
  p99: number;
  max: number;
  samples: number;
}

if (isMain && process.argv[2] === 'probe') {
  await probeMain(JSON.parse(process.argv[3] ?? '{}') as ProbeConfig);
} else if (isMain && process.argv[2] === 'echo') {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (b, r) => sock.send(b, r.port, r.address));
  sock.bind(Number(process.argv[4]), process.argv[3], () => process.stdout.write('READY\n'));
  process.on('SIGTERM', () => process.exit(0));
} else if (!isMain && process.env.SB_BENCH_LAG_FILE) {
  const out = process.env.SB_BENCH_LAG_FILE;
  const h = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  h.enable();
  process.on('SIGUSR2', () => {
    const ms = (ns: number): number => Math.max(0, ns / 1e6 - LAG_RESOLUTION_MS);
    const s: LagStats = { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), samples: h.count };
    writeFileSync(out, JSON.stringify(s));
    h.reset();
  });
}

async function probeMain(cfg: ProbeConfig): Promise<void> {
  const { clientBuf, MsgType } = await import('../test/dhcp/packets.ts');
  const { decode, encodeAck, encodeError, encodeRequest, OP_DATA, OP_RRQ } = await import('../server/tftp/codec.ts');
  const TIMEOUT_MS = 1000;
  // Broadcast like firmware: the interface needs a route for 255.255.255.255.
  execFileSync('ip', ['route', 'replace', '255.255.255.255', 'dev', cfg.iface]);

  const dhcp = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((r) => dhcp.bind(68, '0.0.0.0', r));
  dhcp.setBroadcast(true);
  const echo = dgram.createSocket('udp4');
  await new Promise<void>((r) => echo.bind(0, '0.0.0.0', r));

  let seq = 0;
  const xidBase = (0x20000000 + ((process.pid & 0xfff) << 16)) >>> 0;
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  /** Resolves with the first message `accept` takes within TIMEOUT_MS (undefined when none came). */
  const await1 = (sock: dgram.Socket, accept: (b: Buffer, r: dgram.RemoteInfo) => boolean): Promise<{ b: Buffer; r: dgram.RemoteInfo } | undefined> =>
    new Promise((resolveMsg) => {
      const onMsg = (b: Buffer, r: dgram.RemoteInfo): void => {
        if (!accept(b, r)) return;
        done({ b, r });
      };
      const timer = setTimeout(() => done(undefined), TIMEOUT_MS);
      const done = (v: { b: Buffer; r: dgram.RemoteInfo } | undefined): void => {
        clearTimeout(timer);
        sock.off('message', onMsg);
        resolveMsg(v);
      };
      sock.on('message', onMsg);
    });

  async function dhcpOnce(): Promise<number | undefined> {
    const n = seq++;
    const xid = (xidBase + n) >>> 0;
    const mac = `02:b7:${[(n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
    const pkt = clientBuf({ type: MsgType.DISCOVER, mac, xid, arch: 7, uuid: '4c4c4544-0042-3510-8052-b4c04f4d4d31' });
    // byte 0 = 2 (BOOTREPLY), xid at 4, option 53 = OFFER somewhere in the options.
    const got = await1(dhcp, (b) => b.length >= 240 && b[0] === 2 && b.readUInt32BE(4) === xid);
    const t0 = performance.now();
    dhcp.send(pkt, 67, '255.255.255.255');
    const m = await got;
    return m ? performance.now() - t0 : undefined;
  }

  async function tftpOnce(): Promise<{ first: number; all: number; bytes: number } | undefined> {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '0.0.0.0', r));
    try {
      const rrq = encodeRequest(OP_RRQ, cfg.file, 'octet', []);
      let tid = -1;
      let expect = 1;
      let bytes = 0;
      let first = 0;
      const t0 = performance.now();
      let next = await1(sock, (_b, r) => r.address === cfg.server && (tid === -1 || r.port === tid));
      sock.send(rrq, cfg.tftpPort, cfg.server);
      for (;;) {
        const m = await next;
        if (!m) {
          if (tid !== -1) sock.send(encodeError(0, 'bench: giving up'), tid, cfg.server);
          return undefined;
        }
        const p = decode(m.b);
        if (!p || p.op !== OP_DATA) return undefined;
        if (tid === -1) {
          tid = m.r.port;
          first = performance.now() - t0;
        }
        if (p.block !== expect) {
          next = await1(sock, (_b, r) => r.port === tid);
          continue;
        }
        bytes += p.data.length;
        expect++;
        next = p.data.length < 512 ? Promise.resolve(undefined) : await1(sock, (_b, r) => r.port === tid);
        sock.send(encodeAck(p.block), tid, cfg.server);
        if (p.data.length < 512) return { first, all: performance.now() - t0, bytes };
      }
    } finally {
      // Let the last ACK leave before closing.
      setTimeout(() => sock.close(), 20);
    }
  }

  async function echoOnce(): Promise<number | undefined> {
    const n = seq++;
    const buf = Buffer.alloc(64);
    buf.writeUInt32BE(n, 0);
    const got = await1(echo, (b) => b.length === 64 && b.readUInt32BE(0) === n);
    const t0 = performance.now();
    echo.send(buf, cfg.echoPort, cfg.server);
    const m = await got;
    return m ? performance.now() - t0 : undefined;
  }

  async function run(ms: number, gapMs: number): Promise<ProbeResult> {
    const res: ProbeResult = { dhcp: [], tftpFirst: [], tftpAll: [], echo: [], lost: { dhcp: 0, tftp: 0, echo: 0 }, tftpBytes: 0 };
    const until = performance.now() + ms;
    const r3 = (x: number): number => Math.round(x * 1000) / 1000;
    while (performance.now() < until) {
      const d = await dhcpOnce();
      if (d === undefined) res.lost.dhcp++;
      else res.dhcp.push(r3(d));
      const t = await tftpOnce();
      if (!t) res.lost.tftp++;
      else {
        res.tftpFirst.push(r3(t.first));
        res.tftpAll.push(r3(t.all));
        res.tftpBytes = t.bytes;
      }
      const e = await echoOnce();
      if (e === undefined) res.lost.echo++;
      else res.echo.push(r3(e));
      await sleep(gapMs);
    }
    return res;
  }

  // Warm-up (JIT, ARP, the daemon's first-seen paths), not counted.
  await run(cfg.warmMs ?? 300, cfg.gapMs ?? 10);
  const res = await run(Math.min(cfg.ms, 30_000), cfg.gapMs ?? 10);
  process.stdout.write(JSON.stringify(res) + '\n');
  dhcp.close();
  echo.close();
}
