import { pino, destination, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: string;
  /** Human-readable output; defaults to true when stdout is a terminal. */
  pretty?: boolean;
}

/** The daemon's root logger: JSON lines, or pino-pretty on a terminal. Components take `.child({ component })`. */
export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.SWARMBOOT_LOG_LEVEL ?? 'info';
  const pretty = opts.pretty ?? Boolean(process.stdout.isTTY);
  const base: LoggerOptions = { level, base: { pid: process.pid } };
  if (pretty) {
    return pino({
      ...base,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } },
    });
  }
  // Asynchronous writes: a slow log consumer (journald, a pipe) never stalls DHCP or TFTP answers.
  // pino flushes what is buffered when the process exits.
  return pino(base, destination({ dest: 1, sync: false }));
}

/** A logger that drops everything, for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
