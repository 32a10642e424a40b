/**
 * One read transfer on its own socket: windowed send (RFC 7440, or Microsoft's variable window),
 * 16-bit block numbers unwrapped to full ones (files of several GB), go-back-N on a partial or
 * duplicate ACK, and an adaptive retransmit timer that backs off and gives up after a bounded silence.
 *
 * Timing is driven by the server's shared ticker calling `tick(now)`: one interval for all transfers
 * instead of a timer re-armed on every ACK.
 */
import type { Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { encodeError, ERR_UNDEFINED, ERR_UNKNOWN_TID, OP_ACK, OP_ERROR, writeDataHeader } from './codec.ts';
import type { BlockReader } from './cache.ts';
import type { PeerSender } from './batch-send.ts';
import { AP, AP_CLOCK } from '../native-udp.ts';

/** Native receive: slot bytes (the longest ERROR a client may send: 4 + 511 + NUL) and slots per recvmmsg. */
const RX_SLOT = 516;
const RX_MAX = 8;
/**
 * With the autopilot, the ring holds packets past the window too: twice the window, or this many bytes of slots if
 * that is more (up to 128 slots: 187 KB at blksize 1456, so JavaScript refills it every 128 blocks in lock-step and
 * every 8th window at windowsize 16).
 */
const AP_RING_BYTES = 192 * 1024;
const AP_RING_SLOTS = 128;

export type Outcome = 'ok' | 'probe' | 'timeout' | 'client_error' | 'read_error' | 'shutdown';

export interface TransferTiming {
  /** Retransmit timeout before any round trip has been measured. */
  initialRtoMs: number;
  /** Floor and ceiling of the timer computed from measured round trips (RFC 6298: srtt + 4 rttvar). */
  minRtoMs: number;
  maxRtoMs: number;
  /**
   * Time without progress (an ACK that moves the transfer on) before the transfer is abandoned. Consecutive
   * timeouts double the timer up to a quarter of this, past maxRtoMs: see `tick`.
   */
  giveUpMs: number;
}

export interface TransferInit {
  socket: Socket;
  address: string;
  port: number;
  reader: BlockReader;
  blksize: number;
  windowsize: number;
  maxWindowsize: number;
  msftwindow: boolean;
  tsizeRequested: boolean;
  /** OACK to send first, or null for a plain RFC 1350 transfer that starts with DATA 1. */
  oack: Buffer | null;
  timing: TransferTiming;
  onDone: (t: Transfer, outcome: Outcome, detail: string) => void;
  /** Packets that arrived and were not used, by reason (counted by the server). */
  onDrop: (reason: string) => void;
  /** Shared datagram counters of all transfer sockets: all, and the ACKs the addon's autopilot answered. */
  received: { packets: number; autopilot: number };
  /** Sends each window's DATA in one syscall (native addon), or null: one dgram send per block. */
  batch?: PeerSender | null;
}

export class Transfer {
  readonly address: string;
  readonly port: number;
  readonly size: number;
  readonly blksize: number;
  readonly startedAt = performance.now();
  readonly lastBlock: number;

  /** Counters the server folds into its metrics. */
  retransmits = 0;
  ackedBytes = 0;
  flushedBytes = 0;
  flushedRetransmits = 0;

  private readonly socket: Socket;
  private readonly reader: BlockReader;
  private readonly init: TransferInit;
  private readonly timing: TransferTiming;

  private phase: 'oack' | 'data' | 'done' = 'data';
  private ws: number;
  /** Highest full block number acknowledged (0 = OACK acknowledged or nothing yet). */
  private acked = 0;
  /** Highest full block number ever sent. */
  private sentMax = 0;
  private next = 1;
  /** First block of the window being sent. */
  private windowFrom = 0;
  private windowEnd = 0;
  private windowSentAt = 0;
  private windowResent = false;
  /** The window just acknowledged went out more than once: its spare copies may still draw one stale ACK. */
  private staleAckExpected = false;
  /** A duplicate ACK already triggered a resend of the current window. */
  private dupResent = false;
  private lastSendAt = 0;
  private waitingForDisk = false;
  deadline = Infinity;
  /** Timeouts since the last progress. */
  private tries = 0;
  private lastProgressAt = performance.now();
  private rto: number;
  private maxRto: number;
  private readonly maxBackoff: number;
  private srtt = -1;
  private rttvar = 0;
  private slots: Buffer[] = [];
  /** The slots' backing memory, in slot order: a window is a run of it, wrapping at its end. */
  private pool: Buffer = Buffer.alloc(0);
  private readonly batch: PeerSender | null;
  /** Receiving through the addon: no dgram send may touch the socket (see native-udp.ts). */
  private readonly native: boolean;
  private readonly onReadyBound: (err: Error | null) => void;
  /** State shared with the addon's autopilot (see AP in native-udp.ts), or null: every ACK comes to onAck. */
  private readonly ap: Float64Array | null;

  constructor(init: TransferInit) {
    this.init = init;
    this.socket = init.socket;
    this.reader = init.reader;
    this.address = init.address;
    this.port = init.port;
    this.size = init.reader.size;
    this.blksize = init.blksize;
    this.ws = init.windowsize;
    this.timing = init.timing;
    this.maxRto = init.timing.maxRtoMs;
    this.rto = Math.min(init.timing.initialRtoMs, this.maxRto);
    this.maxBackoff = Math.max(this.maxRto, this.rto, init.timing.giveUpMs / 4);
    // A file that is an exact multiple of blksize ends with an empty block.
    this.lastBlock = Math.floor(this.size / this.blksize) + 1;
    this.onReadyBound = (err) => this.onDiskReady(err);
    this.batch = init.batch ?? null;
    // ACKs through the addon when it can take the socket over (one recvmmsg and one callback per wakeup, no Buffer
    // or address object per ACK); else dgram's 'message' events. Slots of 516 bytes hold any ACK or ERROR a client
    // may send (an ERROR message is at most 512 bytes); anything longer is reported truncated and dropped.
    this.native = this.batch?.receive(RX_SLOT, RX_MAX, (n) => this.onNative(n), () => this.onWritable()) ?? false;
    if (!this.native) this.socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo.address, rinfo.port));
    // The autopilot answers 4-byte ACKs with GSO windows: not for the Microsoft window (5-byte ACKs, a window size
    // that changes with each) nor where windows go out through sendmmsg or dgram.
    this.ap = this.native && this.batch!.cutsWindows && !init.msftwindow ? new Float64Array(AP.WORDS) : null;
    if (this.ap) {
      const ap = this.ap;
      ap[AP.WS] = this.ws;
      ap[AP.LAST_BLOCK] = this.lastBlock;
      ap[AP.LAST_LEN] = this.size - (this.lastBlock - 1) * this.blksize;
      ap[AP.SEG] = this.blksize + 4;
      ap[AP.MIN_RTO] = this.timing.minRtoMs;
      ap[AP.MAX_RTO] = this.maxRto;
      ap[AP.GIVE_UP] = this.timing.giveUpMs;
      ap[AP.CLOCK] = AP_CLOCK;
    }
  }

  /** Sends the OACK (or the first window) and starts the clock. */
  start(): void {
    if (this.init.oack) {
      this.phase = 'oack';
      this.sendOack();
    } else {
      this.phase = 'data';
      this.sendWindow(1, false);
      this.syncOut();
    }
  }

  get done(): boolean {
    return this.phase === 'done';
  }

  get blocksAcked(): number {
    return this.acked;
  }

  /**
   * Called by the server's ticker. Each timeout resends and doubles the timer, past the adaptive ceiling up to a
   * quarter of giveUpMs: the first resends come fast (a lost DATA on a LAN costs milliseconds), the later ones
   * leave silences longer than a client's own retransmit timer. That matters for clients like atftp, which answer
   * a resent block with one extra ACK and then ignore further copies until their timer (5 s) runs out, a timer
   * that every copy restarts: if that extra ACK is lost too, only a pause longer than their timer lets them speak.
   */
  tick(now: number): void {
    if (this.ap !== null && this.ap[AP.HANDLED] !== 0) this.syncIn();
    if (this.phase === 'done' || now < this.deadline) return;
    if (now - this.lastProgressAt >= this.giveUpAfter()) {
      this.send(encodeError(ERR_UNDEFINED, 'transfer timed out'));
      this.finish('timeout', `no ACK for block ${this.acked + 1} in ${Math.round(now - this.lastProgressAt)} ms, ${this.tries} resends`);
      return;
    }
    this.tries++;
    this.rto = Math.min(this.rto * 2, this.maxBackoff);
    if (this.phase === 'oack') this.sendOack();
    else this.sendWindow(this.acked + 1, true);
    this.syncOut();
  }

  /** Ends the transfer from outside (server shutdown). */
  abort(outcome: Outcome, detail: string, message?: string): void {
    if (this.phase === 'done') return;
    this.syncIn();
    if (message) this.send(encodeError(ERR_UNDEFINED, message));
    this.finish(outcome, detail);
  }

  private onMessage(msg: Buffer, address: string, port: number): void {
    this.init.received.packets++;
    if (this.phase === 'done') return;
    if (port !== this.port || address !== this.address) {
      this.foreign(address, port);
      return;
    }
    this.onPacket(msg, 0, msg.length);
  }

  /** A batch from the native receiver: datagram i at i * RX_SLOT of its ring. */
  private onNative(n: number): void {
    const rx = this.batch!.rx!;
    const ring = rx.ring;
    this.syncIn();
    this.init.received.packets += n;
    for (let i = 0; i < n && this.phase !== 'done'; i++) {
      const len = rx.length(i);
      if (!this.batch!.fromPeer(i)) this.foreign(rx.address(i), rx.port(i));
      else if (len < 0) this.init.onDrop('unexpected_packet');
      else this.onPacket(ring, i * RX_SLOT, len);
    }
    this.syncOut();
  }

  /** RFC 1350: a packet from the wrong TID gets ERROR 5 and the transfer carries on. */
  private foreign(address: string, port: number): void {
    this.init.onDrop('foreign_tid');
    const err = encodeError(ERR_UNKNOWN_TID, 'unknown transfer ID');
    if (this.native) {
      this.batch!.rx!.sendTo(err, address, port);
      return;
    }
    try {
      this.socket.send(err, port, address);
    } catch {
      // socket closing
    }
  }

  /** The socket's send buffer has room again after a window did not fit: send the rest. */
  private onWritable(): void {
    this.syncIn();
    if (this.phase === 'data' && !this.waitingForDisk) this.pump();
    this.syncOut();
  }

  /** A datagram from the peer: `len` bytes at `off` in `msg`. */
  private onPacket(msg: Buffer, off: number, len: number): void {
    if (len >= 4 && len <= 5 && msg[off] === 0 && msg[off + 1] === OP_ACK) {
      this.onAck((msg[off + 2]! << 8) | msg[off + 3]!, len === 5 ? msg[off + 4]! : -1);
      return;
    }
    if (len >= 4 && msg[off] === 0 && msg[off + 1] === OP_ERROR) {
      const code = msg.readUInt16BE(off + 2);
      const end = msg.subarray(off, off + len).indexOf(0, 4);
      const text = msg.toString('latin1', off + 4, off + Math.min(end === -1 ? len : end, 132)).replace(/[^\x20-\x7e]/g, '?');
      // UEFI PXE asks for tsize, reads the OACK and says "that's all": a probe, not a failure.
      if (this.phase === 'oack' && this.init.tsizeRequested && (code === 8 || code === 0)) {
        this.finish('probe', `tsize probe (ERROR ${code} ${text})`);
      } else {
        this.finish('client_error', `client sent ERROR ${code}: ${text}`);
      }
      return;
    }
    this.init.onDrop('unexpected_packet');
  }

  private onAck(block16: number, nextWindow: number): void {
    const now = performance.now();
    if (this.phase === 'oack') {
      if (block16 !== 0) {
        this.init.onDrop('bad_ack');
        return;
      }
      this.phase = 'data';
      // Karn: a round trip is measured only when the OACK went out once (an ACK to a resent one is ambiguous).
      const clean = this.tries === 0;
      this.progress(now);
      if (clean) this.sample(now - this.lastSendAt);
      if (this.init.msftwindow && nextWindow > 0) this.ws = Math.min(nextWindow, this.init.maxWindowsize);
      this.sendWindow(1, false);
      return;
    }
    // Unwrap the 16-bit block number to the full one nearest what we already know is acknowledged.
    let d = (block16 - (this.acked & 0xffff)) & 0xffff;
    if (d >= 0x8000) d -= 0x10000;
    const full = this.acked + d;
    if (full > this.sentMax || full < this.acked) {
      this.init.onDrop(full < this.acked ? 'stale_ack' : 'bad_ack');
      return;
    }
    if (this.init.msftwindow && nextWindow > 0) this.ws = Math.min(nextWindow, this.init.maxWindowsize);
    if (full === this.acked) {
      // Duplicate ACK: the client is missing block acked+1, so resend now rather than at the timeout.
      // But when the last window went out twice, its spare copy makes the client repeat its ACK; answering
      // that with yet another window is the sorcerer's apprentice, so that one is ignored. At most one
      // resend per window comes from duplicates; the timer covers the rest.
      if (this.staleAckExpected) {
        this.staleAckExpected = false;
        this.init.onDrop('stale_ack');
        return;
      }
      if (this.dupResent || this.waitingForDisk) return;
      this.dupResent = true;
      this.sendWindow(this.acked + 1, true);
      return;
    }
    if (full === this.windowEnd && !this.windowResent) this.sample(now - this.windowSentAt);
    this.staleAckExpected = this.windowResent;
    this.dupResent = false;
    this.acked = full;
    this.progress(now);
    this.ackedBytes = Math.min(this.size, full * this.blksize);
    if (full >= this.lastBlock) {
      this.finish('ok', 'complete');
      return;
    }
    // A partial ACK means the client saw a gap: go back to the block after it (RFC 7440).
    this.sendWindow(full + 1, full < this.windowEnd);
  }

  /** The client moved the transfer on: it is alive, so a timer backed off past the adaptive ceiling comes back to it. */
  private progress(now: number): void {
    this.lastProgressAt = now;
    this.tries = 0;
    if (this.rto > this.maxRto) this.rto = this.maxRto;
  }

  /**
   * Silence tolerated before giving up. An OACK nobody acknowledges is almost always a tsize probe whose client
   * moved on without sending ERROR 8 (some PXE ROMs do): that gets five initial timeouts, as before the first
   * measured round trip, so a boot storm's orphaned probes do not hold transfer slots for the full giveUpMs.
   */
  private giveUpAfter(): number {
    return this.phase === 'oack' ? Math.min(this.timing.giveUpMs, 5 * this.timing.initialRtoMs) : this.timing.giveUpMs;
  }

  /** Arms the retransmit timer, never past the moment the transfer is to be given up. */
  private arm(now: number): void {
    this.deadline = Math.min(now + this.rto, this.lastProgressAt + this.giveUpAfter());
  }

  private sample(rtt: number): void {
    if (!(rtt >= 0)) return;
    if (this.srtt < 0) {
      this.srtt = rtt;
      this.rttvar = rtt / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - rtt);
      this.srtt = 0.875 * this.srtt + 0.125 * rtt;
    }
    this.rto = Math.min(Math.max(this.srtt + 4 * this.rttvar, this.timing.minRtoMs), this.maxRto);
  }

  private sendOack(): void {
    this.send(this.init.oack!);
    this.lastSendAt = performance.now();
    this.arm(this.lastSendAt);
  }

  private sendWindow(from: number, resend: boolean): void {
    this.next = from;
    this.windowFrom = from;
    this.windowEnd = Math.min(from + this.ws - 1, this.lastBlock);
    this.windowResent = resend || from <= this.sentMax;
    const bs = this.blksize;
    const endByte = Math.min(this.size, this.windowEnd * bs);
    this.reader.want((from - 1) * bs, endByte);
    this.pump();
  }

  private pump(): void {
    if (this.phase !== 'data' || this.waitingForDisk) return;
    const bs = this.blksize;
    const size = this.size;
    const windowEnd = this.windowEnd;
    if (this.slots.length < this.ws) this.growSlots();
    const slots = this.slots;
    const nslots = slots.length;
    const batch = this.batch !== null;
    // Blocks filled but not yet sent, when batching: first block and bytes (they sit in consecutive slots).
    let runFrom = 0;
    let runBytes = 0;
    while (this.next <= windowEnd) {
      const b = this.next;
      const off = (b - 1) * bs;
      const len = Math.min(bs, size - off);
      let pkt = slots[b % nslots]!;
      if (len < bs) pkt = pkt.subarray(0, 4 + len);
      if (len > 0 && !this.reader.copy(off, len, pkt, 4)) {
        if (runBytes > 0) this.sendRun(runFrom, runBytes);
        this.waitingForDisk = true;
        this.deadline = Infinity;
        this.reader.onReady(this.onReadyBound);
        return;
      }
      writeDataHeader(pkt, b);
      if (b <= this.sentMax) this.retransmits++;
      else this.sentMax = b;
      if (batch) {
        if (runBytes === 0) runFrom = b;
        runBytes += pkt.length;
        // The first block of a window goes out on its own when the rest will be one GSO buffer: the client is woken
        // by it while the kernel still copies and cuts the rest (nothing of a GSO buffer is queued before all of it
        // is cut). Measured on loopback at windowsize 16: 7-15% faster, for one more syscall per window.
        if (b === this.windowFrom && b < windowEnd && this.batch!.cutsWindows) {
          runBytes = 0;
          // A full send buffer: the rest waits for room (onWritable), from this.next.
          if (!this.sendRun(b, pkt.length)) break;
        }
      } else {
        this.send(pkt);
      }
      this.next = b + 1;
    }
    if (runBytes > 0) this.sendRun(runFrom, runBytes);
    const now = performance.now();
    this.lastSendAt = now;
    this.windowSentAt = now;
    this.arm(now);
  }

  /**
   * Sends blocks from..(from + bytes/seg) in one go. Only the last block of the file is short, and it is always the
   * last of a run, which is the shape GSO wants: equal segments, the last one possibly shorter. False when the send
   * buffer took only part of them (native receive: the rest waits for onWritable, from this.next).
   */
  private sendRun(from: number, bytes: number): boolean {
    const seg = this.blksize + 4;
    const slots = this.slots;
    const n = slots.length;
    let at = this.batch!.send(this.pool, (from % n) * seg, bytes, seg);
    if (this.native) {
      // dgram may not send on a socket the addon receives on: what did not fit waits for room (onWritable). The
      // blocks not sent count as sent for sentMax (any ACK for them is still one the client may send after a
      // resend), so their later sending counts as retransmits.
      if (at < bytes) {
        this.next = from + Math.floor(at / seg);
        this.batch!.rx!.wantWritable();
        return false;
      }
      return true;
    }
    // What the batch did not send (a full socket buffer) goes through dgram, which queues it in order.
    for (let b = from + Math.floor(at / seg); at < bytes; b++) {
      const len = Math.min(seg, bytes - at);
      const pkt = slots[b % n]!;
      this.send(len < seg ? pkt.subarray(0, len) : pkt);
      at += len;
    }
    return true;
  }

  private onDiskReady(err: Error | null): void {
    this.waitingForDisk = false;
    if (this.phase === 'done') return;
    this.syncIn();
    if (err) {
      this.send(encodeError(ERR_UNDEFINED, 'read error on server'));
      this.finish('read_error', err.message);
      return;
    }
    this.pump();
    this.syncOut();
  }

  private growSlots(): void {
    // Slot for block b is b % slots.length: blocks of one window never share a slot, and a slot is
    // only rewritten for a later window once the client has acknowledged the block it held. With the autopilot,
    // the slots past the window hold the next windows' packets, ready before their ACK comes.
    const seg = this.blksize + 4;
    const n = this.ap ? Math.max(2 * this.ws, Math.min(AP_RING_SLOTS, Math.floor(AP_RING_BYTES / seg))) : this.ws;
    const slots: Buffer[] = [];
    const pool = Buffer.allocUnsafeSlow(n * seg);
    for (let i = 0; i < n; i++) slots.push(pool.subarray(i * seg, (i + 1) * seg));
    this.slots = slots;
    this.pool = pool;
    if (this.ap) {
      this.ap[AP.SLOTS] = n;
      this.ap[AP.READY] = 0;
      if (!this.batch!.autopilot(this.ap, pool)) this.ap[AP.SLOTS] = 0;
    }
  }

  /**
   * Takes back what the addon's autopilot did since JavaScript last ran for this transfer: each ACK it answered
   * closed a window sent once and opened the next, exactly as onAck and pump would have (see native/udp_batch.c).
   * Called first on every entry (a batch of datagrams, writable, disk ready, the ticker, abort).
   */
  private syncIn(): void {
    const ap = this.ap;
    if (ap === null || ap[AP.HANDLED] === 0) return;
    this.init.received.packets += ap[AP.HANDLED]!;
    this.init.received.autopilot += ap[AP.HANDLED]!;
    ap[AP.HANDLED] = 0;
    this.acked = ap[AP.ACKED]!;
    this.sentMax = ap[AP.SENT_MAX]!;
    this.next = ap[AP.NEXT]!;
    this.windowFrom = ap[AP.WIN_FROM]!;
    this.windowEnd = ap[AP.WIN_END]!;
    this.windowSentAt = ap[AP.WIN_SENT_AT]!;
    this.lastSendAt = this.windowSentAt;
    this.lastProgressAt = ap[AP.PROGRESS_AT]!;
    this.srtt = ap[AP.SRTT]!;
    this.rttvar = ap[AP.RTTVAR]!;
    this.rto = ap[AP.RTO]!;
    this.deadline = ap[AP.DEADLINE]!;
    this.tries = 0;
    this.windowResent = false;
    this.staleAckExpected = false;
    this.dupResent = false;
    this.ackedBytes = Math.min(this.size, this.acked * this.blksize);
  }

  /**
   * Hands the state to the autopilot and fills the slots past the window with the next packets (as far as the
   * cache has them, and never over a block the client has not acknowledged), or turns it off when the state is not
   * plain: not in the data phase, waiting for the disk, a window resent or a timeout since the last progress, a
   * window not yet all sent, the last window out, or GSO refused on this route. Called last on every entry.
   */
  private syncOut(): void {
    const ap = this.ap;
    if (ap === null) return;
    if (
      this.phase !== 'data' ||
      this.waitingForDisk ||
      this.windowResent ||
      this.tries !== 0 ||
      this.next <= this.windowEnd ||
      this.windowEnd >= this.lastBlock ||
      ap[AP.SLOTS] === 0 ||
      !this.batch!.cutsWindows
    ) {
      ap[AP.ON] = 0;
      return;
    }
    const bs = this.blksize;
    const slots = this.slots;
    const n = slots.length;
    const first = this.windowEnd + 1;
    let ready = ap[AP.READY_FROM] === first ? ap[AP.READY]! : 0;
    const limit = Math.min(this.lastBlock, this.acked + n);
    if (first + ready <= limit) {
      this.reader.want((this.windowFrom - 1) * bs, Math.min(this.size, limit * bs));
      for (let b = first + ready; b <= limit; b++) {
        const off = (b - 1) * bs;
        const len = Math.min(bs, this.size - off);
        const pkt = slots[b % n]!;
        if (len > 0 && !this.reader.copy(off, len, pkt, 4)) break;
        writeDataHeader(pkt, b);
        ready++;
      }
    }
    ap[AP.READY_FROM] = first;
    ap[AP.READY] = ready;
    ap[AP.EXPECT16] = this.windowEnd & 0xffff;
    ap[AP.WIN_FROM] = this.windowFrom;
    ap[AP.WIN_END] = this.windowEnd;
    ap[AP.NEXT] = this.next;
    ap[AP.SENT_MAX] = this.sentMax;
    ap[AP.ACKED] = this.acked;
    ap[AP.WIN_SENT_AT] = this.windowSentAt;
    ap[AP.PROGRESS_AT] = this.lastProgressAt;
    ap[AP.SRTT] = this.srtt;
    ap[AP.RTTVAR] = this.rttvar;
    ap[AP.RTO] = this.rto;
    ap[AP.DEADLINE] = this.deadline;
    ap[AP.ON] = 1;
  }

  private send(buf: Buffer): void {
    if (this.native) {
      // A control packet (OACK, ERROR) that finds the buffer full is lost like one lost on the wire: the timer
      // resends an OACK, and an ERROR is best effort in TFTP anyway.
      this.batch!.sendOne(buf);
      return;
    }
    try {
      this.socket.send(buf, this.port, this.address);
    } catch {
      // The socket is closing; the transfer is ending anyway.
    }
  }

  private finish(outcome: Outcome, detail: string): void {
    if (this.phase === 'done') return;
    this.phase = 'done';
    if (this.ap) this.ap[AP.ON] = 0;
    this.deadline = Infinity;
    this.reader.close();
    this.slots = [];
    this.pool = Buffer.alloc(0);
    this.batch?.rx?.stop();
    try {
      this.socket.close();
    } catch {
      // already closed
    }
    this.init.onDone(this, outcome, detail);
  }
}
