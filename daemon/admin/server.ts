/**
 * The admin socket server (convention 10, after Ceph's admin socket): a Unix
 * stream socket, one JSON request per line, one JSON reply per line.
 *
 *   → {"cmd": "status", "args": {...}, "id": 7}
 *   ← {"ok": true, "result": ..., "id": 7}
 *   ← {"ok": false, "error": {"code": "ERR_…", "message": "…"}, "id": 7}
 *
 * Every line gets exactly one reply, in order, so a client may pipeline. A bad
 * request costs the client one error reply, never the connection (except an
 * over-long line, after which we cannot find the next line boundary cheaply)
 * and never the server.
 */
import { lstat, unlink, chmod, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { AdminSocketError, QmpcError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { ADMIN_DEFAULTS, MAX_SOCKET_PATH_BYTES } from './options.ts';

/** Stable error codes in `ok: false` replies (besides codes a handler's own errors carry). */
export const ADMIN_ERR = {
  badJson: 'ERR_ADMIN_BAD_JSON',
  badRequest: 'ERR_ADMIN_BAD_REQUEST',
  unknownCommand: 'ERR_ADMIN_UNKNOWN_COMMAND',
  badArgs: 'ERR_ADMIN_BAD_ARGS',
  lineTooLong: 'ERR_ADMIN_LINE_TOO_LONG',
  handler: 'ERR_ADMIN_HANDLER',
  badResult: 'ERR_ADMIN_BAD_RESULT',
} as const;

/** Bumped when the request/reply framing changes incompatibly. */
export const ADMIN_API_VERSION = 1;

export type AdminArgType = 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array' | 'any';

/** Describes one argument: shown by `help`, and checked before the handler runs. */
export interface AdminArgSpec {
  help: string;
  type?: AdminArgType;
  required?: boolean;
}

export interface AdminContext {
  /** Aborted when the client disconnects or the server closes: long handlers should stop. */
  signal: AbortSignal;
  logger: Logger;
}

export type AdminArgs = Record<string, unknown>;

export interface AdminCommand {
  /** One line for `help`. */
  help: string;
  /**
   * Accepted arguments. When given, unknown names, missing required ones and
   * wrong types are rejected before the handler runs; when omitted, any args
   * object is passed through.
   */
  args?: Record<string, AdminArgSpec>;
  handler: (args: AdminArgs, ctx: AdminContext) => unknown;
}

/** What `help` returns: one entry per command, sorted by name. */
export interface AdminHelpEntry {
  command: string;
  help: string;
  args?: Record<string, AdminArgSpec>;
}

export interface AdminVersionResult {
  version: string;
  node: string;
  api: number;
}

export interface AdminServerOptions {
  /** Resolved socket path (resolveAdminSocketPath). */
  socketPath: string;
  /** The daemon's version, reported by `version`. */
  version: string;
  mode?: number;
  maxLineBytes?: number;
  idleTimeoutMs?: number;
  maxConnections?: number;
  maxPipelined?: number;
  /** How long start() waits for an existing socket to answer before calling it live. */
  probeTimeoutMs?: number;
}

export interface AdminServerDeps {
  logger: Logger;
  /** Aborting it closes the server. */
  signal?: AbortSignal;
}

export type AdminReply =
  | { ok: true; result: unknown; id?: unknown }
  | { ok: false; error: { code: string; message: string }; id?: unknown };

const COMMAND_NAME = /^[a-z][a-z0-9_.-]{0,63}$/;
const BUILTINS = new Set(['help', 'version']);

/** Thrown inside request handling; becomes an error reply. */
class RequestError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

export class AdminServer {
  readonly socketPath: string;
  readonly #server: Server;
  readonly #logger: Logger;
  readonly #version: string;
  readonly #mode: number;
  readonly #maxLineBytes: number;
  readonly #idleTimeoutMs: number;
  readonly #maxPipelined: number;
  readonly #commands = new Map<string, AdminCommand>();
  readonly #connections = new Set<Connection>();
  #ready = false;
  #closing: Promise<void> | null = null;
  #ino: { dev: number; ino: number } | null = null;
  #removeAbortListener: (() => void) | null = null;

  private constructor(opts: AdminServerOptions, deps: AdminServerDeps) {
    this.socketPath = opts.socketPath;
    this.#logger = deps.logger;
    this.#version = opts.version;
    this.#mode = opts.mode ?? ADMIN_DEFAULTS.mode;
    this.#maxLineBytes = opts.maxLineBytes ?? ADMIN_DEFAULTS.maxLineBytes;
    this.#idleTimeoutMs = opts.idleTimeoutMs ?? ADMIN_DEFAULTS.idleTimeoutMs;
    this.#maxPipelined = opts.maxPipelined ?? ADMIN_DEFAULTS.maxPipelined;
    this.#server = createServer({ allowHalfOpen: true });
    this.#server.maxConnections = opts.maxConnections ?? ADMIN_DEFAULTS.maxConnections;
    this.#server.on('connection', (s) => this.#accept(s));
    this.#server.on('error', (e) => this.#logger.error({ err: e }, 'admin socket server error'));
  }

  /**
   * Binds the socket. An existing path is probed first: a live daemon there
   * makes us refuse; a stale socket left by a crash is removed; anything that
   * is not a socket is left alone and we refuse.
   */
  static async start(opts: AdminServerOptions, deps: AdminServerDeps): Promise<AdminServer> {
    const path = opts.socketPath;
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
      throw new AdminSocketError(`admin socket path is longer than ${MAX_SOCKET_PATH_BYTES} bytes: ${path}`);
    }
    if (deps.signal?.aborted) throw new AdminSocketError(`not starting the admin socket at ${path}: aborted`);
    await clearStaleSocket(path, opts.probeTimeoutMs ?? 1000, deps.logger);
    const srv = new AdminServer(opts, deps);
    await srv.#listen();
    if (deps.signal) {
      const signal = deps.signal;
      const onAbort = () => void srv.close();
      signal.addEventListener('abort', onAbort, { once: true });
      srv.#removeAbortListener = () => signal.removeEventListener('abort', onAbort);
      if (signal.aborted) await srv.close();
    }
    return srv;
  }

  async #listen(): Promise<void> {
    const path = this.socketPath;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException) => {
        this.#server.off('listening', onListening);
        bindError(path, e).then(reject, reject);
      };
      const onListening = () => {
        this.#server.off('error', onError);
        resolve();
      };
      this.#server.once('error', onError);
      this.#server.once('listening', onListening);
      this.#server.listen(path);
    });
    try {
      await chmod(path, this.#mode);
      const st = await stat(path);
      this.#ino = { dev: st.dev, ino: st.ino };
    } catch (e) {
      await this.close();
      throw new AdminSocketError(`cannot set mode ${this.#mode.toString(8)} on the admin socket ${path}`, e);
    }
    // Connections accepted before chmod passed the permission check of the
    // umask-derived mode, not ours; only those after this point are served.
    this.#ready = true;
    this.#logger.info({ path, mode: this.#mode.toString(8) }, 'admin socket listening');
  }

  /** Adds a command; returns a function that removes it again. */
  register(name: string, command: AdminCommand): () => void {
    if (!COMMAND_NAME.test(name)) {
      throw new TypeError(`admin command name must match ${COMMAND_NAME}, got ${JSON.stringify(name)}`);
    }
    if (BUILTINS.has(name) || this.#commands.has(name)) {
      throw new TypeError(`admin command ${JSON.stringify(name)} is already registered`);
    }
    if (typeof command?.handler !== 'function' || typeof command.help !== 'string') {
      throw new TypeError(`admin command ${JSON.stringify(name)} needs a help string and a handler function`);
    }
    this.#commands.set(name, command);
    return () => {
      if (this.#commands.get(name) === command) this.#commands.delete(name);
    };
  }

  /** Stops accepting, ends every connection (aborting their handlers) and removes the socket. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#ready = false;
    this.#removeAbortListener?.();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const c of this.#connections) c.shutdown();
    await closed;
    // Node unlinks the path on close; this covers a server that never
    // finished listening. The inode check keeps us from removing a socket
    // some other process has bound at the same path since.
    if (this.#ino) {
      try {
        const st = await lstat(this.socketPath);
        if (st.dev === this.#ino.dev && st.ino === this.#ino.ino) await unlink(this.socketPath);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.#logger.warn({ err: e, path: this.socketPath }, 'could not remove the admin socket');
        }
      }
    }
    this.#logger.info({ path: this.socketPath }, 'admin socket closed');
  }

  #accept(socket: Socket): void {
    if (!this.#ready) {
      socket.destroy();
      return;
    }
    const conn = new Connection(socket, {
      maxLineBytes: this.#maxLineBytes,
      idleTimeoutMs: this.#idleTimeoutMs,
      maxPipelined: this.#maxPipelined,
      dispatch: (line, signal) => this.#handleLine(line, signal),
      logger: this.#logger,
    });
    this.#connections.add(conn);
    socket.once('close', () => this.#connections.delete(conn));
  }

  /** One request line in, one reply object out; never throws. */
  async #handleLine(line: Buffer, signal: AbortSignal): Promise<AdminReply> {
    let id: unknown;
    let hasId = false;
    let cmd = '';
    try {
      const req = parseRequest(line);
      if ('id' in req) {
        hasId = true;
        id = req.id;
      }
      cmd = checkCmd(req.cmd);
      const args = checkArgsObject(req.args);
      const result = await this.#run(cmd, args, signal);
      const reply: AdminReply = { ok: true, result: result === undefined ? null : result };
      if (hasId) reply.id = id;
      return reply;
    } catch (e) {
      const { code, message } = describeError(e);
      // A QmpcError is an answer (e.g. "unknown job"), not a fault: only unexpected errors get a warning with a stack.
      if (e instanceof QmpcError) this.#logger.debug({ cmd, code, message }, 'admin command refused');
      else if (!(e instanceof RequestError)) this.#logger.warn({ cmd, code, err: e }, 'admin command failed');
      const reply: AdminReply = { ok: false, error: { code, message } };
      if (hasId) reply.id = id;
      return reply;
    }
  }

  async #run(cmd: string, args: AdminArgs, signal: AbortSignal): Promise<unknown> {
    if (cmd === 'help') return this.#help();
    if (cmd === 'version') {
      const v: AdminVersionResult = { version: this.#version, node: process.versions.node, api: ADMIN_API_VERSION };
      return v;
    }
    const command = this.#commands.get(cmd);
    if (!command) {
      throw new RequestError(ADMIN_ERR.unknownCommand, `unknown command ${JSON.stringify(cmd)}; "help" lists the commands`);
    }
    if (command.args) checkArgs(cmd, args, command.args);
    this.#logger.debug({ cmd }, 'admin command');
    return await command.handler(args, { signal, logger: this.#logger });
  }

  #help(): AdminHelpEntry[] {
    const entries: AdminHelpEntry[] = [
      { command: 'help', help: 'list the commands and what they do' },
      { command: 'version', help: 'daemon version, Node.js version and admin API version' },
    ];
    for (const [name, c] of this.#commands) {
      const e: AdminHelpEntry = { command: name, help: c.help };
      if (c.args) e.args = c.args;
      entries.push(e);
    }
    return entries.sort((a, b) => (a.command < b.command ? -1 : a.command > b.command ? 1 : 0));
  }
}

interface ConnectionDeps {
  maxLineBytes: number;
  idleTimeoutMs: number;
  maxPipelined: number;
  dispatch: (line: Buffer, signal: AbortSignal) => Promise<AdminReply>;
  logger: Logger;
}

/** Queue entry standing for an over-long line, answered in its turn. */
const TOO_LONG = Symbol('line too long');

/** One client: splits lines, answers them one at a time in arrival order. */
class Connection {
  readonly #socket: Socket;
  readonly #deps: ConnectionDeps;
  readonly #abort = new AbortController();
  readonly #queue: (Buffer | typeof TOO_LONG)[] = [];
  #partial: Buffer[] = [];
  #partialBytes = 0;
  #busy = false;
  #done = false; // no more lines will be read (over-long line, EOF or shutdown)

  constructor(socket: Socket, deps: ConnectionDeps) {
    this.#socket = socket;
    this.#deps = deps;
    socket.setTimeout(deps.idleTimeoutMs);
    socket.on('timeout', () => {
      // A slow handler is not idleness; its reply will reset the timer.
      if (!this.#busy) socket.destroy();
    });
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => {
      // The client half-closed after its last request: an unterminated last
      // line (`printf '{"cmd":"help"}' | socat`) still counts; answer, then end.
      if (!this.#done && this.#partial.length) this.#queue.push(Buffer.concat(this.#partial));
      this.#done = true;
      this.#partial = [];
      this.#partialBytes = 0;
      void this.#pump();
    });
    socket.on('error', (e) => deps.logger.debug({ err: e }, 'admin connection error'));
    socket.on('close', () => this.#abort.abort(new Error('admin connection closed')));
  }

  /** Server is closing: abort handlers, flush what is written, then drop the socket. */
  shutdown(): void {
    this.#done = true;
    this.#queue.length = 0;
    this.#abort.abort(new Error('admin socket closing'));
    if (this.#socket.writableEnded) this.#socket.destroy();
    else this.#socket.end(() => this.#socket.destroy());
    // A client that never reads would keep 'finish' from firing.
    setTimeout(() => this.#socket.destroy(), 1000).unref();
  }

  #onData(chunk: Buffer): void {
    if (this.#done) return;
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      if (this.#partialBytes + piece.length > this.#deps.maxLineBytes) return this.#overLong();
      const line = this.#partial.length ? Buffer.concat([...this.#partial, piece]) : piece;
      this.#partial = [];
      this.#partialBytes = 0;
      this.#queue.push(Buffer.from(line)); // copy: the chunk may be pooled
      start = nl + 1;
    }
    const rest = chunk.subarray(start);
    if (rest.length) {
      if (this.#partialBytes + rest.length > this.#deps.maxLineBytes) return this.#overLong();
      this.#partial.push(Buffer.from(rest));
      this.#partialBytes += rest.length;
    }
    if (this.#queue.length >= this.#deps.maxPipelined) this.#socket.pause();
    void this.#pump();
  }

  #overLong(): void {
    this.#done = true;
    this.#partial = [];
    this.#partialBytes = 0;
    this.#socket.pause();
    // Earlier complete lines are still answered first, then this error, then we end.
    this.#queue.push(TOO_LONG);
    void this.#pump();
  }

  async #pump(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      while (this.#queue.length && !this.#socket.destroyed) {
        const line = this.#queue.shift()!;
        let reply: AdminReply;
        if (line === TOO_LONG) {
          reply = {
            ok: false,
            error: {
              code: ADMIN_ERR.lineTooLong,
              message: `request line longer than ${this.#deps.maxLineBytes} bytes; closing the connection`,
            },
          };
        } else {
          reply = await this.#deps.dispatch(line, this.#abort.signal);
        }
        if (this.#socket.destroyed || this.#socket.writableEnded) break;
        const ok = this.#socket.write(serialiseReply(reply));
        if (!ok && !this.#socket.destroyed) {
          await new Promise<void>((resolve) => {
            const done = () => {
              this.#socket.off('drain', done);
              this.#socket.off('close', done);
              resolve();
            };
            this.#socket.on('drain', done);
            this.#socket.on('close', done);
          });
        }
        if (!this.#done && this.#queue.length < this.#deps.maxPipelined && this.#socket.isPaused()) this.#socket.resume();
      }
    } finally {
      this.#busy = false;
    }
    this.#maybeEnd();
  }

  #maybeEnd(): void {
    if (this.#done && !this.#busy && this.#queue.length === 0 && !this.#socket.writableEnded) {
      this.#socket.end();
      // A peer that never half-closes back would otherwise hold the descriptor.
      setTimeout(() => this.#socket.destroy(), 1000).unref();
    }
  }
}

function parseRequest(line: Buffer): Record<string, unknown> {
  let text: string;
  try {
    text = UTF8.decode(line);
  } catch {
    throw new RequestError(ADMIN_ERR.badRequest, 'request line is not valid UTF-8');
  }
  if (text.endsWith('\r')) text = text.slice(0, -1); // tolerate CRLF from hand-typed sessions
  if (text.trim() === '') {
    throw new RequestError(ADMIN_ERR.badRequest, 'empty request line; expected {"cmd": "..."}');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new RequestError(ADMIN_ERR.badJson, `request line is not valid JSON: ${(e as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new RequestError(
      ADMIN_ERR.badRequest,
      `request must be a JSON object like {"cmd": "help"}, found ${jsonKind(value)}`,
    );
  }
  return value as Record<string, unknown>;
}

function checkCmd(cmd: unknown): string {
  if (typeof cmd !== 'string' || cmd === '') {
    throw new RequestError(ADMIN_ERR.badRequest, `request "cmd" must be a non-empty string, found ${jsonKind(cmd)}`);
  }
  return cmd;
}

function checkArgsObject(args: unknown): AdminArgs {
  if (args === undefined || args === null) return {};
  if (typeof args !== 'object' || Array.isArray(args)) {
    throw new RequestError(ADMIN_ERR.badRequest, `request "args" must be an object, found ${jsonKind(args)}`);
  }
  return args as AdminArgs;
}

function checkArgs(cmd: string, args: AdminArgs, spec: Record<string, AdminArgSpec>): void {
  for (const name of Object.keys(args)) {
    if (!Object.hasOwn(spec, name)) {
      const known = Object.keys(spec);
      throw new RequestError(
        ADMIN_ERR.badArgs,
        `${cmd}: unknown argument ${JSON.stringify(name)}; accepted: ${known.length ? known.join(', ') : 'none'}`,
      );
    }
  }
  for (const [name, s] of Object.entries(spec)) {
    const v = args[name];
    if (v === undefined) {
      if (s.required) throw new RequestError(ADMIN_ERR.badArgs, `${cmd}: missing required argument "${name}" (${s.help})`);
      continue;
    }
    const type = s.type ?? 'any';
    if (!hasType(v, type)) {
      throw new RequestError(ADMIN_ERR.badArgs, `${cmd}: argument "${name}" must be ${type}, found ${jsonKind(v)}`);
    }
  }
}

function hasType(v: unknown, type: AdminArgType): boolean {
  switch (type) {
    case 'any':
      return true;
    case 'integer':
      return Number.isSafeInteger(v);
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'array':
      return Array.isArray(v);
    case 'object':
      return v !== null && typeof v === 'object' && !Array.isArray(v);
    default:
      return typeof v === type;
  }
}

function jsonKind(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v);
  return `${typeof v} ${s.length > 40 ? s.slice(0, 40) + '…' : s}`;
}

function describeError(e: unknown): { code: string; message: string } {
  if (e && typeof e === 'object') {
    const code = (e as { code?: unknown }).code;
    const message = (e as { message?: unknown }).message;
    return {
      code: typeof code === 'string' && code !== '' ? code : ADMIN_ERR.handler,
      message: typeof message === 'string' && message !== '' ? message : String(e),
    };
  }
  return { code: ADMIN_ERR.handler, message: String(e) };
}

/** Ring values are bigints; JSON has no bigint, so they travel as decimal strings. */
function replacer(_key: string, v: unknown): unknown {
  return typeof v === 'bigint' ? v.toString() : v;
}

function serialiseReply(reply: AdminReply): string {
  try {
    return JSON.stringify(reply, replacer) + '\n';
  } catch (e) {
    const fallback: AdminReply = {
      ok: false,
      error: { code: ADMIN_ERR.badResult, message: `reply is not JSON-serialisable: ${(e as Error).message}` },
    };
    if ('id' in reply) fallback.id = reply.id;
    try {
      return JSON.stringify(fallback, replacer) + '\n';
    } catch {
      // The id itself cannot be echoed (e.g. nested past the stack limit).
      delete fallback.id;
      return JSON.stringify(fallback) + '\n';
    }
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Makes `path` free to bind, or explains why it is not: a live server there
 * (it accepted our probe) or a file that is not a socket. Only a socket that
 * refuses connections — its owner died without unlinking it — is removed.
 */
async function clearStaleSocket(path: string, probeTimeoutMs: number, logger: Logger): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new AdminSocketError(`cannot inspect the admin socket path ${path}: ${(e as NodeJS.ErrnoException).code}`, e);
  }
  if (!st.isSocket()) {
    throw new AdminSocketError(`${path} exists and is not a socket; refusing to replace it`);
  }
  const probe = await probeSocket(path, probeTimeoutMs);
  if (probe === 'live') throw new AdminSocketError(`another daemon is serving ${path}`);
  if (probe !== 'stale') {
    throw new AdminSocketError(`cannot tell whether the admin socket ${path} is in use (${probe}); refusing to replace it`);
  }
  logger.warn({ path }, 'removing a stale admin socket left by a previous daemon');
  try {
    await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new AdminSocketError(`cannot remove the stale admin socket ${path}: ${(e as NodeJS.ErrnoException).code}`, e);
    }
  }
}

/** libuv reports a missing parent directory as EACCES; tell the two apart for the operator. */
async function bindError(path: string, e: NodeJS.ErrnoException): Promise<AdminSocketError> {
  if (e.code === 'EADDRINUSE') return new AdminSocketError(`another daemon is serving ${path}`, e);
  if (e.code === 'EACCES' || e.code === 'ENOENT') {
    const dir = dirname(path);
    try {
      await stat(dir);
    } catch (se) {
      if ((se as NodeJS.ErrnoException).code === 'ENOENT') {
        return new AdminSocketError(`cannot bind the admin socket ${path}: directory ${dir} does not exist`, e);
      }
    }
    return new AdminSocketError(`cannot bind the admin socket ${path}: permission denied in ${dir}`, e);
  }
  return new AdminSocketError(`cannot bind the admin socket ${path}: ${e.code ?? e.message}`, e);
}

/** 'live', 'stale', or the errno/timeout that kept us from telling. */
function probeSocket(path: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    const finish = (r: string) => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    // A server too busy to accept within the timeout is still alive.
    const timer = setTimeout(() => finish('live'), timeoutMs);
    s.once('connect', () => finish('live'));
    s.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') finish('stale');
      else if (e.code === 'EAGAIN') finish('live'); // backlog full: someone is listening
      else finish(e.code ?? e.message);
    });
  });
}
