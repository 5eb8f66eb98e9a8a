/**
 * sd_notify(3) for a Type=notify (or notify-reload) unit: readiness, status
 * text, reload/stop announcements and watchdog keep-alives, sent as
 * newline-separated KEY=VALUE datagrams to the AF_UNIX socket named by
 * $NOTIFY_SOCKET.
 *
 * Node has no Unix datagram sockets, so the native `node-unix-socket` package
 * sends them. It is loaded only when $NOTIFY_SOCKET is set: outside systemd
 * (development, tests, containers) the native code is never touched, and if
 * it cannot load under systemd the daemon runs on without notifications and
 * says so, rather than failing to start.
 *
 * Nothing here ever throws or rejects for a delivery problem: a lost status
 * message must not take the daemon down. systemd itself will notice a missing
 * READY=1 or WATCHDOG=1 and act on it.
 *
 * There is no options.ts: the only inputs are the environment variables
 * systemd sets (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID).
 */
import { createRequire } from 'node:module';
import type { DgramSocket } from 'node-unix-socket';
import { QmpcError } from '../errors.ts';
import type { Logger } from '../logger.ts';

export interface NotifierDeps {
  logger: Logger;
  /** Defaults to process.env; tests pass their own. */
  env?: NodeJS.ProcessEnv;
}

export type NotifyFields = Readonly<Record<string, string | number>>;

export interface SdNotifier {
  /** True when $NOTIFY_SOCKET names a socket we can send to. */
  readonly enabled: boolean;
  /** Sends one datagram of KEY=VALUE lines; resolves true once the kernel took it. */
  notify(fields: NotifyFields): Promise<boolean>;
  /** READY=1 (+ STATUS). */
  ready(status?: string): Promise<boolean>;
  status(text: string): Promise<boolean>;
  watchdog(): Promise<boolean>;
  /** RELOADING=1 with MONOTONIC_USEC, which Type=notify-reload (systemd ≥ 253) requires. */
  reloading(status?: string): Promise<boolean>;
  stopping(status?: string): Promise<boolean>;
  /** MAINPID=pid (default: this process). */
  mainPid(pid?: number): Promise<boolean>;
}

/** A field name that sd_notify would misparse (programming error, not an environment problem). */
export class NotifyFieldError extends QmpcError {
  constructor(message: string) {
    super('ERR_NOTIFY_FIELD', message);
  }
}

// sockaddr_un.sun_path is 108 bytes including the terminating NUL.
const SUN_PATH_MAX = 107;
const FIELD_NAME = /^[A-Z_][A-Z0-9_]*$/;
// A send that neither succeeds nor fails this fast has a wedged receiver; give up on it.
const SEND_TIMEOUT_MS = 1_000;

type DgramSocketCtor = new () => DgramSocket;

/** Where $NOTIFY_SOCKET points, or why it cannot be used. */
export function parseNotifySocket(value: string | undefined): { address: string } | { error: string } | null {
  if (value === undefined || value === '') return null;
  let address: string;
  if (value.startsWith('@')) address = '\0' + value.slice(1);
  else if (value.startsWith('/')) address = value;
  else return { error: `unsupported NOTIFY_SOCKET ${JSON.stringify(value)}: expected an absolute path or an @abstract name` };
  if (Buffer.byteLength(address) > SUN_PATH_MAX) return { error: `NOTIFY_SOCKET is longer than ${SUN_PATH_MAX} bytes` };
  return { address };
}

/** Builds the datagram; newlines inside values would start a bogus field, so they become spaces. */
export function formatNotify(fields: NotifyFields): string {
  const lines: string[] = [];
  for (const [key, value] of Object.entries(fields)) {
    if (!FIELD_NAME.test(key)) throw new NotifyFieldError(`sd_notify field name ${JSON.stringify(key)} is not of the form [A-Z_][A-Z0-9_]*`);
    lines.push(`${key}=${String(value).replace(/[\r\n]+/g, ' ')}`);
  }
  return lines.join('\n');
}

function loadDgramSocket(): DgramSocketCtor {
  const require = createRequire(import.meta.url);
  return (require('node-unix-socket') as { DgramSocket: DgramSocketCtor }).DgramSocket;
}

const disabledNotifier = (): SdNotifier => {
  const no = async (): Promise<boolean> => false;
  return { enabled: false, notify: no, ready: no, status: no, watchdog: no, reloading: no, stopping: no, mainPid: no };
};

export function createNotifier(deps: NotifierDeps): SdNotifier {
  const logger = deps.logger;
  const target = parseNotifySocket((deps.env ?? process.env).NOTIFY_SOCKET);
  if (target === null) {
    logger.debug('NOTIFY_SOCKET not set; systemd notifications off');
    return disabledNotifier();
  }
  if ('error' in target) {
    logger.warn({ reason: target.error }, 'systemd notifications off');
    return disabledNotifier();
  }
  let Socket: DgramSocketCtor;
  try {
    Socket = loadDgramSocket();
  } catch (e) {
    logger.warn({ err: e }, 'cannot load node-unix-socket; systemd notifications off');
    return disabledNotifier();
  }
  const { address } = target;
  const shown = address.startsWith('\0') ? '@' + address.slice(1) : address;

  // Warn once per outage: the watchdog would otherwise repeat the same line every few seconds.
  let failing = false;
  const failed = (e: unknown, payload: string): void => {
    const fields = { socket: shown, error: (e as Error)?.message ?? String(e), message: payload.split('\n')[0] };
    if (!failing) logger.warn(fields, 'sd_notify failed');
    else logger.debug(fields, 'sd_notify failed');
    failing = true;
  };

  // One socket per message, as libsystemd does: nothing stays open to keep
  // the event loop alive, and a receiver that went away costs nothing.
  const send = (payload: string): Promise<boolean> =>
    new Promise<boolean>((resolve) => {
      let sock: DgramSocket;
      try {
        sock = new Socket();
      } catch (e) {
        failed(e, payload);
        resolve(false);
        return;
      }
      let done = false;
      const finish = (err: unknown): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.close();
        if (err) {
          failed(err, payload);
          resolve(false);
        } else {
          if (failing) logger.info({ socket: shown }, 'sd_notify works again');
          failing = false;
          resolve(true);
        }
      };
      const timer = setTimeout(() => finish(new Error(`no answer from the socket within ${SEND_TIMEOUT_MS} ms`)), SEND_TIMEOUT_MS);
      timer.unref();
      sock.on('error', finish);
      const buf = Buffer.from(payload);
      try {
        sock.sendTo(buf, 0, buf.length, address, (err) => finish(err));
      } catch (e) {
        finish(e ?? new Error('sendTo failed'));
      }
    });

  const notify = async (fields: NotifyFields): Promise<boolean> => send(formatNotify(fields));
  const withStatus = (fields: Record<string, string | number>, status?: string) =>
    notify(status === undefined ? fields : { ...fields, STATUS: status });

  return {
    enabled: true,
    notify,
    ready: (status) => withStatus({ READY: 1 }, status),
    status: (text) => notify({ STATUS: text }),
    watchdog: () => notify({ WATCHDOG: 1 }),
    // libuv's hrtime is CLOCK_MONOTONIC on Linux, the clock systemd compares against.
    reloading: (status) => withStatus({ RELOADING: 1, MONOTONIC_USEC: String(process.hrtime.bigint() / 1000n) }, status),
    stopping: (status) => withStatus({ STOPPING: 1 }, status),
    mainPid: (pid = process.pid) => notify({ MAINPID: pid }),
  };
}

export interface WatchdogDeps {
  notifier: SdNotifier;
  logger: Logger;
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Defaults to process.pid; compared with $WATCHDOG_PID. */
  pid?: number;
  /**
   * Asked before every ping; false skips it, so that systemd restarts a
   * daemon that runs but no longer works (e.g. the store is gone).
   */
  healthy?: () => boolean;
}

export interface Watchdog {
  readonly enabled: boolean;
  /** Milliseconds between pings (half of $WATCHDOG_USEC), null when off. */
  readonly intervalMs: number | null;
  stop(): void;
}

/**
 * Pings WATCHDOG=1 at half of $WATCHDOG_USEC, the margin sd_watchdog_enabled(3)
 * recommends. The timer is unref'd: it never keeps the process alive.
 */
export function startWatchdog(deps: WatchdogDeps): Watchdog {
  const { notifier, logger } = deps;
  const env = deps.env ?? process.env;
  const off: Watchdog = { enabled: false, intervalMs: null, stop() {} };
  if (!notifier.enabled) return off;
  const usecText = env.WATCHDOG_USEC;
  if (usecText === undefined || usecText === '') return off;
  if (!/^\d+$/.test(usecText) || Number(usecText) === 0) {
    logger.warn({ WATCHDOG_USEC: usecText }, 'WATCHDOG_USEC is not a positive integer; watchdog off');
    return off;
  }
  const pidText = env.WATCHDOG_PID;
  if (pidText !== undefined && pidText !== '' && Number(pidText) !== (deps.pid ?? process.pid)) {
    // systemd means another process (we were started by a wrapper that did not clear it).
    logger.debug({ WATCHDOG_PID: pidText }, 'watchdog is for another process');
    return off;
  }
  const intervalMs = Math.max(1, Math.floor(Number(usecText) / 2000));
  let skipped = false;
  const timer = setInterval(() => {
    if (deps.healthy && !deps.healthy()) {
      if (!skipped) logger.warn('daemon unhealthy; withholding watchdog pings');
      skipped = true;
      return;
    }
    skipped = false;
    void notifier.watchdog();
  }, intervalMs);
  timer.unref();
  logger.debug({ intervalMs }, 'systemd watchdog on');
  return {
    enabled: true,
    intervalMs,
    stop: () => clearInterval(timer),
  };
}
