/**
 * Structured logging: JSON lines on stdout (journald keeps them), a readable
 * single-line format when stdout is a terminal. Modules get child loggers
 * (`logger.child({ module: 'store' })`). Secrets never go into log fields:
 * callers log ids and sizes, not keys or shares.
 */
import { pino, type Logger as PinoLogger } from 'pino';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
export const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

export interface Logger {
  trace(obj: object | string, msg?: string): void;
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
  fatal(obj: object | string, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
  level: string;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** 'json' (default when stdout is not a TTY) or 'pretty'. */
  format?: 'json' | 'pretty' | 'auto';
  /** Where lines go (default stdout). */
  destination?: NodeJS.WritableStream;
}

const PRETTY_LEVEL: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };

/** A tiny synchronous pretty printer (pino-pretty would pull in a worker thread). */
function prettyStream(out: NodeJS.WritableStream): NodeJS.WritableStream {
  return {
    write(line: string) {
      try {
        const { time, level, msg, module, pid: _pid, hostname: _h, ...rest } = JSON.parse(line);
        const extra = Object.keys(rest).length ? ' ' + JSON.stringify(rest) : '';
        out.write(`${new Date(time).toISOString().slice(11, 23)} ${PRETTY_LEVEL[level] ?? level} ${module ? `[${module}] ` : ''}${msg ?? ''}${extra}\n`);
      } catch {
        out.write(line);
      }
      return true;
    },
  } as unknown as NodeJS.WritableStream;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const out = opts.destination ?? process.stdout;
  const format = opts.format ?? 'auto';
  const pretty = format === 'pretty' || (format === 'auto' && (out as { isTTY?: boolean }).isTTY === true);
  return pino(
    { level: opts.level ?? 'info', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.epochTime },
    pretty ? prettyStream(out) : out,
  ) as PinoLogger as unknown as Logger;
}

/** A logger that drops everything (tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' }) as unknown as Logger;
}
