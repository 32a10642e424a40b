/**
 * A small TFTP read client for tests: RFC 1350/2347/7440 receiver plus the Microsoft variable window
 * as the Wireshark dissector describes it (OACK `msftwindow=27182`, then every ACK carries one trailing
 * byte: the number of DATA blocks expected before the next ACK). Hooks let a test drop packets.
 */
import dgram from 'node:dgram';
import { readdirSync } from 'node:fs';
import { decode, encodeAck, encodeError, encodeRequest, OP_DATA, OP_ERROR, OP_OACK, OP_RRQ } from '../../server/tftp/codec.ts';

export interface GetOptions {
  host?: string;
  port: number;
  file: string;
  mode?: string;
  /** Options for the RRQ, in order. */
  options?: Array<[string, string]>;
  /** Microsoft variable window: called with the window index (0 = the ACK of the OACK), returns the next window size. */
  msftWindow?: (index: number) => number;
  /** Receive timeout before re-sending the last ACK. */
  timeoutMs?: number;
  retries?: number;
  /** Return true to pretend a DATA packet was lost (nth DATA packet received, 0-based; block number). */
  dropData?: (n: number, block: number) => boolean;
  /** Return true to lose an ACK on its way out (nth ACK sent, 0-based, counting the ACK of the OACK and every repeat;
   *  block number). The client behaves as if it had sent it: it waits, and repeats it when its own timer runs out. */
  dropAck?: (n: number, block: number) => boolean;
  /**
   * Behave like atftp 0.8's receiver: answer the first old duplicate DATA with one extra ACK, ignore further
   * duplicates, and restart the timer on every packet received, so the ACK is repeated only after `timeoutMs` of
   * silence. (By default this client ignores duplicates and repeats its ACK every `timeoutMs` regardless.)
   */
  atftpStyle?: boolean;
  /** Stop after this many bytes and vanish (no ERROR), as a crashed client would. */
  vanishAfterBytes?: number;
  /** Called once with the server's transfer port (its TID) and the client's own port when the first reply arrives. */
  onServerPort?: (port: number, localPort: number) => void;
  /** Reply to the OACK with this ERROR code instead of ACK 0 (tsize probe). */
  errorAfterOack?: number;
}

export interface GetResult {
  data: Buffer;
  oack: Map<string, string> | null;
  /** DATA packets received (including duplicates). */
  packets: number;
  /** DATA packets received between consecutive ACKs (entry i: after ACK i, which carried window i). */
  windows: number[];
  /** ACKs lost on purpose (dropAck), and all ACKs that went out. */
  acksDropped: number;
  acksSent: number;
  serverPort: number;
  error?: { code: number; message: string };
}

export async function tftpGet(o: GetOptions): Promise<GetResult> {
  const host = o.host ?? '127.0.0.1';
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const timeoutMs = o.timeoutMs ?? 300;
  const retries = o.retries ?? 20;
  const chunks: Buffer[] = [];
  let bytes = 0;
  let oack: Map<string, string> | null = null;
  let blksize = 512;
  let ws = 1;
  let serverPort = -1;
  let expected = 1; // full block number expected next
  let inWindow = 0;
  let packets = 0;
  let dataSeen = 0;
  let windowIndex = 0;
  let sinceAck = 0;
  const windows: number[] = [];
  const msft = o.msftWindow !== undefined;
  let lastAck: Buffer | null = null;
  let tries = 0;
  let acksSent = 0;
  let acksDropped = 0;
  let lastAckBlock = 0;
  let extraAcked = false;

  const rrq = encodeRequest(OP_RRQ, o.file, o.mode ?? 'octet', o.options ?? []);
  let inflight = 0;
  let finished = false;
  const send = (buf: Buffer, port: number): void => {
    inflight++;
    sock.send(buf, port, host, () => {
      if (--inflight === 0 && finished) sock.close();
    });
  };
  const sendAck = (buf: Buffer, block: number): void => {
    const n = acksSent++;
    if (o.dropAck?.(n, block)) acksDropped++;
    else send(buf, serverPort);
  };
  send(rrq, o.port);

  return new Promise<GetResult>((resolve, reject) => {
    let timer: NodeJS.Timeout;
    const finish = (err?: Error, error?: { code: number; message: string }): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      // dgram resolves the address on a later tick: close only once the last datagram has gone out.
      if (inflight === 0) sock.close();
      if (err) reject(err);
      else resolve({ data: Buffer.concat(chunks), oack, packets, windows, acksDropped, acksSent: acksSent - acksDropped, serverPort, error });
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (++tries > retries) return finish(new Error(`client timeout at block ${expected}`));
        if (lastAck) sendAck(lastAck, lastAckBlock);
        else send(rrq, o.port);
        arm();
      }, timeoutMs);
    };
    const ack = (block: number): void => {
      if (dataSeen > 0) windows.push(sinceAck);
      sinceAck = 0;
      let next: number | undefined;
      if (msft && oack?.get('msftwindow') === '27182') {
        next = o.msftWindow!(windowIndex++);
        ws = next;
      }
      lastAck = encodeAck(block, next);
      lastAckBlock = block;
      sendAck(lastAck, block);
    };
    arm();
    sock.on('message', (msg, rinfo) => {
      if (finished) return;
      if (serverPort === -1) {
        serverPort = rinfo.port;
        o.onServerPort?.(serverPort, sock.address().port);
      } else if (rinfo.port !== serverPort) return;
      const p = decode(msg);
      if (!p) return finish(new Error('undecodable packet from server'));
      tries = 0;
      if (p.op === OP_ERROR) return finish(undefined, { code: p.code, message: p.message });
      if (p.op === OP_OACK) {
        if (dataSeen > 0 || oack) return;
        oack = p.options;
        blksize = Number(oack.get('blksize') ?? 512);
        ws = Number(oack.get('windowsize') ?? 1);
        if (o.errorAfterOack !== undefined) {
          send(encodeError(o.errorAfterOack, 'tsize probe done'), serverPort);
          return finish();
        }
        ack(0);
        arm();
        return;
      }
      if (p.op !== OP_DATA) return finish(new Error(`unexpected opcode ${p.op}`));
      const n = dataSeen++;
      sinceAck++;
      if (o.dropData?.(n, p.block)) return;
      packets++;
      if (p.block !== (expected & 0xffff)) {
        // Out of order: a gap (ACK what we have, once per window) or an old duplicate (ignore).
        const d = (p.block - (expected & 0xffff)) & 0xffff;
        if (d < 0x8000 && inWindow >= 0) {
          inWindow = -1;
          ack(expected - 1);
          arm();
        } else if (d >= 0x8000 && o.atftpStyle) {
          if (!extraAcked && lastAck) {
            extraAcked = true;
            sendAck(lastAck, lastAckBlock);
          }
          arm();
        }
        return;
      }
      extraAcked = false;
      if (inWindow < 0) inWindow = 0;
      chunks.push(Buffer.from(p.data));
      bytes += p.data.length;
      expected++;
      inWindow++;
      if (o.vanishAfterBytes !== undefined && bytes >= o.vanishAfterBytes) return finish();
      if (p.data.length < blksize) {
        ack(expected - 1);
        return finish();
      }
      if (inWindow >= ws) {
        inWindow = 0;
        ack(expected - 1);
      }
      arm();
    });
  });
}

/** Sends one datagram and returns the first reply (or null after `ms`). */
export async function exchange(port: number, pkt: Buffer, ms = 1000, host = '127.0.0.1'): Promise<{ msg: Buffer; port: number } | null> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      sock.close();
      resolve(null);
    }, ms);
    sock.once('message', (msg, rinfo) => {
      clearTimeout(t);
      sock.close();
      resolve({ msg, port: rinfo.port });
    });
    sock.send(pkt, port, host);
  });
}

/** Open file descriptors of this process (sockets included). */
export function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}
