/**
 * Renderers for scan progress: a bar redrawn in place on a terminal, or a plain line every few
 * seconds otherwise (CI logs, journald), both on stderr so stdout stays for command output.
 * Both are throttled: hashing reports every 4 MiB, far more often than anyone can read.
 */
import type { Logger } from '../server/log.ts';
import type { ScanProgress } from './types.ts';

export interface ProgressRenderer {
  onProgress: (p: ScanProgress) => void;
  /** Ends the bar's line (or logs the summary); safe to call when nothing was hashed. */
  finish: () => void;
}

export interface ProgressOptions {
  /** Default process.stderr. */
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Force bar (true) or lines (false); default: the stream is a terminal. */
  tty?: boolean;
  /** Minimum time between two redraws; default 100 ms for the bar, 5 s for lines. */
  intervalMs?: number;
  /** Lines mode only: log through pino instead of writing text. */
  logger?: Logger;
  now?: () => number;
}

/** Picks the bar on a terminal, log lines otherwise. */
export function createProgressRenderer(opts: ProgressOptions = {}): ProgressRenderer {
  const stream = opts.stream ?? process.stderr;
  const tty = opts.tty ?? Boolean(stream.isTTY);
  return tty ? barRenderer({ ...opts, stream }) : lineRenderer({ ...opts, stream });
}

export function barRenderer(opts: ProgressOptions = {}): ProgressRenderer {
  const stream = opts.stream ?? process.stderr;
  const every = opts.intervalMs ?? 100;
  const now = opts.now ?? Date.now;
  const rate = new RateMeter(now);
  let last = -Infinity;
  let drawn = false;
  let pending: ScanProgress | undefined;
  const draw = (p: ScanProgress): void => {
    const cols = Math.max(40, (stream.columns ?? 80) - 1);
    const pct = p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : 1;
    const bps = rate.update(p.bytesDone);
    const stats = ` ${(pct * 100).toFixed(0).padStart(3)}% ${fmtBytes(p.bytesDone)}/${fmtBytes(p.bytesTotal)} ${fmtBytes(bps)}/s ${eta(p.bytesTotal - p.bytesDone, bps)} `;
    const barWidth = Math.max(10, Math.min(30, cols - stats.length - 40));
    const fill = Math.round(pct * barWidth);
    const bar = `hashing [${'#'.repeat(fill)}${'-'.repeat(barWidth - fill)}]`;
    const room = cols - bar.length - stats.length;
    const name = ellipsis(`${p.packageId}: ${p.file}`, room);
    stream.write(`\r\x1b[K${bar}${stats}${name}`);
    drawn = true;
  };
  return {
    onProgress(p) {
      pending = p;
      const t = now();
      if (p.finished || t - last >= every) {
        last = t;
        draw(p);
        pending = undefined;
        if (p.finished) {
          stream.write('\n');
          drawn = false;
        }
      }
    },
    finish() {
      if (pending) draw(pending);
      if (drawn) stream.write('\n');
      drawn = false;
      pending = undefined;
    },
  };
}

export function lineRenderer(opts: ProgressOptions = {}): ProgressRenderer {
  const stream = opts.stream ?? process.stderr;
  const every = opts.intervalMs ?? 5000;
  const now = opts.now ?? Date.now;
  const started = now();
  const rate = new RateMeter(now);
  let last = started;
  let lastFile = '';
  const emit = (p: ScanProgress, msg: string): void => {
    const fields = {
      package: p.packageId,
      file: p.file,
      bytesDone: p.bytesDone,
      bytesTotal: p.bytesTotal,
      filesDone: p.filesDone,
      filesTotal: p.filesTotal,
    };
    if (opts.logger) opts.logger.info(fields, msg);
    else stream.write(`content: ${msg}\n`);
  };
  return {
    onProgress(p) {
      const t = now();
      const bps = rate.update(p.bytesDone);
      const key = `${p.packageId}/${p.file}`;
      if (p.finished) {
        const secs = Math.max(0.001, (t - started) / 1000);
        emit(p, `hashed ${p.filesDone} file(s), ${fmtBytes(p.bytesDone)} in ${secs.toFixed(1)} s (${fmtBytes(p.bytesDone / secs)}/s)`);
        return;
      }
      // A line when a file starts (so a long quiet hash says what it is on) and every `every` ms.
      if (key !== lastFile || t - last >= every) {
        lastFile = key;
        last = t;
        const pct = p.bytesTotal > 0 ? ((p.bytesDone / p.bytesTotal) * 100).toFixed(0) : '100';
        emit(
          p,
          `hashing ${pct}% (${fmtBytes(p.bytesDone)} of ${fmtBytes(p.bytesTotal)}, ${fmtBytes(bps)}/s, ${eta(p.bytesTotal - p.bytesDone, bps)}) file ${p.filesDone + 1}/${p.filesTotal} ${key}`,
        );
      }
    },
    // Lines need no closing: the finished event already logged the summary.
    finish() {},
  };
}

/** Bytes per second over the last few seconds, smoothed. */
class RateMeter {
  private samples: Array<[number, number]> = [];
  private readonly now: () => number;
  constructor(now: () => number) {
    this.now = now;
  }
  update(bytes: number): number {
    const t = this.now();
    this.samples.push([t, bytes]);
    while (this.samples.length > 2 && t - this.samples[0]![0] > 3000) this.samples.shift();
    const [t0, b0] = this.samples[0]!;
    return t > t0 ? ((bytes - b0) * 1000) / (t - t0) : 0;
  }
}

export function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n.toFixed(0) : n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2)} ${units[i]}`;
}

function eta(left: number, bps: number): string {
  if (bps <= 0 || left <= 0) return 'eta -';
  const s = Math.ceil(left / bps);
  return s >= 3600 ? `eta ${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `eta ${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `eta ${s}s`;
}

function ellipsis(s: string, room: number): string {
  if (room <= 1) return '';
  return s.length <= room ? s : `…${s.slice(s.length - room + 1)}`;
}
