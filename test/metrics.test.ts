/**
 * Metrics and health endpoint over real HTTP: what a Prometheus scraper and a
 * health probe see (names, types, content type, valid exposition text,
 * 200/503/404/405/400), that it binds loopback by default, and that the
 * registry can be shared with libp2p's metrics.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { prometheusMetrics } from '@libp2p/prometheus-metrics';
import { ConfigError } from '../daemon/errors.ts';
import { silentLogger } from '../daemon/logger.ts';
import { createMetrics, MetricsRegistryError } from '../daemon/metrics/metrics.ts';
import {
  MetricsServerError,
  startMetricsServer,
  type HealthReport,
  type MetricsServer,
  type MetricsServerDeps,
  type QuantumHealthReport,
  type SecurityStatusReport,
} from '../daemon/metrics/http.ts';
import { defaultMetricsOptions } from '../daemon/metrics/options.ts';

const healthy: HealthReport = {
  status: 'healthy',
  version: '0.1.0',
  party: 1,
  uptimeSeconds: 12,
  checks: { store: { status: 'healthy' }, peers: { status: 'healthy', detail: '2 of 2 connected' } },
};
const quantum: QuantumHealthReport = {
  status: 'healthy',
  planner: { name: 'anneal', version: '1.0.0', state: 'idle' },
  annealingSteps: 1000,
  plansComputed: 3,
  lastPlan: { digest: 'ab'.repeat(32), at: '2025-01-01T00:00:00.000Z', optimizationSeconds: 0.02, agreed: true, tasks: 2 },
  cache: { entries: 2, hits: 1, misses: 2 },
};
const security: SecurityStatusReport = {
  status: 'healthy',
  securityLevel: 128,
  protocol: 'aby3',
  threatModel: 'semi-honest, honest majority',
  channel: { encryption: 'noise', noiseEncryption: true, cipher: 'ChaChaPoly/libsodium', muxer: 'yamux' },
  committee: {
    size: 3,
    party: 1,
    members: [
      { party: 0, peerId: '12D3KooWA', connected: true },
      { party: 2, peerId: '12D3KooWB', connected: false },
    ],
  },
  refusedPeers: { total: 1, recent: [{ peerId: '12D3KooWX', reason: 'not_in_committee', at: '2025-01-01T00:00:00.000Z' }] },
  threatsDetected: 0,
};

function deps(registry: Registry, over: Partial<MetricsServerDeps> = {}): MetricsServerDeps {
  return { registry, logger: silentLogger(), health: () => healthy, quantumHealth: () => quantum, securityStatus: async () => security, ...over };
}

async function serve(t: { teardown(fn: () => unknown): void }, over: Partial<MetricsServerDeps> = {}, opts: Parameters<typeof startMetricsServer>[0] = { port: 0 }) {
  const registry = new Registry();
  const metrics = createMetrics(registry);
  const server = await startMetricsServer(opts, deps(registry, over));
  t.teardown(() => server.close());
  return { registry, metrics, server };
}

/** Sends raw bytes and returns whatever the server answers before closing. */
function raw(server: MetricsServer, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(server.address.port, server.address.host);
    let out = '';
    sock.setEncoding('utf8');
    sock.on('data', (d) => (out += d));
    sock.on('end', () => resolve(out));
    sock.on('close', () => resolve(out));
    sock.on('error', reject);
    sock.setTimeout(3000, () => sock.destroy());
    sock.write(bytes);
  });
}

/** `{a="1",le="2"}` → `{a="1"}`; `{le="2"}` → ``. */
function withoutLe(labels: string): string {
  return labels.replace(/le="[^"]*",?/, '').replace(/,\}$/, '}').replace('{}', '');
}

/**
 * A structural check of the text exposition format 0.0.4, independent of
 * promtool: every sample belongs to a family declared by # TYPE before it,
 * names and labels are well formed, histogram buckets are cumulative and end
 * in +Inf equal to _count.
 */
function checkExposition(text: string): { families: Map<string, string>; samples: Map<string, number> } {
  const families = new Map<string, string>();
  const samples = new Map<string, number>();
  const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$/;
  const buckets = new Map<string, number[]>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      if (families.has(type[1])) throw new Error(`family ${type[1]} declared twice`);
      families.set(type[1], type[2]);
      continue;
    }
    if (line.startsWith('#')) throw new Error(`unexpected comment: ${line}`);
    const m = sample.exec(line);
    if (!m) throw new Error(`malformed sample line: ${line}`);
    const [, name, labels = '', value] = m;
    if (!/^([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]Inf|NaN|Nan)$/.test(value)) throw new Error(`bad value: ${line}`);
    const family = [name, name.replace(/_(bucket|sum|count)$/, '')].find((f) => families.has(f));
    if (!family) throw new Error(`sample before its # TYPE: ${line}`);
    samples.set(name + labels, Number(value));
    if (families.get(family) === 'histogram' && name.endsWith('_bucket')) {
      const series = family + withoutLe(labels);
      (buckets.get(series) ?? buckets.set(series, []).get(series)!).push(Number(value));
      if (labels.includes('le="+Inf"')) {
        const counts = buckets.get(series)!;
        for (let i = 1; i < counts.length; i++) if (counts[i] < counts[i - 1]) throw new Error(`buckets not cumulative in ${series}`);
      }
    }
  }
  for (const [name, type] of families) {
    if (type !== 'histogram') continue;
    for (const [key, v] of samples) {
      if (!key.startsWith(name + '_bucket') || !key.includes('le="+Inf"')) continue;
      const countKey = name + '_count' + withoutLe(key.slice((name + '_bucket').length));
      if (samples.get(countKey) !== v) throw new Error(`${key} = ${v} but ${countKey} = ${samples.get(countKey)}`);
    }
  }
  return { families, samples };
}

const EXPECTED_FAMILIES: Record<string, string> = {
  quantum_tasks_scheduled_total: 'counter',
  quantum_tasks_completed_total: 'counter',
  quantum_tasks_failed_total: 'counter',
  task_execution_time_seconds: 'histogram',
  quantum_optimization_time_seconds: 'gauge',
  quantum_cache_hits_total: 'counter',
  quantum_cache_misses_total: 'counter',
  quantum_cache_hit_rate: 'gauge',
  quantum_cache_miss_rate: 'gauge',
  worker_utilization_ratio: 'gauge',
  memory_usage_bytes: 'gauge',
  security_threats_detected_total: 'counter',
  qmpc_jobs_active: 'gauge',
  qmpc_jobs_queued: 'gauge',
  qmpc_jobs_capacity: 'gauge',
  qmpc_mpc_bytes_sent_total: 'counter',
  qmpc_mpc_bytes_received_total: 'counter',
  qmpc_mpc_rounds_total: 'counter',
  qmpc_job_bytes: 'histogram',
  qmpc_job_rounds: 'histogram',
  qmpc_planning_duration_seconds: 'histogram',
  qmpc_peers_connected: 'gauge',
  qmpc_peers_refused_total: 'counter',
  qmpc_admin_requests_total: 'counter',
  qmpc_build_info: 'gauge',
  // prom-client's default process metrics
  process_cpu_seconds_total: 'counter',
  process_resident_memory_bytes: 'gauge',
  process_start_time_seconds: 'gauge',
  nodejs_eventloop_lag_seconds: 'gauge',
  nodejs_heap_size_used_bytes: 'gauge',
};

t.test('GET /metrics: Prometheus text with every metric family, its type and recorded values', async (t) => {
  const { metrics: m, server } = await serve(t);
  m.tasksScheduled.inc(3);
  m.tasksCompleted.inc(2);
  m.tasksFailed.inc({ reason: 'timeout' });
  m.taskExecutionTime.observe(0.3);
  m.taskExecutionTime.observe(7);
  m.jobsActive.set(2);
  m.jobsCapacity.set(8);
  m.mpcBytesSent.inc({ peer: 2 }, 4096);
  m.mpcBytesReceived.inc({ peer: 0 }, 1000);
  m.mpcRounds.inc(42);
  m.jobBytes.observe(5096);
  m.jobRounds.observe(42);
  m.optimizationTime.set(0.125);
  m.plannerCacheHits.inc({ cache: 'optimization' }, 3);
  m.plannerCacheMisses.inc({ cache: 'optimization' });
  m.peersConnected.set(2);
  m.peersRefused.inc({ reason: 'not_in_committee' });
  m.securityThreats.inc({ kind: 'plan_digest_mismatch' });
  m.adminRequests.inc({ cmd: 'status', result: 'ok' });

  const res = await fetch(server.url + '/metrics');
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const text = await res.text();
  const { families, samples } = checkExposition(text);
  for (const [name, type] of Object.entries(EXPECTED_FAMILIES)) t.equal(families.get(name), type, `${name} is a ${type}`);

  const version = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
  const expected: Record<string, number> = {
    quantum_tasks_scheduled_total: 3,
    quantum_tasks_completed_total: 2,
    'quantum_tasks_failed_total{reason="timeout"}': 1,
    task_execution_time_seconds_count: 2,
    task_execution_time_seconds_sum: 7.3,
    'task_execution_time_seconds_bucket{le="0.5"}': 1,
    'task_execution_time_seconds_bucket{le="10"}': 2,
    qmpc_jobs_active: 2,
    worker_utilization_ratio: 0.25,
    'qmpc_mpc_bytes_sent_total{peer="2"}': 4096,
    'qmpc_mpc_bytes_received_total{peer="0"}': 1000,
    qmpc_mpc_rounds_total: 42,
    'qmpc_job_bytes_bucket{le="4096"}': 0,
    'qmpc_job_bytes_bucket{le="16384"}': 1,
    'qmpc_job_rounds_bucket{le="64"}': 1,
    quantum_optimization_time_seconds: 0.125,
    'quantum_cache_hit_rate{cache="optimization"}': 0.75,
    'quantum_cache_miss_rate{cache="optimization"}': 0.25,
    qmpc_peers_connected: 2,
    'qmpc_peers_refused_total{reason="not_in_committee"}': 1,
    'security_threats_detected_total{kind="plan_digest_mismatch"}': 1,
    'qmpc_admin_requests_total{cmd="status",result="ok"}': 1,
    [`qmpc_build_info{version="${version}",node="${process.versions.node}"}`]: 1,
  };
  for (const [key, v] of Object.entries(expected)) t.equal(samples.get(key), v, key);
  t.ok((samples.get('memory_usage_bytes{type="rss"}') ?? 0) > 1e6, 'rss is measured');
  t.ok((samples.get('process_resident_memory_bytes') ?? 0) > 1e6, 'default process metrics are collected');
  t.notOk([...samples.keys()].some((k) => k.startsWith('quantum_cache_hit_rate{cache="annealer"')), 'a cache with no lookups has no made-up rate');

  const hasPromtool = spawnSync('sh', ['-c', 'command -v promtool']).status === 0;
  t.test('promtool accepts the exposition text', { skip: hasPromtool ? false : 'promtool not installed (Debian package "prometheus" provides it)' }, async (t) => {
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 10_000 });
    const report = (r.stdout + r.stderr).trim();
    // 0: clean; 3: lint findings only. 1 would be a parse error.
    t.ok(r.status === 0 || r.status === 3, `promtool exit ${r.status}: ${report}`);
    // prom-client names three gauges *_total; those findings are not ours to fix.
    const findings = report.split('\n').filter((l) => l && !/^nodejs_active_(handles|requests|resources)_total /.test(l));
    t.same(findings, [], 'no promtool findings for qmpc metrics');
  });
});

t.test('HEAD /metrics answers like GET without a body', async (t) => {
  const { server } = await serve(t);
  const res = await fetch(server.url + '/metrics', { method: 'HEAD' });
  t.equal(res.status, 200);
  t.equal(await res.text(), '');
});

t.test('/health: 200 when healthy or degraded, 503 when unhealthy, failing or hanging', async (t) => {
  let report: HealthReport | Promise<HealthReport> = healthy;
  const { server } = await serve(t, { health: () => report }, { port: 0, healthTimeoutMs: 200 });
  const get = async () => {
    const res = await fetch(server.url + '/health');
    t.match(res.headers.get('content-type'), /^application\/json/);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    return { status: res.status, body: (await res.json()) as any };
  };

  t.same(await get(), { status: 200, body: healthy });

  report = { ...healthy, status: 'degraded', checks: { peers: { status: 'degraded', detail: 'party 2 disconnected' } } };
  t.same(await get(), { status: 200, body: report });

  report = { ...healthy, status: 'unhealthy', checks: { store: { status: 'unhealthy', detail: 'closed' } } };
  t.same(await get(), { status: 503, body: report });

  report = Promise.reject(Object.assign(new Error('store gone'), { code: 'ERR_STORE' }));
  (report as Promise<unknown>).catch(() => {});
  const failed = await get();
  t.equal(failed.status, 503);
  t.equal(failed.body.status, 'unhealthy');
  t.equal(failed.body.error.message, 'store gone');

  report = new Promise<HealthReport>(() => {});
  const started = Date.now();
  const hung = await get();
  t.equal(hung.status, 503, 'a provider that never answers gives 503');
  t.equal(hung.body.error.code, 'ERR_TIMEOUT');
  t.ok(Date.now() - started < 2000, 'within the configured timeout');

  report = { status: 'fine' } as unknown as HealthReport;
  const bad = await get();
  t.equal(bad.status, 503, 'a report without a valid status is not taken as healthy');
  t.equal(bad.body.error.code, 'ERR_BAD_REPORT');
});

t.test('/quantum/health and /security/status serve the daemon\'s reports', async (t) => {
  const { server } = await serve(t);
  const q = await fetch(server.url + '/quantum/health');
  t.equal(q.status, 200);
  t.same(await q.json(), quantum);
  const s = await fetch(server.url + '/security/status?verbose=1');
  t.equal(s.status, 200, 'query strings are ignored');
  t.same(await s.json(), security);

  const { server: down } = await serve(t, { quantumHealth: () => ({ ...quantum, status: 'unhealthy', planner: { ...quantum.planner, state: 'disagreed' } }) });
  t.equal((await fetch(down.url + '/quantum/health')).status, 503);
});

t.test('unknown paths are 404 JSON, other methods 405, garbage 400, and the server keeps serving', async (t) => {
  const { server } = await serve(t);
  for (const path of ['/', '/nope', '/metrics/', '/health/x', '/__proto__', '/constructor']) {
    const res = await fetch(server.url + path);
    t.equal(res.status, 404, path);
    t.equal(((await res.json()) as { error: { code: string } }).error.code, 'ERR_NOT_FOUND', path);
  }
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
    const res = await fetch(server.url + '/metrics', { method, body: method === 'DELETE' ? undefined : 'x' });
    t.equal(res.status, 405, method);
    t.equal(res.headers.get('allow'), 'GET, HEAD');
    t.equal(((await res.json()) as { error: { code: string } }).error.code, 'ERR_METHOD');
  }
  t.match(await raw(server, 'NOT HTTP AT ALL\r\n\r\n'), /^HTTP\/1\.1 400 /, 'malformed request line');
  t.match(await raw(server, `GET /metrics HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`), /^HTTP\/1\.1 431 /, 'oversized header');
  t.match(await raw(server, 'GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), /^HTTP\/1\.1 200 /, 'still serving');
});

/** Resolves to the connect error, or null if something accepted the connection. */
function tryConnect(port: number, host: string): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolve) => {
    const s = connect(port, host);
    s.on('connect', () => {
      s.destroy();
      resolve(null);
    });
    s.on('error', resolve);
  });
}

const otherIPv4 = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

t.test('binds 127.0.0.1 by default and is not reachable on other interfaces', async (t) => {
  t.equal(defaultMetricsOptions.host, '127.0.0.1');
  t.equal(defaultMetricsOptions.port, 9464, 'the usual exporter port, clear of a local Prometheus on 9090');
  const { server } = await serve(t);
  t.equal(server.address.host, '127.0.0.1');
  t.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.test('not reachable on another interface', { skip: otherIPv4 ? false : 'no non-loopback IPv4 interface to probe' }, async (t) => {
    const err = await tryConnect(server.address.port, otherIPv4!);
    t.equal(err?.code, 'ECONNREFUSED', `not listening on ${otherIPv4}`);
  });
});

t.test('listen and option errors are clear', async (t) => {
  const { server, registry } = await serve(t);
  const busy = await startMetricsServer({ port: server.address.port }, deps(registry)).then(
    () => null,
    (e: unknown) => e,
  );
  t.type(busy, MetricsServerError);
  t.equal((busy as MetricsServerError).code, 'ERR_METRICS_LISTEN');
  t.match((busy as Error).message, /EADDRINUSE/);
  await t.rejects(startMetricsServer({ port: 70_000 }, deps(registry)), ConfigError);
  await t.rejects(startMetricsServer({ port: 70_000 }, deps(registry)), /metrics\.port/);
  await t.rejects(startMetricsServer({ host: '' }, deps(registry)), /metrics\.host/);
});

t.test('close() ends keep-alive connections, is idempotent, and abort closes too', async (t) => {
  const registry = new Registry();
  createMetrics(registry);
  const server = await startMetricsServer({ port: 0 }, deps(registry));
  const res = await fetch(server.url + '/metrics', { headers: { connection: 'keep-alive' } });
  await res.text();
  const started = Date.now();
  await Promise.all([server.close(), server.close()]);
  t.ok(Date.now() - started < 1000, 'no wait for the keep-alive timeout');
  await t.rejects(fetch(server.url + '/health'), 'nothing listens any more');

  const ac = new AbortController();
  const s2 = await startMetricsServer({ port: 0 }, deps(registry, { signal: ac.signal }));
  ac.abort();
  await s2.close();
  await t.rejects(fetch(s2.url + '/health'));
  await t.rejects(startMetricsServer({ port: 0 }, deps(registry, { signal: ac.signal })), 'an aborted signal does not start');
});

t.test('createMetrics twice on one registry is a clear error', async (t) => {
  const registry = new Registry();
  createMetrics(registry);
  t.throws(() => createMetrics(registry), MetricsRegistryError);
  t.throws(() => createMetrics(registry), { code: 'ERR_METRICS_REGISTRY' });
});

t.test('the registry is shared with libp2p\'s Prometheus metrics', async (t) => {
  const registry = new Registry();
  const m = createMetrics(registry, { version: '9.9.9' });
  const silent = Object.assign(() => {}, { enabled: false, error() {}, trace() {}, newScope: () => silent });
  const libp2pMetrics = prometheusMetrics({ registry, collectDefaultMetrics: false, preserveExistingMetrics: true })({
    logger: { forComponent: () => silent },
  } as never);
  t.ok(libp2pMetrics);
  m.mpcRounds.inc(5);
  const server = await startMetricsServer({ port: 0 }, deps(registry));
  t.teardown(() => server.close());
  const { families, samples } = checkExposition(await (await fetch(server.url + '/metrics')).text());
  t.equal(families.get('nodejs_memory_usage_bytes'), 'gauge', 'libp2p metric present');
  t.equal(samples.get('qmpc_mpc_rounds_total'), 5, 'qmpc metric present');
  t.equal(samples.get(`qmpc_build_info{version="9.9.9",node="${process.versions.node}"}`), 1);
});
