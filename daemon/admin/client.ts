/**
 * The admin socket client behind `qmpc admin CMD`: one connection, one
 * request, one reply. Failures are typed so the CLI can pick an exit code and
 * a script can branch on `code`.
 */
import { createConnection } from 'node:net';
import { EXIT, QmpcError } from '../errors.ts';

/** The daemon answered `ok: false`; `code` is the daemon's code (e.g. ERR_ADMIN_UNKNOWN_COMMAND). */
export class AdminReplyError extends QmpcError {
  readonly exitCode = EXIT.failure;
  constructor(code: string, message: string) {
    super(code, message);
  }
}

/** No daemon to talk to: no socket, nobody listening, not allowed to connect, or it hung up without answering. */
export class AdminUnavailableError extends QmpcError {
  readonly exitCode: number;
  constructor(message: string, cause?: unknown, exitCode: number = EXIT.unavailable) {
    super('ERR_ADMIN_UNAVAILABLE', message, { cause });
    this.exitCode = exitCode;
  }
}

/** The daemon did not answer within the timeout. */
export class AdminTimeoutError extends QmpcError {
  readonly exitCode = EXIT.tempFail;
  constructor(message: string) {
    super('ERR_ADMIN_TIMEOUT', message);
  }
}

/** The bytes that came back are not an admin reply (wrong program on the socket, or a bug). */
export class AdminProtocolError extends QmpcError {
  readonly exitCode = EXIT.software;
  constructor(message: string) {
    super('ERR_ADMIN_PROTOCOL', message);
  }
}

export interface AdminRequestOptions {
  /** Covers connect, request and reply together. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Replies larger than this are refused rather than buffered. */
  maxReplyBytes?: number;
}

export const ADMIN_CLIENT_DEFAULTS = Object.freeze({
  timeoutMs: 10_000,
  maxReplyBytes: 16 * 1024 * 1024,
});

/** Sends `{cmd, args}` and resolves to the reply's `result`. */
export function adminRequest(
  socketPath: string,
  cmd: string,
  args?: Record<string, unknown>,
  opts: AdminRequestOptions = {},
): Promise<unknown> {
  const timeoutMs = opts.timeoutMs ?? ADMIN_CLIENT_DEFAULTS.timeoutMs;
  const maxReplyBytes = opts.maxReplyBytes ?? ADMIN_CLIENT_DEFAULTS.maxReplyBytes;
  const id = 1;
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new AdminUnavailableError(`admin request "${cmd}" aborted`, opts.signal.reason, EXIT.failure));
      return;
    }
    const chunks: Buffer[] = [];
    let bytes = 0;
    let settled = false;
    const socket = createConnection(socketPath);
    const finish = (err: Error | null, value?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const onAbort = () =>
      finish(new AdminUnavailableError(`admin request "${cmd}" aborted`, opts.signal?.reason, EXIT.failure));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(
      () => finish(new AdminTimeoutError(`no reply to "${cmd}" from ${socketPath} within ${timeoutMs} ms`)),
      timeoutMs,
    );

    socket.once('connect', () => {
      socket.write(JSON.stringify({ cmd, args: args ?? {}, id }) + '\n');
    });
    socket.on('data', (chunk: Buffer) => {
      const nl = chunk.indexOf(0x0a);
      if (nl < 0) {
        bytes += chunk.length;
        if (bytes > maxReplyBytes) {
          finish(new AdminProtocolError(`reply to "${cmd}" from ${socketPath} exceeds ${maxReplyBytes} bytes`));
        } else chunks.push(chunk);
        return;
      }
      chunks.push(chunk.subarray(0, nl));
      finish(...interpret(Buffer.concat(chunks).toString('utf8'), cmd, id, socketPath));
    });
    socket.once('end', () =>
      finish(new AdminUnavailableError(`${socketPath} closed the connection before replying to "${cmd}"`)),
    );
    socket.once('error', (e: NodeJS.ErrnoException) => finish(connectError(e, socketPath)));
  });
}

function interpret(line: string, cmd: string, id: number, path: string): [Error | null, unknown?] {
  let reply: unknown;
  try {
    reply = JSON.parse(line);
  } catch {
    return [new AdminProtocolError(`reply to "${cmd}" from ${path} is not JSON`)];
  }
  if (reply === null || typeof reply !== 'object' || typeof (reply as { ok?: unknown }).ok !== 'boolean') {
    return [new AdminProtocolError(`reply to "${cmd}" from ${path} has no boolean "ok"`)];
  }
  const r = reply as { ok: boolean; result?: unknown; error?: { code?: unknown; message?: unknown }; id?: unknown };
  if (r.id !== id) return [new AdminProtocolError(`reply from ${path} carries id ${JSON.stringify(r.id)}, expected ${id}`)];
  if (r.ok) return [null, r.result ?? null];
  const code = typeof r.error?.code === 'string' ? r.error.code : 'ERR_ADMIN_UNKNOWN';
  const message = typeof r.error?.message === 'string' ? r.error.message : `"${cmd}" failed without a message`;
  return [new AdminReplyError(code, message)];
}

function connectError(e: NodeJS.ErrnoException, path: string): Error {
  switch (e.code) {
    case 'ENOENT':
    case 'ECONNREFUSED':
      return new AdminUnavailableError(`no daemon listening at ${path}: is qmpcd running?`, e);
    case 'EACCES':
    case 'EPERM':
      return new AdminUnavailableError(
        `permission denied connecting to ${path}: run as the daemon's user or a member of its group`,
        e,
        EXIT.noPerm,
      );
    case 'ENOTSOCK':
      return new AdminUnavailableError(`${path} is not a socket: is the admin socket path right?`, e);
    default:
      return new AdminUnavailableError(`cannot talk to the daemon at ${path}: ${e.code ?? e.message}`, e);
  }
}
