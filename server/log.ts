import { pino, type Logger, type LoggerOptions } from 'pino';
import { LineWriter } from './log-writer.ts';

export type { Logger };

export interface LogOptions {
  level?: string;
  /** Human-readable output; defaults to true when stdout is a terminal (and never with `file`). */
  pretty?: boolean;
  /** Append JSON lines to this file instead of stdout. */
  file?: string;
}

/** The daemon's root logger: JSON lines, or pino-pretty on a terminal. Components take `.child({ component })`. */
export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.SWARMBOOT_LOG_LEVEL ?? 'info';
  const pretty = opts.file ? false : (opts.pretty ?? Boolean(process.stdout.isTTY));
  const base: LoggerOptions = { level, base: { pid: process.pid } };
  if (pretty) {
    return pino({
      ...base,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } },
    });
  }
  // Batched asynchronous writes (server/log-writer.ts): a slow log consumer (journald, a pipe)
  // never stalls DHCP or TFTP answers, and a line costs next to nothing in a PXE storm.
  return pino(base, opts.file ? LineWriter.toFile(opts.file) : new LineWriter(1));
}

/** A logger that drops everything, for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
