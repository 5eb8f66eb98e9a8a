/**
 * The admin socket (daemon/admin/): the line protocol an operator or script
 * relies on, socket lifecycle (stale socket, second daemon, mode, removal),
 * the client's typed errors, the human formatter, and a fuzz run.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdminSocketError, ConfigError } from '../daemon/errors.ts';
import { silentLogger } from '../daemon/logger.ts';
import { ADMIN_DEFAULTS, resolveAdminSocketPath } from '../daemon/admin/options.ts';
import { ADMIN_ERR, AdminServer, type AdminServerOptions, type AdminReply } from '../daemon/admin/server.ts';
import {
  AdminProtocolError,
  AdminReplyError,
  AdminTimeoutError,
  AdminUnavailableError,
  adminRequest,
} from '../daemon/admin/client.ts';
import { formatReply, sanitize } from '../daemon/admin/format.ts';
import { rejection } from './helpers/async.ts';

const VERSION = '9.8.7-test';

/** The part of a tap test the helpers need. */
type Teardown = { teardown(fn: () => unknown): void };

function tempDir(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmpc-adm-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function startServer(t: Teardown, extra: Partial<AdminServerOptions> = {}, signal?: AbortSignal): Promise<AdminServer> {
  const socketPath = extra.socketPath ?? join(tempDir(t), 'admin.sock');
  const srv = await AdminServer.start({ socketPath, version: VERSION, ...extra }, { logger: silentLogger(), signal });
  t.teardown(() => srv.close());
  return srv;
}

/** A raw line-protocol client: send bytes, read reply lines one at a time. */
class Raw {
  readonly socket: Socket;
  readonly lines: string[] = [];
  #buf = '';
  #waiters: (() => void)[] = [];
  closed: Promise<void>;
  ended = false;

  constructor(path: string) {
    this.socket = createConnection(path);
    this.socket.setEncoding('utf8');
    this.socket.on('data', (d: string) => {
      this.#buf += d;
      let nl;
      while ((nl = this.#buf.indexOf('\n')) >= 0) {
        this.lines.push(this.#buf.slice(0, nl));
        this.#buf = this.#buf.slice(nl + 1);
      }
      this.#wake();
    });
    this.socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      this.socket.on('close', () => {
        this.ended = true;
        this.#wake();
        resolve();
      }),
    );
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  static async open(path: string): Promise<Raw> {
    const r = new Raw(path);
    await new Promise<void>((resolve, reject) => {
      r.socket.once('connect', resolve);
      r.socket.once('error', reject);
    });
    return r;
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Waits until `n` reply lines have arrived in total (or the socket closed / timed out). */
  async waitLines(n: number, timeoutMs = 5000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length < n && !this.ended) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} reply lines, have ${this.lines.length}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.lines.slice(0, n);
  }

  async request(req: unknown): Promise<AdminReply> {
    const before = this.lines.length;
    this.send(JSON.stringify(req) + '\n');
    const lines = await this.waitLines(before + 1);
    if (lines.length <= before) throw new Error('connection closed before a reply');
    return JSON.parse(lines[before]);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms).unref()),
  ]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Deterministic PRNG (mulberry32) so a fuzz failure reproduces. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------- options

t.test('socket path: config wins, else $RUNTIME_DIRECTORY/admin.sock, else a config error', async (t) => {
  t.equal(resolveAdminSocketPath('/etc/x/admin.sock', { RUNTIME_DIRECTORY: '/run/qmpcd' }), '/etc/x/admin.sock');
  t.equal(resolveAdminSocketPath(null, { RUNTIME_DIRECTORY: '/run/qmpcd' }), '/run/qmpcd/admin.sock');
  t.equal(resolveAdminSocketPath(undefined, { RUNTIME_DIRECTORY: '/run/qmpcd:/run/other' }), '/run/qmpcd/admin.sock');
  const e = t.throws(() => resolveAdminSocketPath(null, {})) as ConfigError;
  t.ok(e instanceof ConfigError);
  t.match(e.message, /admin\.socket/);
  t.match(e.message, /RUNTIME_DIRECTORY/);
  const long = t.throws(() => resolveAdminSocketPath('/' + 'x'.repeat(200), {})) as ConfigError;
  t.ok(long instanceof ConfigError);
  t.match(long.message, /at most 107 bytes/);
  t.equal(ADMIN_DEFAULTS.mode, 0o660);
  t.equal(ADMIN_DEFAULTS.maxLineBytes, 64 * 1024);
  t.ok(ADMIN_DEFAULTS.idleTimeoutMs > 0);
});

// ---------------------------------------------------------------- lifecycle

t.test('start binds a socket with mode 0660; close removes it and is idempotent', async (t) => {
  const path = join(tempDir(t), 'admin.sock');
  const srv = await AdminServer.start({ socketPath: path, version: VERSION }, { logger: silentLogger() });
  const st = statSync(path);
  t.ok(st.isSocket(), 'a socket exists at the path');
  t.equal(st.mode & 0o777, 0o660, 'mode is 0660');
  t.same(await adminRequest(path, 'version', {}, { timeoutMs: 2000 }), { version: VERSION, node: process.versions.node, api: 1 });
  await srv.close();
  t.notOk(existsSync(path), 'socket removed on close');
  await srv.close();
  const e = (await rejection(adminRequest(path, 'version', {}, { timeoutMs: 2000 }))) as AdminUnavailableError;
  t.ok(e instanceof AdminUnavailableError);
  t.equal(e.code, 'ERR_ADMIN_UNAVAILABLE');
  t.equal(e.message, `no daemon listening at ${path}: is qmpcd running?`);
  t.equal(e.exitCode, 69);
});

t.test('a configured mode is applied', async (t) => {
  const srv = await startServer(t, { mode: 0o600 });
  t.equal(statSync(srv.socketPath).mode & 0o777, 0o600);
});

t.test('a second server on the same path is refused while the first runs, and the first keeps serving', async (t) => {
  const first = await startServer(t);
  const e = (await rejection(
    AdminServer.start({ socketPath: first.socketPath, version: 'other' }, { logger: silentLogger() }),
  )) as AdminSocketError;
  t.ok(e instanceof AdminSocketError);
  t.equal(e.code, 'ERR_ADMIN_SOCKET');
  t.equal(e.message, `another daemon is serving ${first.socketPath}`);
  t.equal(e.exitCode, 73);
  t.ok(statSync(first.socketPath).isSocket(), 'the refused start left the socket alone');
  t.match(await adminRequest(first.socketPath, 'version'), { version: VERSION });
});

t.test('a stale socket left by a SIGKILLed server is replaced', async (t) => {
  const path = join(tempDir(t), 'admin.sock');
  // Node's own close() unlinks the path, so only a process that dies without
  // closing (SIGKILL, OOM kill) leaves the socket file behind.
  const child = spawn(
    process.execPath,
    ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('ready'))`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.teardown(() => child.kill('SIGKILL'));
  await withTimeout(
    new Promise<void>((resolve) => child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve())),
    10_000,
    'child server start',
  );
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  t.ok(statSync(path).isSocket(), 'the killed server left its socket file');

  const srv = await AdminServer.start({ socketPath: path, version: VERSION }, { logger: silentLogger() });
  t.teardown(() => srv.close());
  t.equal(statSync(path).mode & 0o777, 0o660);
  t.match(await adminRequest(path, 'version'), { version: VERSION });
});

t.test('a path that is not a socket is refused and left untouched', async (t) => {
  const path = join(tempDir(t), 'admin.sock');
  writeFileSync(path, 'precious');
  const e = (await rejection(AdminServer.start({ socketPath: path, version: VERSION }, { logger: silentLogger() }))) as AdminSocketError;
  t.ok(e instanceof AdminSocketError);
  t.equal(e.message, `${path} exists and is not a socket; refusing to replace it`);
  t.equal(readFileSync(path, 'utf8'), 'precious');
});

t.test('a missing directory gives an AdminSocketError naming the path', async (t) => {
  const path = join(tempDir(t), 'nope', 'admin.sock');
  const e = (await rejection(AdminServer.start({ socketPath: path, version: VERSION }, { logger: silentLogger() }))) as AdminSocketError;
  t.ok(e instanceof AdminSocketError);
  t.equal(e.message, `cannot bind the admin socket ${path}: directory ${join(path, '..')} does not exist`);
});

t.test('aborting the deps signal closes the server and removes the socket', async (t) => {
  const ac = new AbortController();
  const srv = await startServer(t, {}, ac.signal);
  t.ok(existsSync(srv.socketPath));
  ac.abort();
  await srv.close(); // same promise the abort started
  t.notOk(existsSync(srv.socketPath));
});

t.test('close ends open connections and aborts running handlers', async (t) => {
  const srv = await startServer(t);
  let aborted = false;
  srv.register('hang', {
    help: 'never answers until aborted',
    handler: (_a, ctx) =>
      new Promise((_, reject) => {
        ctx.signal.addEventListener('abort', () => {
          aborted = true;
          reject(new Error('aborted'));
        });
      }),
  });
  const idle = await Raw.open(srv.socketPath);
  const busy = await Raw.open(srv.socketPath);
  busy.send('{"cmd":"hang"}\n');
  await sleep(50);
  await withTimeout(srv.close(), 3000, 'close');
  await withTimeout(Promise.all([idle.closed, busy.closed]), 3000, 'connections closing');
  t.ok(aborted, 'the handler saw its signal abort');
  t.notOk(existsSync(srv.socketPath));
});

// ---------------------------------------------------------------- protocol

t.test('help lists built-ins and registered commands with their help text; version reports the injected string', async (t) => {
  const srv = await startServer(t);
  srv.register('status', { help: 'party status', handler: async () => ({ party: 1 }) });
  srv.register('jobs', {
    help: 'list jobs',
    args: { state: { help: 'only jobs in this state', type: 'string' } },
    handler: async () => [],
  });
  const help = (await adminRequest(srv.socketPath, 'help')) as { command: string; help: string; args?: unknown }[];
  t.same(
    help.map((h) => h.command),
    ['help', 'jobs', 'status', 'version'],
  );
  t.equal(help.find((h) => h.command === 'status')!.help, 'party status');
  t.same(help.find((h) => h.command === 'jobs')!.args, { state: { help: 'only jobs in this state', type: 'string' } });
  t.match(help.find((h) => h.command === 'version')!.help, /version/);
  t.same(await adminRequest(srv.socketPath, 'version'), { version: VERSION, node: process.versions.node, api: 1 });
});

t.test('register rejects bad names, duplicates and built-ins; the returned function unregisters', async (t) => {
  const srv = await startServer(t);
  const handler = async () => 1;
  t.throws(() => srv.register('Bad Name', { help: 'x', handler }), /must match/);
  t.throws(() => srv.register('help', { help: 'x', handler }), /already registered/);
  const off = srv.register('one', { help: 'x', handler });
  t.throws(() => srv.register('one', { help: 'x', handler }), /already registered/);
  t.equal(await adminRequest(srv.socketPath, 'one'), 1);
  off();
  const e = (await rejection(adminRequest(srv.socketPath, 'one'))) as AdminReplyError;
  t.equal(e.code, ADMIN_ERR.unknownCommand);
});

t.test('handlers get their args; results round-trip; ids are echoed; bigints become strings', async (t) => {
  const srv = await startServer(t);
  srv.register('echo', { help: 'echo args', handler: async (args) => ({ got: args }) });
  srv.register('big', { help: 'a bigint', handler: () => ({ v: 2n ** 64n - 1n }) });
  srv.register('nothing', { help: 'returns undefined', handler: () => undefined });
  const raw = await Raw.open(srv.socketPath);
  t.teardown(() => raw.destroy());
  t.same(await raw.request({ cmd: 'echo', args: { a: [1, 'x'] }, id: 'abc' }), { ok: true, result: { got: { a: [1, 'x'] } }, id: 'abc' });
  t.same(await raw.request({ cmd: 'echo', id: { nested: [null] } }), { ok: true, result: { got: {} }, id: { nested: [null] } });
  t.same(await raw.request({ cmd: 'echo' }), { ok: true, result: { got: {} } }, 'no id key when the request had none');
  t.same(await raw.request({ cmd: 'big', id: 0 }), { ok: true, result: { v: '18446744073709551615' }, id: 0 });
  t.same(await raw.request({ cmd: 'nothing', id: null }), { ok: true, result: null, id: null });
  t.same(await adminRequest(srv.socketPath, 'echo', { k: true }), { got: { k: true } });
});

t.test('bad requests get an error reply naming the problem, and the connection stays usable', async (t) => {
  const srv = await startServer(t);
  srv.register('boom', {
    help: 'throws',
    handler: async () => {
      throw new Error('disk on fire');
    },
  });
  srv.register('coded', {
    help: 'throws a coded error',
    handler: () => {
      throw new AdminSocketError('coded failure');
    },
  });
  srv.register('circular', {
    help: 'returns something JSON cannot hold',
    handler: () => {
      const o: Record<string, unknown> = {};
      o.self = o;
      return o;
    },
  });
  srv.register('typed', {
    help: 'typed args',
    args: {
      job: { help: 'job id', type: 'string', required: true },
      limit: { help: 'max rows', type: 'integer' },
    },
    handler: (args) => args,
  });
  const raw = await Raw.open(srv.socketPath);
  t.teardown(() => raw.destroy());
  const cases: [string, string, RegExp][] = [
    ['{"cmd": "nosuch", "id": 3}', ADMIN_ERR.unknownCommand, /unknown command "nosuch"/],
    ['{"cmd": "status"', ADMIN_ERR.badJson, /not valid JSON/],
    ['not json at all', ADMIN_ERR.badJson, /not valid JSON/],
    ['[1, 2]', ADMIN_ERR.badRequest, /must be a JSON object.*found an array/],
    ['42', ADMIN_ERR.badRequest, /must be a JSON object.*found number 42/],
    ['null', ADMIN_ERR.badRequest, /found null/],
    ['"help"', ADMIN_ERR.badRequest, /found string "help"/],
    ['{}', ADMIN_ERR.badRequest, /"cmd" must be a non-empty string, found nothing/],
    ['{"cmd": 5}', ADMIN_ERR.badRequest, /"cmd" must be a non-empty string, found number 5/],
    ['{"cmd": "help", "args": [1]}', ADMIN_ERR.badRequest, /"args" must be an object, found an array/],
    ['', ADMIN_ERR.badRequest, /empty request line/],
    ['{"cmd": "boom"}', ADMIN_ERR.handler, /^disk on fire$/],
    ['{"cmd": "coded"}', 'ERR_ADMIN_SOCKET', /^coded failure$/],
    ['{"cmd": "circular", "id": 9}', ADMIN_ERR.badResult, /not JSON-serialisable/],
    ['{"cmd": "typed", "args": {}}', ADMIN_ERR.badArgs, /typed: missing required argument "job"/],
    ['{"cmd": "typed", "args": {"job": 1}}', ADMIN_ERR.badArgs, /argument "job" must be string, found number 1/],
    ['{"cmd": "typed", "args": {"job": "j", "limit": 1.5}}', ADMIN_ERR.badArgs, /"limit" must be integer/],
    ['{"cmd": "typed", "args": {"job": "j", "color": "red"}}', ADMIN_ERR.badArgs, /unknown argument "color"; accepted: job, limit/],
  ];
  for (const [line, code, message] of cases) {
    const before = raw.lines.length;
    raw.send(line + '\n');
    const reply = JSON.parse((await raw.waitLines(before + 1))[before]);
    t.equal(reply.ok, false, line);
    t.equal(reply.error.code, code, `code for ${line}`);
    t.match(reply.error.message, message, `message for ${line}`);
  }
  // Invalid UTF-8 and CRLF line endings.
  const before = raw.lines.length;
  raw.send(Buffer.from([0xff, 0xfe, 0x7b, 0x0a]));
  t.match(JSON.parse((await raw.waitLines(before + 1))[before]).error.message, /not valid UTF-8/);
  t.same(await raw.request({ cmd: 'typed', args: { job: 'j', limit: 3 } }), { ok: true, result: { job: 'j', limit: 3 } });
  raw.send('{"cmd":"version","id":1}\r\n');
  const l = await raw.waitLines(raw.lines.length + 1);
  t.match(JSON.parse(l[l.length - 1]), { ok: true, id: 1, result: { version: VERSION } }, 'CRLF is accepted');
  t.notOk(raw.ended, 'connection still open after all those errors');
});

t.test('an over-long line gets an error reply, then the connection closes; the server keeps serving', async (t) => {
  const srv = await startServer(t, { maxLineBytes: 1024 });
  const raw = await Raw.open(srv.socketPath);
  t.teardown(() => raw.destroy());
  // A good request first, then a line past the limit (sent without newline, in pieces).
  raw.send('{"cmd":"version","id":"a"}\n');
  raw.send('{"cmd":"' + 'x'.repeat(600));
  raw.send('y'.repeat(600));
  await withTimeout(raw.closed, 3000, 'server closing the connection');
  t.equal(raw.lines.length, 2);
  t.match(JSON.parse(raw.lines[0]), { ok: true, id: 'a' });
  t.same(JSON.parse(raw.lines[1]), {
    ok: false,
    error: { code: ADMIN_ERR.lineTooLong, message: 'request line longer than 1024 bytes; closing the connection' },
  });
  // A complete line at exactly the limit is fine.
  const exact = '{"cmd":"version","id":"' + 'z'.repeat(1024 - 25) + '"}';
  t.equal(Buffer.byteLength(exact), 1024);
  const raw2 = await Raw.open(srv.socketPath);
  t.teardown(() => raw2.destroy());
  t.match(await raw2.request(JSON.parse(exact)), { ok: true });
  t.match(await adminRequest(srv.socketPath, 'version'), { version: VERSION });
});

t.test('pipelined requests on one connection are answered in order, even when an early one is slow', async (t) => {
  const srv = await startServer(t);
  srv.register('sleep', {
    help: 'sleeps ms',
    args: { ms: { help: 'milliseconds', type: 'integer', required: true } },
    handler: async ({ ms }) => {
      await sleep(ms as number);
      return ms;
    },
  });
  const raw = await Raw.open(srv.socketPath);
  t.teardown(() => raw.destroy());
  const delays = [80, 0, 40, 0, 10, 0, 0, 30, 0, 5];
  raw.send(delays.map((ms, id) => JSON.stringify({ cmd: 'sleep', args: { ms }, id })).join('\n') + '\n{"cmd":"nosuch","id":"last"}\n');
  const lines = await raw.waitLines(delays.length + 1);
  const replies = lines.map((l) => JSON.parse(l));
  t.same(replies.slice(0, -1).map((r) => r.id), delays.map((_, i) => i));
  t.same(replies.slice(0, -1).map((r) => r.result), delays);
  t.match(replies.at(-1), { ok: false, id: 'last', error: { code: ADMIN_ERR.unknownCommand } });
});

t.test('a client that half-closes after an unterminated request still gets its reply', async (t) => {
  const srv = await startServer(t);
  const raw = await Raw.open(srv.socketPath);
  raw.socket.end('{"cmd":"version","id":7}');
  await withTimeout(raw.closed, 3000, 'reply and close');
  t.equal(raw.lines.length, 1);
  t.match(JSON.parse(raw.lines[0]), { ok: true, id: 7 });
});

t.test('many concurrent clients each get their own answers', async (t) => {
  const srv = await startServer(t);
  srv.register('square', {
    help: 'n squared, after a short random delay',
    args: { n: { help: 'a number', type: 'integer', required: true } },
    handler: async ({ n }) => {
      await sleep(Math.floor(Math.random() * 20));
      return (n as number) ** 2;
    },
  });
  const ns = Array.from({ length: 40 }, (_, i) => i);
  const results = await withTimeout(
    Promise.all(ns.map((n) => adminRequest(srv.socketPath, 'square', { n }, { timeoutMs: 5000 }))),
    8000,
    '40 concurrent requests',
  );
  t.same(results, ns.map((n) => n * n));
});

t.test('an idle connection is closed after the idle timeout; a slow handler is not idleness', async (t) => {
  const srv = await startServer(t, { idleTimeoutMs: 150 });
  srv.register('slow', {
    help: 'takes 400 ms',
    handler: async () => {
      await sleep(400);
      return 'done';
    },
  });
  const idle = await Raw.open(srv.socketPath);
  const t0 = Date.now();
  await withTimeout(idle.closed, 3000, 'idle close');
  t.ok(Date.now() - t0 >= 100, 'not closed before the timeout');
  const busy = await Raw.open(srv.socketPath);
  t.teardown(() => busy.destroy());
  t.match(await busy.request({ cmd: 'slow' }), { ok: true, result: 'done' });
});

// ---------------------------------------------------------------- client

t.test('client: server errors carry the server code; timeouts and garbage are typed', async (t) => {
  const srv = await startServer(t);
  srv.register('hang', { help: 'never answers', handler: () => new Promise(() => {}) });
  const e1 = (await rejection(adminRequest(srv.socketPath, 'nosuch'))) as AdminReplyError;
  t.ok(e1 instanceof AdminReplyError);
  t.equal(e1.code, ADMIN_ERR.unknownCommand);
  t.match(e1.message, /unknown command "nosuch"/);

  const t0 = Date.now();
  const e2 = (await rejection(adminRequest(srv.socketPath, 'hang', {}, { timeoutMs: 200 }))) as AdminTimeoutError;
  t.ok(e2 instanceof AdminTimeoutError);
  t.equal(e2.code, 'ERR_ADMIN_TIMEOUT');
  t.equal(e2.message, `no reply to "hang" from ${srv.socketPath} within 200 ms`);
  t.ok(Date.now() - t0 < 2000);

  const ac = new AbortController();
  const p = adminRequest(srv.socketPath, 'hang', {}, { timeoutMs: 5000, signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  t.match(((await rejection(p)) as Error).message, /aborted/);
});

t.test('client: a socket that answers with something other than the admin protocol', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'other.sock');
  const { createServer } = await import('node:net');
  const other = createServer((s) => s.end('HTTP/1.1 400 Bad Request\n'));
  await new Promise<void>((r) => other.listen(path, r));
  t.teardown(() => other.close());
  const e = (await rejection(adminRequest(path, 'version'))) as AdminProtocolError;
  t.ok(e instanceof AdminProtocolError);
  t.match(e.message, /not JSON/);

  const noPerm = join(dir, 'locked.sock');
  const locked = createServer();
  await new Promise<void>((r) => locked.listen(noPerm, r));
  t.teardown(() => locked.close());
  chmodSync(noPerm, 0o000);
  if (process.getuid?.() !== 0) {
    const e2 = (await rejection(adminRequest(noPerm, 'version'))) as AdminUnavailableError;
    t.match(e2.message, /permission denied connecting to/);
    t.equal(e2.exitCode, 77);
  }
});

// ---------------------------------------------------------------- fuzz

t.test('fuzz: 2000 random lines each get one well-formed reply, and the server still answers', async (t) => {
  const srv = await startServer(t, { maxLineBytes: 4096 });
  srv.register('echo', { help: 'echo', handler: (a) => a });
  srv.register('typed', { help: 'typed', args: { n: { help: 'n', type: 'integer', required: true } }, handler: (a) => a.n });
  srv.register('throws', {
    help: 'throws',
    handler: () => {
      throw new Error('nope');
    },
  });
  const rand = rng(0xadc0ffee);
  const int = (n: number) => Math.floor(rand() * n);
  const randomString = () =>
    Array.from({ length: int(12) }, () => String.fromCharCode(rand() < 0.8 ? 32 + int(95) : int(0x3000))).join('');
  const randomJson = (depth: number): unknown => {
    switch (int(depth > 3 ? 5 : 8)) {
      case 0:
        return null;
      case 1:
        return rand() < 0.5;
      case 2:
        return rand() < 0.5 ? int(1e6) - 5e5 : (rand() - 0.5) * 1e300;
      case 3:
      case 4:
        return randomString();
      case 5:
        return Array.from({ length: int(4) }, () => randomJson(depth + 1));
      default: {
        const o: Record<string, unknown> = {};
        for (let i = int(4); i > 0; i--) o[randomString()] = randomJson(depth + 1);
        if (rand() < 0.6) o.cmd = ['help', 'version', 'echo', 'typed', 'throws', 'nosuch', 7, null][int(8)];
        if (rand() < 0.5) o.args = rand() < 0.7 ? { n: rand() < 0.5 ? int(10) : randomString() } : randomJson(depth + 1);
        if (rand() < 0.5) o.id = randomJson(depth + 1);
        return o;
      }
    }
  };
  const lines: Buffer[] = [];
  for (let i = 0; i < 2000; i++) {
    const kind = int(4);
    if (kind === 0) {
      const bytes = Buffer.alloc(int(200));
      for (let j = 0; j < bytes.length; j++) bytes[j] = int(256);
      lines.push(Buffer.from(bytes.filter((b) => b !== 0x0a)));
    } else if (kind === 1) {
      // Valid JSON with a random byte flipped.
      const b = Buffer.from(JSON.stringify(randomJson(0)));
      if (b.length) b[int(b.length)] = int(256);
      lines.push(Buffer.from(b.filter((x) => x !== 0x0a)));
    } else {
      lines.push(Buffer.from(JSON.stringify(randomJson(0))));
    }
  }
  // A deeply nested id must not take the connection down either.
  lines.push(Buffer.from('{"cmd":"version","id":' + '['.repeat(1500) + ']'.repeat(1500) + '}'));

  // Several connections, each sending its share in random-sized chunks.
  const conns = 4;
  const perConn = Math.ceil(lines.length / conns);
  await withTimeout(
    Promise.all(
      Array.from({ length: conns }, async (_, c) => {
        const mine = lines.slice(c * perConn, (c + 1) * perConn);
        const raw = await Raw.open(srv.socketPath);
        const payload = Buffer.concat(mine.flatMap((l) => [l, Buffer.from('\n')]));
        for (let off = 0; off < payload.length; ) {
          const n = 1 + int(8192);
          raw.send(payload.subarray(off, off + n));
          off += n;
        }
        const replies = await raw.waitLines(mine.length, 15_000);
        t.equal(replies.length, mine.length, `connection ${c}: one reply per line`);
        let bad = 0;
        for (const r of replies) {
          const v = JSON.parse(r);
          const ok =
            (v.ok === true && 'result' in v) ||
            (v.ok === false && typeof v.error?.code === 'string' && typeof v.error?.message === 'string' && v.error.message !== '');
          if (!ok) bad++;
        }
        t.equal(bad, 0, `connection ${c}: every reply is a valid ok or error reply`);
        t.notOk(raw.ended, `connection ${c} still open`);
        t.match(await raw.request({ cmd: 'version', id: 'after' }), { ok: true, id: 'after', result: { version: VERSION } });
        raw.destroy();
      }),
    ),
    18_000,
    'fuzz run',
  );
  t.match(await adminRequest(srv.socketPath, 'version'), { version: VERSION });
});

// ---------------------------------------------------------------- format

t.test('format: arrays of flat objects become aligned columns', async (t) => {
  const out = formatReply('jobs', [
    { id: 'job-1', state: 'running', lanes: 2 },
    { id: 'job-22', state: 'done', lanes: 12, error: null },
  ]);
  t.equal(
    out,
    ['ID      STATE    LANES  ERROR', 'job-1   running      2', 'job-22  done        12  -'].join('\n'),
  );
  t.equal(formatReply('jobs', []), '(none)');
  t.equal(formatReply('peers', ['a', 'b']), 'a\nb');
});

t.test('format: objects become key: value lines, nesting is indented', async (t) => {
  const out = formatReply('status', {
    party: 1,
    peerId: '12D3Koo',
    ready: true,
    store: { jobs: 3, bytes: 10n },
    peers: [
      { party: 0, connected: true },
      { party: 2, connected: false },
    ],
    notes: [],
  });
  t.equal(
    out,
    [
      'party:  1',
      'peerId: 12D3Koo',
      'ready:  true',
      'store:',
      '  jobs:  3',
      '  bytes: 10',
      'peers:',
      '  PARTY  CONNECTED',
      '      0  true',
      '      2  false',
      'notes:',
      '  (none)',
    ].join('\n'),
  );
  t.equal(formatReply('x', null), 'ok');
  t.equal(formatReply('x', 'plain text'), 'plain text');
  t.equal(formatReply('x', {}), '(empty)');
  t.equal(
    formatReply('x', [{ a: 1, sub: { b: 2 } }, 'z']),
    ['- a: 1', '  sub:', '    b: 2', '- z'].join('\n'),
  );
});

t.test('format: control characters from remote data are escaped', async (t) => {
  t.equal(sanitize('evil\u001b[2Jname\n'), 'evil\\x1b[2Jname\\n');
  t.equal(formatReply('x', { 'k\u0007': 'v\u009b' }), 'k\\x07: v\\x9b');
  t.equal(formatReply('x', [{ n: 'a\tb' }]), 'N\na\\tb');
});

t.test('format: help is a command list with arguments under each command', async (t) => {
  const srv = await startServer(t);
  srv.register('jobs', {
    help: 'list jobs',
    args: {
      state: { help: 'only jobs in this state', type: 'string' },
      limit: { help: 'at most this many', type: 'integer', required: true },
    },
    handler: () => [],
  });
  const out = formatReply('help', await adminRequest(srv.socketPath, 'help'));
  t.equal(
    out,
    [
      'help     list the commands and what they do',
      'jobs     list jobs',
      '           state=<string>   only jobs in this state',
      '           limit=<integer>  at most this many (required)',
      'version  daemon version, Node.js version and admin API version',
    ].join('\n'),
  );
});
