/**
 * The TFTP front end: listens for read requests, resolves names under the root (or asks `virtualFile`),
 * negotiates options and hands each transfer its own socket. Read-only: write requests get ERROR 2.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { promises as fsp } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.ts';
import type { Registry, Counter, Gauge } from '../metrics.ts';
import { BlockCache, MemoryReader, type BlockReader, type CacheStats } from './cache.ts';
import {
  decode,
  encodeError,
  encodeOack,
  ERR_ACCESS,
  ERR_ILLEGAL_OP,
  ERR_NOT_FOUND,
  ERR_UNDEFINED,
  OP_RRQ,
  OP_WRQ,
  type RequestPacket,
} from './codec.ts';
import { negotiate, toNetascii } from './negotiate.ts';
import { normalizeName, PathResolver } from './path.ts';
import { Transfer, type Outcome } from './transfer.ts';
import { dgramOnly, loadBatchSend, type SendPath } from './batch-send.ts';
import { loadNativeUdp } from '../native-udp.ts';

export interface TftpClient {
  address: string;
  port: number;
}

export interface TftpOptions {
  /** Directory served read-only. */
  root: string;
  /** Address to bind (default '0.0.0.0'; '::' for IPv6). */
  host?: string;
  /** UDP port (default 69; 0 picks an ephemeral port, for tests). */
  port?: number;
  /** Largest blksize granted (default 1456: fits a 1500-byte MTU with IP/UDP/TFTP headers and VLAN slack). */
  maxBlksize?: number;
  /**
   * Largest windowsize granted, RFC 7440 or Microsoft variable window (default 64; at most 32767, so that a window
   * spans less than half the 16-bit block space and every ACK is unambiguous across rollover).
   */
  maxWindowsize?: number;
  /** Concurrent transfers before new requests get an ERROR (default 200). */
  maxTransfers?: number;
  /** Retransmit timeout before a round trip is measured, and the ceiling of the adaptive timer (default 1000 ms). */
  timeoutMs?: number;
  /** Floor of the adaptive retransmit timer (default 20 ms). */
  minTimeoutMs?: number;
  /**
   * Silence (no ACK moving the transfer on) before a transfer is abandoned and freed (default 30 s, about what
   * tftpd-hpa and atftpd allow; an unacknowledged OACK gets 5 × timeoutMs). Resends back off up to a quarter of
   * it; see Transfer.tick.
   */
  giveUpMs?: number;
  /** Byte budget of the shared read-ahead cache (default 16 MiB). */
  cacheBytes?: number;
  /** Chunk size of disk reads (default 128 KiB). */
  chunkBytes?: number;
  /** Largest file served in netascii mode (converted in memory; default 16 MiB). */
  netasciiMaxBytes?: number;
  /**
   * Send each window's DATA in one syscall (UDP GSO, else sendmmsg) through the native addon in native/, when it
   * builds and loads (default true); otherwise, or when false, one dgram send per datagram. See batch-send.ts.
   */
  batchSend?: boolean;
  /**
   * Microseconds the event loop keeps polling the transfer sockets, instead of sleeping, after their last ACK
   * (default 50; 0: never). An ACK that comes within that time is answered without the wakeup, which on a virtual
   * machine costs more than the wait. Adaptive: a poll that catches nothing makes the next ones sit out, so where
   * ACKs come further apart (a LAN's round trip) it costs next to nothing. Needs the native addon; one setting per
   * process (the last server started sets it). See native/udp_batch.c, disp_spin.
   */
  spinUs?: number;
  /**
   * Send the autopilot's lock-step answers of one loop iteration together, in one io_uring_enter (default true): one
   * syscall return, so at most one preemption by the clients the sends wake. Where io_uring is missing or refused,
   * each goes out at once. Needs the native addon; one setting per process. See native/udp_batch.c, batch_queue.
   */
  ioUring?: boolean;
  logger: Logger;
  metrics?: Registry;
  /**
   * Per-machine files from boot/, asked before the disk. Gets the normalised name ('boot/bcd' for
   * `\Boot\BCD`, case as sent) after the same refusal rules as disk paths; null means "not virtual".
   */
  virtualFile?: (path: string, client: TftpClient) => Promise<Buffer | null>;
}

export interface TftpStats {
  /**
   * Datagrams received on the main port and on transfer ports since start; of the latter, the ACKs the native addon
   * answered with the next window itself (the autopilot, see server/tftp/transfer.ts syncOut).
   */
  received: { main: number; transfer: number; answeredInAddon: number };
  /** File bytes acknowledged by clients, and DATA packets sent again, over all transfers so far. */
  bytes: number;
  retransmits: number;
  activeTransfers: number;
  pendingRequests: number;
  transfers: Record<string, number>;
  droppedPackets: Record<string, number>;
  cache: CacheStats;
  /** How DATA windows go out: one GSO or sendmmsg syscall per window, or a dgram send per datagram. */
  sendPath: SendPath;
  /**
   * The spin (spinUs) since the process started, for all TFTP servers in it: spins, spins that caught nothing,
   * datagrams caught while spinning (each a sleep and a wakeup saved), and the milliseconds spent spinning.
   */
  spin: { us: number; spins: number; misses: number; caught: number; ms: number };
  /**
   * Lock-step answers sent in batches (ioUring), since the process started: datagrams sent, io_uring_enter calls,
   * sends that failed (handed to JavaScript to resend), and the path: 'io_uring', 'direct' (off, or refused by this
   * kernel) or 'idle' (no transfer since start, or since the last one ended).
   */
  sendBatch: { path: 'io_uring' | 'direct' | 'idle'; sends: number; calls: number; failed: number };
}

export interface TftpServer {
  close(): Promise<void>;
  address(): { address: string; port: number };
  stats(): TftpStats;
}

interface Metrics {
  transfers: Counter | null;
  bytes: Counter | null;
  retransmits: Counter | null;
  probes: Counter | null;
  dropped: Counter | null;
  active: Gauge | null;
}

/** Starts the TFTP server; rejects with an actionable message when the port cannot be bound. */
export async function startTftp(opts: TftpOptions): Promise<TftpServer> {
  const host = opts.host ?? '0.0.0.0';
  const port = opts.port ?? 69;
  const family: 'udp4' | 'udp6' = net.isIPv6(host) ? 'udp6' : 'udp4';
  const maxBlksize = clampInt(opts.maxBlksize ?? 1456, 8, 65464);
  // Default 64, from `npm run bench -- tftp`'s sweep (atftp, blksize 1456, loopback, 3 runs on a busy 2-core box,
  // MB/s): clean, ws 1/4/8/16/32/64 = 45–55 / 62–80 / 91–105 / 94–149 / 79–164 / 103–177, a plateau from 16 on
  // with 64 never behind; at 1% loss, 1–2 / 8–9 / 12–13 / 17–22 / 29–33 / 16–25: past 32 the go-back-N resends
  // after each loss cost more than the wider window gains. 64 still wins: Windows Boot Manager, the client that pulls 300–600 MB over TFTP, asks msftwindow
  // up to 64 and counts the blocks of each window, so a shorter window than it asked for leaves it waiting out its
  // timer, while the extension lets it shrink its own window when it sees loss; RFC 7440 clients choose their own
  // size and seldom ask for more than 16. On a lossy segment, set tftp.maxWindowsize to 16 or 32.
  const maxWindowsize = clampInt(opts.maxWindowsize ?? 64, 1, 32767);
  const maxTransfers = Math.max(1, opts.maxTransfers ?? 200);
  const timeoutMs = Math.max(1, opts.timeoutMs ?? 1000);
  const minTimeoutMs = Math.min(Math.max(1, opts.minTimeoutMs ?? 20), timeoutMs);
  const giveUpMs = Math.max(timeoutMs, opts.giveUpMs ?? 30_000);
  const netasciiMax = opts.netasciiMaxBytes ?? 16 * 1024 * 1024;
  const log = opts.logger.child({ component: 'tftp' });
  const cache = new BlockCache({ budgetBytes: opts.cacheBytes, chunkSize: opts.chunkBytes });

  const st = await fsp.stat(opts.root).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`TFTP root ${opts.root} is not usable: ${e.code ?? e.message}`);
  });
  if (!st.isDirectory()) throw new Error(`TFTP root ${opts.root} is not a directory`);
  const resolver = new PathResolver(opts.root);

  const m: Metrics = opts.metrics
    ? {
        transfers: opts.metrics.counter('swarmboot_tftp_transfers_total', 'TFTP read requests by outcome'),
        bytes: opts.metrics.counter('swarmboot_tftp_bytes_total', 'File bytes acknowledged by TFTP clients'),
        retransmits: opts.metrics.counter('swarmboot_tftp_retransmits_total', 'TFTP DATA packets sent again'),
        probes: opts.metrics.counter('swarmboot_tftp_probes_total', 'TFTP tsize probes (OACK answered by ERROR 8)'),
        dropped: opts.metrics.counter('swarmboot_tftp_dropped_packets_total', 'TFTP packets dropped, by reason'),
        active: opts.metrics.gauge('swarmboot_tftp_active_transfers', 'TFTP transfers in progress'),
      }
    : { transfers: null, bytes: null, retransmits: null, probes: null, dropped: null, active: null };

  const outcomes: Record<string, number> = {};
  const drops: Record<string, number> = {};
  const countOutcome = (o: string): void => {
    outcomes[o] = (outcomes[o] ?? 0) + 1;
    m.transfers?.inc({ outcome: o });
  };
  const drop = (reason: string): void => {
    drops[reason] = (drops[reason] ?? 0) + 1;
    m.dropped?.inc({ reason });
  };

  const transfers = new Map<string, Transfer>();
  const rxMain = { packets: 0 };
  const rxTransfer = { packets: 0, autopilot: 0 };
  /** Requests between RRQ and the transfer socket being ready, by client key. */
  const pending = new Set<string>();
  const sockets = new Set<dgram.Socket>();
  let closed = false;
  let ticker: NodeJS.Timeout | null = null;
  let lastFlush = 0;

  // Literal addresses only: skip dgram's per-send DNS lookup tick on the hot path.
  const lookup = (address: string, _o: unknown, cb: (err: Error | null, address: string, family: number) => void): void => {
    cb(null, address, family === 'udp6' ? 6 : 4);
  };
  const newSocket = (): dgram.Socket => dgram.createSocket({ type: family, lookup: lookup as never });

  // Before the main socket is bound: a first start may build the addon (about a second), and requests arriving
  // meanwhile would find no 'message' listener.
  const batch = opts.batchSend === false ? dgramOnly('batchSend: false') : await loadBatchSend();
  const addon = batch.path !== 'dgram' ? (await loadNativeUdp()).addon : null;
  const spinUs = addon ? clampInt(opts.spinUs ?? 50, 0, 1000) : 0;
  if (addon) {
    cache.readNow = addon.preadNowait;
    addon.recvSpin(spinUs);
    addon.sendBatching(opts.ioUring !== false);
  }
  const batchStats = (): TftpStats['sendBatch'] => {
    const [sends, calls, failed, state] = addon ? addon.batchStats() : [0, 0, 0, -1];
    return { path: state > 0 ? 'io_uring' : state < 0 ? 'direct' : 'idle', sends, calls, failed };
  };
  const spinStats = (): TftpStats['spin'] => {
    const [spins, misses, caught, ms] = addon ? addon.spinStats() : [0, 0, 0, 0];
    return { us: spinUs, spins, misses, caught, ms: Math.round(ms) };
  };
  opts.metrics
    ?.gauge('swarmboot_tftp_spin_seconds', 'Time the event loop spent polling TFTP transfer sockets instead of sleeping (tftp.spinUs), since start')
    .collect(() => [{ labels: {}, value: spinStats().ms / 1000 }]);
  const main = newSocket();
  main.on('error', (err) => log.error({ err }, 'tftp socket error'));
  try {
    await new Promise<void>((resolve, reject) => {
      main.once('error', reject);
      main.bind({ port, address: host, exclusive: true }, () => {
        main.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    try {
      main.close();
    } catch {
      // never bound
    }
    throw bindError(e as NodeJS.ErrnoException, host, port);
  }
  log.info(
    { address: host, port: main.address().port, root: opts.root, sendPath: batch.path, sendDetail: batch.detail, spinUs, ioUring: opts.ioUring !== false && addon !== null },
    `tftp listening, DATA windows sent by ${batch.path === 'dgram' ? 'dgram, one syscall per datagram' : `${batch.path}, one syscall per window`}`,
  );

  const totals = { bytes: 0, retransmits: 0 };
  const flushMetrics = (t: Transfer): void => {
    if (t.ackedBytes > t.flushedBytes) {
      m.bytes?.inc({}, t.ackedBytes - t.flushedBytes);
      totals.bytes += t.ackedBytes - t.flushedBytes;
      t.flushedBytes = t.ackedBytes;
    }
    if (t.retransmits > t.flushedRetransmits) {
      m.retransmits?.inc({}, t.retransmits - t.flushedRetransmits);
      totals.retransmits += t.retransmits - t.flushedRetransmits;
      t.flushedRetransmits = t.retransmits;
    }
  };

  const tickMs = Math.max(1, Math.min(10, Math.floor(minTimeoutMs / 4)));
  const tick = (): void => {
    const now = performance.now();
    for (const t of transfers.values()) t.tick(now);
    if (now - lastFlush > 1000) {
      lastFlush = now;
      for (const t of transfers.values()) flushMetrics(t);
    }
    if (transfers.size === 0 && ticker) {
      clearInterval(ticker);
      ticker = null;
    }
  };
  const ensureTicker = (): void => {
    if (!ticker) {
      ticker = setInterval(tick, tickMs);
      ticker.unref();
    }
  };

  const sendFromMain = (client: TftpClient, buf: Buffer): void => {
    try {
      main.send(buf, client.port, client.address);
    } catch {
      // closing
    }
  };

  const refuse = (client: TftpClient, code: number, message: string, outcome: string, detail: Record<string, unknown>): void => {
    sendFromMain(client, encodeError(code, message));
    countOutcome(outcome);
    log.info({ client: `${client.address}:${client.port}`, outcome, ...detail }, `tftp request refused: ${message}`);
  };

  const onDone = (t: Transfer, filename: string, key: string, outcome: Outcome, detail: string): void => {
    transfers.delete(key);
    m.active?.set({}, transfers.size);
    flushMetrics(t);
    countOutcome(outcome);
    if (outcome === 'probe') m.probes?.inc();
    const seconds = (performance.now() - t.startedAt) / 1000;
    const info = {
      client: key,
      file: filename,
      outcome,
      bytes: t.ackedBytes,
      size: t.size,
      blksize: t.blksize,
      retransmits: t.retransmits,
      seconds: Math.round(seconds * 1000) / 1000,
      MBps: seconds > 0 ? Math.round((t.ackedBytes / 1e6 / seconds) * 10) / 10 : 0,
    };
    if (outcome === 'ok') log.info(info, 'tftp transfer complete');
    else if (outcome === 'probe') log.debug(info, 'tftp tsize probe');
    else if (outcome === 'timeout' || outcome === 'read_error') log.warn({ ...info, detail }, 'tftp transfer failed');
    else log.info({ ...info, detail }, 'tftp transfer ended early');
  };

  const handleRrq = async (req: RequestPacket, client: TftpClient, key: string): Promise<void> => {
    const norm = normalizeName(req.filename);
    const logName = req.filename.replace(/[^\x20-\x7e]/g, '?');
    if (!norm.ok) {
      refuse(client, ERR_ACCESS, 'access violation', 'denied', { file: logName, reason: norm.reason });
      return;
    }
    if (req.mode !== 'octet' && req.mode !== 'netascii') {
      refuse(client, ERR_ILLEGAL_OP, `unsupported transfer mode ${req.mode.replace(/[^\x20-\x7e]/g, '?')}`, 'bad_request', { file: logName });
      return;
    }

    let reader: BlockReader | null = null;
    let virtual: Buffer | null = null;
    if (opts.virtualFile) {
      try {
        virtual = await opts.virtualFile(norm.name, client);
      } catch (err) {
        log.error({ err, file: norm.name }, 'virtual file provider failed');
        refuse(client, ERR_UNDEFINED, 'server error', 'error', { file: logName });
        return;
      }
    }
    let diskPath = '';
    if (virtual) {
      reader = new MemoryReader(req.mode === 'netascii' ? toNetascii(virtual) : virtual);
    } else {
      const r = await resolver.resolve(norm.segments);
      if (!r.ok) {
        if (r.code === 'denied') refuse(client, ERR_ACCESS, 'access violation', 'denied', { file: logName, reason: r.reason });
        else refuse(client, ERR_NOT_FOUND, 'file not found', 'not_found', { file: logName });
        return;
      }
      diskPath = r.path;
      if (req.mode === 'netascii') {
        if (r.stat.size > netasciiMax) {
          refuse(client, ERR_ILLEGAL_OP, `netascii limited to ${netasciiMax} bytes; use octet mode`, 'bad_request', { file: logName });
          return;
        }
        try {
          reader = new MemoryReader(toNetascii(await fsp.readFile(r.path)));
        } catch {
          refuse(client, ERR_NOT_FOUND, 'file not found', 'not_found', { file: logName });
          return;
        }
      } else {
        reader = cache.open(r.path, r.stat);
      }
    }
    if (closed) {
      reader.close();
      return;
    }

    const neg = negotiate(req.options, reader.size, { maxBlksize, maxWindowsize });
    const s = newSocket();
    sockets.add(s);
    s.on('error', (err) => log.debug({ err, client: key }, 'tftp transfer socket error'));
    try {
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind({ port: 0, address: host, exclusive: true }, () => {
          s.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      sockets.delete(s);
      reader.close();
      try {
        s.close();
      } catch {
        // never bound
      }
      log.error({ err }, 'tftp could not bind a transfer socket');
      refuse(client, ERR_UNDEFINED, 'server error', 'error', { file: logName });
      return;
    }
    if (closed) {
      sockets.delete(s);
      reader.close();
      s.close();
      return;
    }
    const t = new Transfer({
      socket: s,
      address: client.address,
      port: client.port,
      reader,
      blksize: neg.blksize,
      windowsize: neg.windowsize,
      maxWindowsize,
      msftwindow: neg.msftwindow,
      tsizeRequested: neg.tsizeRequested,
      oack: neg.oack.length > 0 ? encodeOack(neg.oack) : null,
      // The client's RFC 2349 timeout is a ceiling: we may resend sooner, never later.
      timing: {
        initialRtoMs: Math.min(timeoutMs, neg.timeoutMs ?? timeoutMs),
        minRtoMs: minTimeoutMs,
        maxRtoMs: Math.min(timeoutMs, neg.timeoutMs ?? timeoutMs),
        giveUpMs,
      },
      onDone: (tr, outcome, detail) => {
        sockets.delete(s);
        onDone(tr, norm.name, key, outcome, detail);
      },
      onDrop: drop,
      received: rxTransfer,
      batch: batch.forPeer(s, client.address, client.port),
    });
    transfers.set(key, t);
    m.active?.set({}, transfers.size);
    log.debug(
      {
        client: key,
        file: norm.name,
        path: diskPath || '(virtual)',
        size: reader.size,
        blksize: neg.blksize,
        windowsize: neg.windowsize,
        msftwindow: neg.msftwindow,
        ignored: neg.ignored,
      },
      'tftp transfer start',
    );
    ensureTicker();
    t.start();
  };

  main.on('message', (msg, rinfo) => {
    rxMain.packets++;
    if (closed) return;
    const pkt = decode(msg);
    if (!pkt) {
      drop('malformed');
      log.debug({ client: `${rinfo.address}:${rinfo.port}`, bytes: msg.length }, 'tftp malformed packet dropped');
      return;
    }
    const client: TftpClient = { address: rinfo.address, port: rinfo.port };
    if (pkt.op === OP_WRQ) {
      refuse(client, ERR_ACCESS, 'read-only server: write requests are refused', 'write_refused', { file: pkt.filename.replace(/[^\x20-\x7e]/g, '?') });
      return;
    }
    if (pkt.op !== OP_RRQ) {
      drop('unexpected_opcode');
      return;
    }
    const key = `${rinfo.address}:${rinfo.port}`;
    if (transfers.has(key) || pending.has(key)) {
      // A retransmitted RRQ: the transfer already running answers it with its own resends.
      drop('duplicate_request');
      return;
    }
    if (transfers.size + pending.size >= maxTransfers) {
      refuse(client, ERR_UNDEFINED, `server busy: ${maxTransfers} transfers in progress, retry later`, 'busy', { file: pkt.filename.replace(/[^\x20-\x7e]/g, '?') });
      return;
    }
    pending.add(key);
    handleRrq(pkt, client, key)
      .catch((err: unknown) => {
        log.error({ err, client: key }, 'tftp request failed');
        refuse(client, ERR_UNDEFINED, 'server error', 'error', {});
      })
      .finally(() => pending.delete(key));
  });

  let closing: Promise<void> | null = null;
  return {
    address() {
      const a = main.address();
      return { address: a.address, port: a.port };
    },
    stats() {
      return {
        received: { main: rxMain.packets, transfer: rxTransfer.packets, answeredInAddon: rxTransfer.autopilot },
        bytes: totals.bytes,
        retransmits: totals.retransmits,
        activeTransfers: transfers.size,
        pendingRequests: pending.size,
        transfers: { ...outcomes },
        droppedPackets: { ...drops },
        cache: cache.stats(),
        sendPath: batch.path,
        spin: spinStats(),
        sendBatch: batchStats(),
      };
    },
    close() {
      if (closing) return closing;
      closed = true;
      closing = (async () => {
        if (ticker) clearInterval(ticker);
        ticker = null;
        for (const t of [...transfers.values()]) t.abort('shutdown', 'server closing', 'server shutting down');
        // Requests still resolving close their own socket and reader when they see `closed`.
        while (pending.size > 0) await new Promise((r) => setTimeout(r, 5));
        for (const s of sockets) {
          try {
            s.close();
          } catch {
            // closed by its transfer
          }
        }
        sockets.clear();
        await new Promise<void>((r) => main.close(() => r()));
        cache.clear();
        log.info('tftp stopped');
      })();
      return closing;
    },
  };
}

function bindError(e: NodeJS.ErrnoException, host: string, port: number): Error {
  const where = `${host}:${port}/udp`;
  if (e.code === 'EACCES' || e.code === 'EPERM') {
    return new Error(
      `TFTP cannot bind ${where}: permission denied (${e.code}). Ports below 1024 need root or CAP_NET_BIND_SERVICE ` +
        `(e.g. setcap cap_net_bind_service=+ep on the node binary, or AmbientCapabilities=CAP_NET_BIND_SERVICE in the systemd unit), or configure a port above 1023.`,
    );
  }
  if (e.code === 'EADDRINUSE') {
    return new Error(
      `TFTP cannot bind ${where}: address in use (EADDRINUSE). Another TFTP server (tftpd-hpa, atftpd, dnsmasq --enable-tftp, in.tftpd via inetd/systemd socket) ` +
        `already owns port ${port}: stop it (e.g. systemctl disable --now tftpd-hpa atftpd.socket) or set another tftp port.`,
    );
  }
  if (e.code === 'EADDRNOTAVAIL') {
    return new Error(`TFTP cannot bind ${where}: address not available on this host (EADDRNOTAVAIL). Use an address of a local interface or 0.0.0.0.`);
  }
  return new Error(`TFTP cannot bind ${where}: ${e.code ?? ''} ${e.message}`.trim());
}

function clampInt(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, Math.floor(v)));
}
