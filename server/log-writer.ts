/**
 * Where the daemon's JSON log lines go: a file descriptor (stdout for journald, or a file), written
 * in batches from the event loop without ever blocking it.
 *
 * pino's own asynchronous destination (sonic-boom) measures the UTF-8 length of its whole pending
 * buffer on every line, so each line costs more the more are waiting: 6-9 µs a line in a DHCP storm,
 * as much as deciding the answer. Here a line costs an array push: a line after a quiet spell is
 * written at once, and lines that follow within `flushMs` gather (up to `flushBytes`) and go out
 * in one write, with one write in flight at a time.
 *
 * Bounded: past `maxBufferedBytes` waiting (a consumer that stopped reading), lines are dropped and
 * counted, and one line saying how many were lost is written once the consumer catches up. Partial
 * writes and EAGAIN (a non-blocking pipe) are retried. What is waiting is written synchronously when
 * the process exits, so a clean stop or an exception loses no line (as with pino's own destination).
 */
import fs from 'node:fs';

export interface LineWriterOptions {
  /** Write once this many bytes wait (default 16 KiB). */
  flushBytes?: number;
  /** Write what waits after at most this long (default 20 ms). */
  flushMs?: number;
  /** Drop lines past this much waiting (default 16 MiB). */
  maxBufferedBytes?: number;
}

export class LineWriter {
  private readonly fd: number;
  private readonly flushBytes: number;
  private readonly flushMs: number;
  private readonly maxBuffered: number;
  private lines: string[] = [];
  /** UTF-16 length of what waits: close enough to bytes for thresholds, and free to keep. */
  private pending = 0;
  private writing: Buffer | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Dropped since the last line that reported drops. */
  private dropped = 0;
  private droppedTotal = 0;
  private dead = false;
  private lastWriteAt = -Infinity;
  private readonly waiters: Array<(err?: Error) => void> = [];
  private readonly onExit = () => this.flushSync();

  constructor(fd: number, opts: LineWriterOptions = {}) {
    this.fd = fd;
    this.flushBytes = opts.flushBytes ?? 16 * 1024;
    this.flushMs = opts.flushMs ?? 20;
    this.maxBuffered = opts.maxBufferedBytes ?? 16 * 1024 * 1024;
    process.on('exit', this.onExit);
  }

  /** Open (append) a log file. */
  static toFile(file: string, opts?: LineWriterOptions): LineWriter {
    return new LineWriter(fs.openSync(file, 'a'), opts);
  }

  /** Lines that could not be written because the consumer was too slow or gone (since start). */
  get droppedLines(): number {
    return this.droppedTotal;
  }

  write(line: string): boolean {
    if (this.dead) return false;
    // The buffer in flight counts too: a stalled consumer holds it until it reads again.
    if (this.pending + (this.writing?.length ?? 0) + line.length > this.maxBuffered) {
      this.dropped++;
      this.droppedTotal++;
      return false;
    }
    this.lines.push(line);
    this.pending += line.length;
    if (this.writing || this.timer) return true;
    // A line after a quiet spell goes out at once; lines that follow it within flushMs wait for it.
    const now = performance.now();
    const since = now - this.lastWriteAt;
    if (this.pending >= this.flushBytes || since >= this.flushMs) this.startWrite();
    else this.timer = setTimeout(() => this.startWrite(), this.flushMs - since).unref();
    return true;
  }

  /** pino's logger.flush(cb) lands here: everything written so far is out when cb runs. */
  flush(cb?: (err?: Error) => void): void {
    if (!this.writing && this.lines.length === 0) {
      cb?.();
      return;
    }
    if (cb) this.waiters.push(cb);
    if (!this.writing) this.startWrite();
  }

  /** Write everything now, blocking (process exit). */
  flushSync(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.dead) return;
    // A write already in flight is the thread pool's (it was handed over before anything queued
    // here): write only what queued after it, never a line twice.
    const buf = Buffer.from(this.takeLines());
    this.writing = undefined;
    let off = 0;
    let eagain = 0;
    while (off < buf.length) {
      try {
        off += fs.writeSync(this.fd, buf, off);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EAGAIN' && eagain++ < 1000) continue;
        return;
      }
    }
  }

  /** Stop (after writing what waits), and close the descriptor if it is not stdout or stderr. */
  end(): void {
    this.flushSync();
    this.dead = true;
    process.off('exit', this.onExit);
    if (this.fd > 2) fs.closeSync(this.fd);
  }

  private takeLines(): string {
    let text = this.lines.join('');
    this.lines = [];
    this.pending = 0;
    if (this.dropped > 0) {
      text += `${JSON.stringify({ level: 40, time: Date.now(), component: 'log', dropped: this.dropped, msg: `${this.dropped} log lines dropped: the log output was not keeping up` })}\n`;
      this.dropped = 0;
    }
    return text;
  }

  private startWrite(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.writing || this.dead) return;
    if (this.lines.length === 0) {
      this.settle();
      return;
    }
    this.lastWriteAt = performance.now();
    this.writeOut(Buffer.from(this.takeLines()), 0);
  }

  private writeOut(buf: Buffer, off: number): void {
    this.writing = buf;
    fs.write(this.fd, buf, off, buf.length - off, null, (err, n) => {
      if (this.writing !== buf) return; // flushSync took over
      if (err) {
        if (err.code === 'EAGAIN') {
          setTimeout(() => this.writeOut(buf, off), 10).unref();
          return;
        }
        // EPIPE, EBADF: nobody reads the log any more. Stop writing; never throw into the daemon.
        this.dead = true;
        this.writing = undefined;
        this.lines = [];
        this.settle(err);
        return;
      }
      if (off + n < buf.length) {
        this.writeOut(buf, off + n);
        return;
      }
      this.writing = undefined;
      if (this.lines.length > 0 && (this.pending >= this.flushBytes || this.waiters.length > 0)) this.startWrite();
      else if (this.lines.length > 0 && !this.timer) this.timer = setTimeout(() => this.startWrite(), this.flushMs).unref();
      else this.settle();
    });
  }

  private settle(err?: Error): void {
    if (this.writing || (this.lines.length > 0 && !err)) return;
    for (const cb of this.waiters.splice(0)) cb(err);
  }
}
