/**
 * The daemon's Prometheus metrics: one factory, one typed object that travels
 * in the deps (`deps.metrics`), one registry shared with libp2p's metrics.
 *
 * Names: where the deployment guide names a quantity this daemon really
 * measures, we use the guide's name so its dashboards and alert rules work
 * (`quantum_tasks_*`, `task_execution_time_seconds`,
 * `quantum_optimization_time_seconds`, `quantum_cache_*`,
 * `worker_utilization_ratio`, `memory_usage_bytes`,
 * `security_threats_detected_total`). Everything else is `qmpc_*`.
 * Guide metrics that would have to be made up are left out on purpose:
 * `quantum_state_coherence_score` (the planner is a classical annealer; there
 * is no quantum state), `gpu_utilization_percent` (no NVML binding),
 * `resource_usage_percent` (no defined denominator), `timing_attack_attempts_total`,
 * `cache_analysis_anomalies_total`, `quantum_state_validation_failures_total`
 * (no detector exists that could count them).
 *
 * Sharing the registry with `@libp2p/prometheus-metrics`: pass it as
 * `registry`, with `collectDefaultMetrics: false` (this factory already
 * collects them; registering twice throws) and `preserveExistingMetrics: true`.
 */
import { collectDefaultMetrics, Counter, exponentialBuckets, Gauge, Histogram, type Registry } from 'prom-client';
import { QmpcError } from '../errors.ts';
import { VERSION } from '../version.ts';

/** Values of `quantum_tasks_failed_total{reason}`; a closed set keeps the series count bounded. */
export type TaskFailureReason =
  | 'timeout' // task_timeout or a round timeout expired
  | 'peer_lost' // a committee member disconnected mid-job
  | 'plan_mismatch' // the parties' plan digests differed
  | 'protocol' // a malformed or unexpected protocol message
  | 'rejected' // admission refused (queue full, invalid request)
  | 'aborted' // cancelled by the client, an operator or shutdown
  | 'internal'; // anything else: a bug or a local resource failure

/** Values of `qmpc_peers_refused_total{reason}`. */
export type PeerRefusalReason =
  | 'not_in_committee' // a peer id outside the configured committee
  | 'wrong_party' // a committee peer claiming another party index
  | 'duplicate' // a second connection from a peer already connected
  | 'protocol_version'; // an incompatible /qmpc/<name>/<major>

/** Values of `security_threats_detected_total{kind}`: protocol violations by a committee member. */
export type SecurityThreatKind =
  | 'plan_digest_mismatch'
  | 'malformed_frame'
  | 'oversize_frame'
  | 'unknown_session';

/** Values of `qmpc_admin_requests_total{result}`. */
export type AdminResult = 'ok' | 'error' | 'unknown_command' | 'bad_request';

/** Values of the `cache` label of the `quantum_cache_*` metrics. */
export type PlannerCacheName = 'optimization' | 'annealer';

export interface QmpcMetrics {
  readonly registry: Registry;

  /** Jobs admitted by all three parties and placed in an agreed plan. */
  readonly tasksScheduled: Counter;
  /** Jobs whose output shares were sent back to the client. */
  readonly tasksCompleted: Counter;
  readonly tasksFailed: Counter<'reason'>;
  /** Wall time from plan agreement to output shares sent, per job. */
  readonly taskExecutionTime: Histogram;
  /** Jobs executing now (set by the executor). */
  readonly jobsActive: Gauge;
  /** Jobs accepted and waiting for admission or a plan. */
  readonly jobsQueued: Gauge;
  /** max_concurrent_tasks, so that utilisation has a denominator. */
  readonly jobsCapacity: Gauge;

  /** Bytes of MPC protocol payload sent to a peer; label `peer` is its party index. */
  readonly mpcBytesSent: Counter<'peer'>;
  readonly mpcBytesReceived: Counter<'peer'>;
  /** Communication rounds this party took part in, over all jobs. */
  readonly mpcRounds: Counter;
  /** Bytes sent plus received by this party per completed job. */
  readonly jobBytes: Histogram;
  /** Communication rounds per completed job. */
  readonly jobRounds: Histogram;

  /** Local annealer time of the latest plan (the guide alerts on it > 60 s). */
  readonly optimizationTime: Gauge;
  /** Whole planning round (coin toss, optimisation, digest compare), network included. */
  readonly planningDuration: Histogram;
  readonly plannerCacheHits: Counter<'cache'>;
  readonly plannerCacheMisses: Counter<'cache'>;

  /** Committee members with a live connection (0–2). */
  readonly peersConnected: Gauge;
  readonly peersRefused: Counter<'reason'>;
  readonly securityThreats: Counter<'kind'>;

  readonly adminRequests: Counter<'cmd' | 'result'>;
  readonly buildInfo: Gauge<'version' | 'node'>;
}

export interface CreateMetricsOptions {
  /** Reported in qmpc_build_info; defaults to VERSION (package.json). */
  version?: string;
  /**
   * Register prom-client's process/Node.js metrics (process_*, nodejs_*) on
   * the same registry. Turn off only if something else already did.
   */
  collectDefault?: boolean;
}

/** The registry refused a metric: most often createMetrics ran twice on one registry. */
export class MetricsRegistryError extends QmpcError {
  constructor(message: string, cause?: unknown) {
    super('ERR_METRICS_REGISTRY', message, { cause });
  }
}

const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
// 1 KiB … 16 GiB: a BERT-tiny job moves megabytes, a larger model gigabytes.
const BYTES_BUCKETS = exponentialBuckets(1024, 4, 13);
// 1 … 8192 rounds: a comparison costs tens of rounds, a transformer layer hundreds.
const ROUNDS_BUCKETS = exponentialBuckets(1, 2, 14);

export function createMetrics(registry: Registry, opts: CreateMetricsOptions = {}): QmpcMetrics {
  try {
    return build(registry, opts);
  } catch (e) {
    throw new MetricsRegistryError(`cannot register qmpc metrics: ${(e as Error).message}`, e);
  }
}

function build(registry: Registry, opts: CreateMetricsOptions): QmpcMetrics {
  // First, so that a clash with libp2p's default metrics leaves nothing half-registered.
  if (opts.collectDefault !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const tasksScheduled = new Counter({ name: 'quantum_tasks_scheduled_total', help: 'Jobs admitted by all three parties and placed in an agreed plan', registers });
  const tasksCompleted = new Counter({ name: 'quantum_tasks_completed_total', help: 'Jobs whose output shares were returned to the client', registers });
  const tasksFailed = new Counter({ name: 'quantum_tasks_failed_total', help: 'Jobs that failed, by reason', labelNames: ['reason'] as const, registers });
  const taskExecutionTime = new Histogram({ name: 'task_execution_time_seconds', help: 'Time from plan agreement to output shares sent, per job', buckets: SECONDS_BUCKETS, registers });
  const jobsActive = new Gauge({ name: 'qmpc_jobs_active', help: 'Jobs executing now', registers });
  const jobsQueued = new Gauge({ name: 'qmpc_jobs_queued', help: 'Jobs accepted and waiting for admission or a plan', registers });
  const jobsCapacity = new Gauge({ name: 'qmpc_jobs_capacity', help: 'Jobs that may execute at once (max_concurrent_tasks)', registers });

  // Derived at scrape time so it can never disagree with its two inputs.
  new Gauge({
    name: 'worker_utilization_ratio',
    help: 'qmpc_jobs_active / qmpc_jobs_capacity (0 while the capacity is not set)',
    registers,
    async collect() {
      const cap = (await jobsCapacity.get()).values[0]?.value ?? 0;
      const active = (await jobsActive.get()).values[0]?.value ?? 0;
      this.set(cap > 0 ? active / cap : 0);
    },
  });

  const mpcBytesSent = new Counter({ name: 'qmpc_mpc_bytes_sent_total', help: 'MPC protocol payload bytes sent, by peer party index', labelNames: ['peer'] as const, registers });
  const mpcBytesReceived = new Counter({ name: 'qmpc_mpc_bytes_received_total', help: 'MPC protocol payload bytes received, by peer party index', labelNames: ['peer'] as const, registers });
  const mpcRounds = new Counter({ name: 'qmpc_mpc_rounds_total', help: 'MPC communication rounds this party took part in', registers });
  const jobBytes = new Histogram({ name: 'qmpc_job_bytes', help: 'MPC bytes sent plus received by this party per completed job', buckets: BYTES_BUCKETS, registers });
  const jobRounds = new Histogram({ name: 'qmpc_job_rounds', help: 'MPC communication rounds per completed job', buckets: ROUNDS_BUCKETS, registers });

  const optimizationTime = new Gauge({ name: 'quantum_optimization_time_seconds', help: 'Local planner (annealer) time of the latest plan', registers });
  const planningDuration = new Histogram({ name: 'qmpc_planning_duration_seconds', help: 'Planning round time: coin toss, optimisation and digest comparison', buckets: SECONDS_BUCKETS, registers });
  const plannerCacheHits = new Counter({ name: 'quantum_cache_hits_total', help: 'Planner cache lookups that found an entry', labelNames: ['cache'] as const, registers });
  const plannerCacheMisses = new Counter({ name: 'quantum_cache_misses_total', help: 'Planner cache lookups that found nothing', labelNames: ['cache'] as const, registers });

  // The guide's rate gauges, as lifetime ratios of the two counters above;
  // a cache with no lookups yet has no sample rather than a made-up 0.
  // For a windowed rate use rate(quantum_cache_hits_total[5m]) in PromQL.
  const cacheRatio = async (pick: 'hits' | 'misses'): Promise<Map<string, number>> => {
    const totals = new Map<string, { hits: number; misses: number }>();
    const entry = (cache: string) => totals.get(cache) ?? totals.set(cache, { hits: 0, misses: 0 }).get(cache)!;
    for (const v of (await plannerCacheHits.get()).values) entry(String(v.labels.cache)).hits += v.value;
    for (const v of (await plannerCacheMisses.get()).values) entry(String(v.labels.cache)).misses += v.value;
    const out = new Map<string, number>();
    for (const [cache, t] of totals) if (t.hits + t.misses > 0) out.set(cache, t[pick] / (t.hits + t.misses));
    return out;
  };
  new Gauge({
    name: 'quantum_cache_hit_rate',
    help: 'Planner cache hits / lookups since start',
    labelNames: ['cache'] as const,
    registers,
    async collect() {
      this.reset();
      for (const [cache, r] of await cacheRatio('hits')) this.set({ cache }, r);
    },
  });
  new Gauge({
    name: 'quantum_cache_miss_rate',
    help: 'Planner cache misses / lookups since start',
    labelNames: ['cache'] as const,
    registers,
    async collect() {
      this.reset();
      for (const [cache, r] of await cacheRatio('misses')) this.set({ cache }, r);
    },
  });

  const peersConnected = new Gauge({ name: 'qmpc_peers_connected', help: 'Committee members with a live connection', registers });
  const peersRefused = new Counter({ name: 'qmpc_peers_refused_total', help: 'Inbound peers or connections refused, by reason', labelNames: ['reason'] as const, registers });
  const securityThreats = new Counter({ name: 'security_threats_detected_total', help: 'Protocol violations detected from committee members, by kind', labelNames: ['kind'] as const, registers });

  new Gauge({
    name: 'memory_usage_bytes',
    help: 'Memory of this daemon process, by type (process.memoryUsage)',
    labelNames: ['type'] as const,
    registers,
    collect() {
      const m = process.memoryUsage();
      this.set({ type: 'rss' }, m.rss);
      this.set({ type: 'heap_total' }, m.heapTotal);
      this.set({ type: 'heap_used' }, m.heapUsed);
      this.set({ type: 'external' }, m.external);
      this.set({ type: 'array_buffers' }, m.arrayBuffers);
    },
  });

  const adminRequests = new Counter({ name: 'qmpc_admin_requests_total', help: 'Admin socket requests, by command and result', labelNames: ['cmd', 'result'] as const, registers });
  const buildInfo = new Gauge({ name: 'qmpc_build_info', help: 'Always 1; labels name the qmpc and Node.js versions', labelNames: ['version', 'node'] as const, registers });
  buildInfo.set({ version: opts.version ?? VERSION, node: process.versions.node }, 1);

  return {
    registry,
    tasksScheduled,
    tasksCompleted,
    tasksFailed,
    taskExecutionTime,
    jobsActive,
    jobsQueued,
    jobsCapacity,
    mpcBytesSent,
    mpcBytesReceived,
    mpcRounds,
    jobBytes,
    jobRounds,
    optimizationTime,
    planningDuration,
    plannerCacheHits,
    plannerCacheMisses,
    peersConnected,
    peersRefused,
    securityThreats,
    adminRequests,
    buildInfo,
  };
}
