/**
 * sd_notify client against a real AF_UNIX datagram socket standing in for
 * systemd: the exact datagrams, the watchdog timer, abstract socket names,
 * and that a missing or broken NOTIFY_SOCKET never hurts the daemon.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DgramSocket } from 'node-unix-socket';
import type { Logger } from '../daemon/logger.ts';
import { createNotifier, formatNotify, NotifyFieldError, parseNotifySocket, startWatchdog } from '../daemon/systemd/notify.ts';

interface LogRecord {
  level: string;
  obj: object | string;
  msg?: string;
}

function recordingLogger(records: LogRecord[] = []): Logger & { records: LogRecord[] } {
  const at = (level: string) => (obj: object | string, msg?: string) => void records.push({ level, obj, msg });
  const logger = {
    records,
    level: 'trace',
    trace: at('trace'),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    fatal: at('fatal'),
    child: () => logger,
  };
  return logger;
}

/** A stand-in for systemd's notification socket. */
class FakeSystemd {
  readonly datagrams: string[] = [];
  private readonly sock = new DgramSocket();
  private waiters: (() => void)[] = [];

  readonly address: string;

  constructor(address: string) {
    this.address = address;
    this.sock.bind(address);
    this.sock.on('data', (buf: Buffer) => {
      this.datagrams.push(buf.toString('utf8'));
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Resolves with the first `n` datagrams, or rejects after `ms`. */
  async take(n: number, ms = 2000): Promise<string[]> {
    const deadline = Date.now() + ms;
    while (this.datagrams.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`expected ${n} datagrams, got ${JSON.stringify(this.datagrams)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.datagrams.splice(0, n);
  }

  close(): void {
    this.sock.close();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'qmpc-notify-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;
function fakeSystemd(t: { teardown(fn: () => unknown): void }): FakeSystemd {
  const s = new FakeSystemd(join(dir, `notify-${seq++}.sock`));
  t.teardown(() => s.close());
  return s;
}

t.test('sends the exact sd_notify datagrams to a socket path', async (t) => {
  const systemd = fakeSystemd(t);
  const n = createNotifier({ logger: recordingLogger(), env: { NOTIFY_SOCKET: systemd.address } });
  t.equal(n.enabled, true);

  t.equal(await n.ready(), true);
  t.equal(await n.ready('serving 0 jobs'), true);
  t.equal(await n.status('planning job 7'), true);
  t.equal(await n.status('line one\nline two'), true);
  t.equal(await n.watchdog(), true);
  t.equal(await n.mainPid(), true);
  t.equal(await n.mainPid(4242), true);
  t.equal(await n.stopping('closing store'), true);
  t.equal(await n.stopping(), true);
  t.same(await systemd.take(9), [
    'READY=1',
    'READY=1\nSTATUS=serving 0 jobs',
    'STATUS=planning job 7',
    'STATUS=line one line two',
    'WATCHDOG=1',
    `MAINPID=${process.pid}`,
    'MAINPID=4242',
    'STOPPING=1\nSTATUS=closing store',
    'STOPPING=1',
  ]);
});

t.test('RELOADING=1 carries MONOTONIC_USEC on CLOCK_MONOTONIC', async (t) => {
  const systemd = fakeSystemd(t);
  const n = createNotifier({ logger: recordingLogger(), env: { NOTIFY_SOCKET: systemd.address } });
  t.equal(await n.reloading('reloading config'), true);
  const [msg] = await systemd.take(1);
  const m = /^RELOADING=1\nMONOTONIC_USEC=(\d+)\nSTATUS=reloading config$/.exec(msg);
  t.ok(m, `datagram: ${JSON.stringify(msg)}`);
  // Compare with another program's CLOCK_MONOTONIC, the clock systemd uses.
  const py = spawnSync('python3', ['-c', 'import time; print(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)'], { encoding: 'utf8' });
  t.test('agrees with python3 time.CLOCK_MONOTONIC', { skip: py.status === 0 ? false : 'python3 not available' }, async (t) => {
    const diff = Number(py.stdout.trim()) - Number(m![1]);
    t.ok(diff >= 0 && diff < 5e6, `external clock minus MONOTONIC_USEC = ${diff} µs`);
  });
});

t.test('abstract socket names (@name) work', async (t) => {
  const name = `qmpc-notify-test-${process.pid}-${Date.now()}`;
  const systemd = new FakeSystemd('\0' + name);
  t.teardown(() => systemd.close());
  const n = createNotifier({ logger: recordingLogger(), env: { NOTIFY_SOCKET: '@' + name } });
  t.equal(await n.ready('up'), true);
  t.same(await systemd.take(1), ['READY=1\nSTATUS=up']);
});

t.test('reads process.env when no env is passed', async (t) => {
  const systemd = fakeSystemd(t);
  const saved = process.env.NOTIFY_SOCKET;
  process.env.NOTIFY_SOCKET = systemd.address;
  t.teardown(() => {
    if (saved === undefined) delete process.env.NOTIFY_SOCKET;
    else process.env.NOTIFY_SOCKET = saved;
  });
  const n = createNotifier({ logger: recordingLogger() });
  await n.ready();
  t.same(await systemd.take(1), ['READY=1']);
});

t.test('watchdog pings WATCHDOG=1 at half of WATCHDOG_USEC until stopped', async (t) => {
  const systemd = fakeSystemd(t);
  const env = { NOTIFY_SOCKET: systemd.address, WATCHDOG_USEC: '60000' };
  const logger = recordingLogger();
  const notifier = createNotifier({ logger, env });
  const wd = startWatchdog({ notifier, logger, env });
  t.teardown(() => wd.stop());
  t.equal(wd.enabled, true);
  t.equal(wd.intervalMs, 30);
  const started = Date.now();
  t.same(await systemd.take(3), ['WATCHDOG=1', 'WATCHDOG=1', 'WATCHDOG=1']);
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 80, `three pings took ${elapsed} ms (≥ 3 × 30 ms minus timer slack)`);
  wd.stop();
  await new Promise((r) => setTimeout(r, 50));
  systemd.datagrams.length = 0;
  await new Promise((r) => setTimeout(r, 150));
  t.same(systemd.datagrams, [], 'no pings after stop()');
});

t.test('watchdog withholds pings while the daemon says it is unhealthy', async (t) => {
  const systemd = fakeSystemd(t);
  const env = { NOTIFY_SOCKET: systemd.address, WATCHDOG_USEC: '20000' };
  const logger = recordingLogger();
  let healthy = false;
  const wd = startWatchdog({ notifier: createNotifier({ logger, env }), logger, env, healthy: () => healthy });
  t.teardown(() => wd.stop());
  await new Promise((r) => setTimeout(r, 120));
  t.same(systemd.datagrams, [], 'no pings while unhealthy');
  t.equal(logger.records.filter((r) => r.level === 'warn').length, 1, 'one warning, not one per tick');
  healthy = true;
  t.same(await systemd.take(1), ['WATCHDOG=1']);
});

t.test('watchdog stays off when it is not ours or not configured', async (t) => {
  const systemd = fakeSystemd(t);
  const logger = recordingLogger();
  const on = (env: NodeJS.ProcessEnv) => startWatchdog({ notifier: createNotifier({ logger, env }), logger, env });
  t.equal(on({ NOTIFY_SOCKET: systemd.address }).enabled, false, 'no WATCHDOG_USEC');
  t.equal(on({ NOTIFY_SOCKET: systemd.address, WATCHDOG_USEC: '20000', WATCHDOG_PID: String(process.pid + 1) }).enabled, false, 'WATCHDOG_PID of another process');
  const mine = on({ NOTIFY_SOCKET: systemd.address, WATCHDOG_USEC: '20000', WATCHDOG_PID: String(process.pid) });
  t.equal(mine.enabled, true, 'WATCHDOG_PID of this process');
  mine.stop();
  t.equal(on({ WATCHDOG_USEC: '20000' }).enabled, false, 'no NOTIFY_SOCKET');
  logger.records.length = 0;
  t.equal(on({ NOTIFY_SOCKET: systemd.address, WATCHDOG_USEC: '5s' }).enabled, false, 'malformed WATCHDOG_USEC');
  t.match(logger.records, [{ level: 'warn', obj: { WATCHDOG_USEC: '5s' } }]);
});

t.test('without NOTIFY_SOCKET everything is a quiet no-op', async (t) => {
  const logger = recordingLogger();
  const n = createNotifier({ logger, env: {} });
  t.equal(n.enabled, false);
  for (const r of await Promise.all([n.ready('x'), n.status('x'), n.watchdog(), n.reloading(), n.stopping(), n.mainPid()])) t.equal(r, false);
  t.same(logger.records.filter((r) => r.level === 'warn' || r.level === 'error'), []);
  t.equal(createNotifier({ logger, env: { NOTIFY_SOCKET: '' } }).enabled, false, 'empty means unset');
});

t.test('a NOTIFY_SOCKET that leads nowhere is a logged warning, not a crash', async (t) => {
  const logger = recordingLogger();
  const n = createNotifier({ logger, env: { NOTIFY_SOCKET: join(dir, 'nobody-listens.sock') } });
  t.equal(await n.ready(), false);
  t.equal(await n.watchdog(), false);
  t.equal(await n.stopping(), false);
  const warns = logger.records.filter((r) => r.level === 'warn');
  t.equal(warns.length, 1, 'warned once, not for every message');
  t.match(warns[0], { msg: /sd_notify failed/, obj: { socket: /nobody-listens\.sock$/, message: 'READY=1' } });

  const quiet = recordingLogger();
  t.equal(createNotifier({ logger: quiet, env: { NOTIFY_SOCKET: '@qmpc-nobody-' + process.pid } }).enabled, true);
  t.equal(await createNotifier({ logger: quiet, env: { NOTIFY_SOCKET: '@qmpc-nobody-' + process.pid } }).ready(), false);
  t.equal(quiet.records.filter((r) => r.level === 'warn').length, 1);
});

t.test('a receiver that comes back is noticed', async (t) => {
  const logger = recordingLogger();
  const path = join(dir, 'later.sock');
  const n = createNotifier({ logger, env: { NOTIFY_SOCKET: path } });
  t.equal(await n.status('a'), false);
  const systemd = new FakeSystemd(path);
  t.teardown(() => systemd.close());
  t.equal(await n.status('b'), true);
  t.same(await systemd.take(1), ['STATUS=b']);
  t.match(logger.records.map((r) => [r.level, r.msg]), [['warn', 'sd_notify failed'], ['info', 'sd_notify works again']]);
});

t.test('unusable NOTIFY_SOCKET values turn notifications off with a warning', async (t) => {
  for (const value of ['relative/path.sock', 'vsock:2:1234', '/' + 'x'.repeat(120)]) {
    const logger = recordingLogger();
    const n = createNotifier({ logger, env: { NOTIFY_SOCKET: value } });
    t.equal(n.enabled, false, value.slice(0, 30));
    t.equal(await n.ready(), false);
    t.equal(logger.records.filter((r) => r.level === 'warn').length, 1);
  }
  t.same(parseNotifySocket('@abc'), { address: '\0abc' });
  t.same(parseNotifySocket('/run/systemd/notify'), { address: '/run/systemd/notify' });
  t.equal(parseNotifySocket(undefined), null);
});

t.test('field names that would corrupt the datagram are refused', async (t) => {
  t.equal(formatNotify({ READY: 1, STATUS: 'ok' }), 'READY=1\nSTATUS=ok');
  t.throws(() => formatNotify({ 'STATUS\nREADY': 1 }), NotifyFieldError);
  t.throws(() => formatNotify({ 'status': 'x' }), { code: 'ERR_NOTIFY_FIELD' });
  const systemd = fakeSystemd(t);
  const n = createNotifier({ logger: recordingLogger(), env: { NOTIFY_SOCKET: systemd.address } });
  await t.rejects(n.notify({ 'A=B': 1 }), NotifyFieldError);
  t.equal(await n.notify({ EXTEND_TIMEOUT_USEC: 5_000_000 }), true);
  t.same(await systemd.take(1), ['EXTEND_TIMEOUT_USEC=5000000']);
});

t.test('neither the notifier nor the watchdog keeps the process alive', async (t) => {
  const systemd = fakeSystemd(t);
  const script = `
    import { createNotifier, startWatchdog } from ${JSON.stringify(new URL('../daemon/systemd/notify.ts', import.meta.url).href)};
    import { silentLogger } from ${JSON.stringify(new URL('../daemon/logger.ts', import.meta.url).href)};
    const logger = silentLogger();
    const notifier = createNotifier({ logger });
    startWatchdog({ notifier, logger });
    await notifier.ready('child');
  `;
  const started = Date.now();
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, NOTIFY_SOCKET: systemd.address, WATCHDOG_USEC: '1000000' },
    encoding: 'utf8',
    timeout: 10_000,
  });
  t.equal(r.status, 0, r.stderr);
  t.ok(Date.now() - started < 8_000, 'exited on its own');
  t.same(await systemd.take(1), ['READY=1\nSTATUS=child']);
});
