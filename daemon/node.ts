/**
 * PartyNode: one party's daemon, built from its configuration. `init` brings
 * the subsystems up in dependency order (identity, store, metrics, compute
 * backend, libp2p network, MPC sessions, job service, admin socket, HTTP) and
 * `close` takes them down in reverse, store last, so nothing writes to a
 * closed database and every running job records how it ended.
 */
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { prometheusMetrics } from '@libp2p/prometheus-metrics';
import type { ComputeBackend } from '../protocols/backend.ts';
import { createBackend } from '../protocols/backends.ts';
import type { PartyIndex } from '../protocols/transport.ts';
import { AdminServer } from './admin/server.ts';
import { ConfigError, QmpcError } from './errors.ts';
import { redactConfig } from './config/load.ts';
import type { QmpcConfig } from './config/schema.ts';
import { loadOrCreateIdentity, type Identity } from './identity.ts';
import { JOB_PROTOCOL } from './jobs/wire.ts';
import { jobStreamHandler } from './jobs/protocol.ts';
import { JobService, type JobMetrics } from './jobs/service.ts';
import type { Logger } from './logger.ts';
import { createMetrics, type QmpcMetrics, type TaskFailureReason } from './metrics/metrics.ts';
import { startMetricsServer, type HealthReport, type MetricsServer, type SecurityStatusReport, type QuantumHealthReport } from './metrics/http.ts';
import { createPartyNode as createNetworkNode, type PartyNode as NetworkNode } from './network/node.ts';
import { createMpcNetwork, type MpcNetwork } from './network/mpc-transport.ts';
import { noiseCipher } from './network/fast-noise.ts';
import { jobStoreOf, openStore, type Store } from './store/index.ts';
import { VERSION } from './version.ts';
import { missingNodeOptions } from './node-options.ts';

export const NODE_STATUS = { starting: 'starting', running: 'running', stopping: 'stopping', stopped: 'stopped' } as const;
export type NodeStatus = (typeof NODE_STATUS)[keyof typeof NODE_STATUS];

export interface PartyNodeDeps {
  logger: Logger;
}

const RECENT_REFUSALS = 20;

type Refusal = { peerId: string; reason: 'not_in_committee'; at: string };

interface NodeParts {
  refusals: Refusal[];
  config: QmpcConfig;
  logger: Logger;
  identity: Identity;
  store: Store;
  metrics: QmpcMetrics;
  backend: ComputeBackend;
  network: NetworkNode;
  mpc: MpcNetwork;
  jobs: JobService;
  admin: AdminServer;
}

export class PartyNode {
  status: NodeStatus = NODE_STATUS.starting;
  readonly startedAt = Date.now();
  config: QmpcConfig;
  readonly identity: Identity;
  readonly store: Store;
  readonly metrics: QmpcMetrics;
  readonly backend: ComputeBackend;
  readonly network: NetworkNode;
  readonly mpc: MpcNetwork;
  readonly jobs: JobService;
  readonly admin: AdminServer;
  http: MetricsServer | null;
  private readonly logger: Logger;
  private readonly refusals: Refusal[];

  private constructor(parts: NodeParts) {
    this.config = parts.config;
    this.logger = parts.logger;
    this.identity = parts.identity;
    this.store = parts.store;
    this.metrics = parts.metrics;
    this.backend = parts.backend;
    this.network = parts.network;
    this.mpc = parts.mpc;
    this.jobs = parts.jobs;
    this.admin = parts.admin;
    this.refusals = parts.refusals;
    this.http = null;
  }

  get party(): PartyIndex {
    return this.config.party.index;
  }

  static async init(config: QmpcConfig, deps: PartyNodeDeps): Promise<PartyNode> {
    const log = deps.logger;
    const undo: (() => Promise<unknown>)[] = [];
    try {
      const identity = await loadOrCreateIdentity(join(config.storage.state_dir, config.identity.key_file));
      if (identity.created) log.info({ peerId: identity.peerId, file: identity.file }, 'created a new identity key');
      const me = config.committee.find((m) => m.index === config.party.index)!;
      if (me.peer_id !== identity.peerId) {
        throw new ConfigError(`committee entry ${config.party.index} names peer id ${me.peer_id}, but this party's key ${identity.file} is ${identity.peerId}`);
      }
      const store = await openStore({ stateDir: config.storage.state_dir, cacheMaxEntries: config.caching.optimization_cache.max_entries, cacheTtlMs: config.caching.optimization_cache.ttl_hours * 3_600_000 }, { logger: log });
      undo.push(() => store.close());
      const registry = new Registry();
      const metrics = createMetrics(registry, { version: VERSION });
      metrics.jobsCapacity.set(config.scheduler.max_concurrent_tasks);
      const backend = await createBackend({ kind: config.mpc.backend, executionProvider: config.mpc.execution_provider, fallbackToCpu: config.mpc.fallback_to_cpu, log: (m) => log.warn({ module: 'backend' }, m) });
      undo.push(() => backend.close());
      const refusals: Refusal[] = [];
      const network = await createNetworkNode(
        {
          listen: config.network.listen,
          bootstrap: config.network.bootstrap,
          mdns: { enabled: config.network.mdns.enabled, serviceTag: config.network.mdns.service_tag },
          committee: config.committee.map((m) => ({ index: m.index, peerId: m.peer_id, addrs: m.addrs })),
          dialTimeoutMs: config.network.connection_timeout * 1000,
          recvTimeoutMs: config.mpc.round_timeout * 1000,
          redialMinMs: config.network.redial_min * 1000,
          redialMaxMs: config.network.redial_max * 1000,
          maxFrameBytes: config.network.max_frame_bytes,
        },
        {
          logger: log.child({ module: 'network' }), privateKey: identity.privateKey, metrics,
          // One registry for qmpc's and libp2p's metrics; prom-client's defaults are registered once, by createMetrics.
          libp2pMetrics: prometheusMetrics({ registry, collectDefaultMetrics: false, preserveExistingMetrics: true }),
          onRefused: (peerId, reason) => {
            refusals.unshift({ peerId, reason, at: new Date().toISOString() });
            refusals.length = Math.min(refusals.length, RECENT_REFUSALS);
          },
        },
      );
      undo.push(() => network.stop());
      const mpc = await createMpcNetwork(network, { logger: log.child({ module: 'mpc' }), metrics });
      undo.push(() => mpc.close('shutting down'));
      const jobs = new JobService(
        {
          maxConcurrent: config.scheduler.max_concurrent_tasks, maxQueued: config.scheduler.max_queued_tasks,
          taskTimeoutMs: config.scheduler.task_timeout * 1000, admissionTimeoutMs: config.scheduler.admission_timeout * 1000,
          roundTimeoutMs: config.mpc.round_timeout * 1000, resultTtlMs: config.storage.result_ttl_hours * 3_600_000,
          maxTensorElements: config.limits.max_tensor_elements,
        },
        {
          party: config.party.index, logger: log.child({ module: 'jobs' }), backend, store: jobStoreOf(store), metrics: jobMetrics(metrics),
          openSession: (id) => mpc.openSession(Buffer.from(id, 'hex'), config.party.index),
        },
      );
      undo.push(() => jobs.close());
      await jobs.recoverInterrupted();
      await network.libp2p.handle(JOB_PROTOCOL, jobStreamHandler(jobs, { party: config.party.index, maxRequestBytes: config.limits.max_request_bytes, requestTimeoutMs: config.network.connection_timeout * 1000 }, { logger: log.child({ module: 'job-protocol' }) }));
      const admin = await AdminServer.start(
        { socketPath: config.admin.socket ?? join(config.storage.runtime_dir, 'admin.sock'), version: VERSION, mode: parseInt(config.admin.mode, 8) },
        { logger: log.child({ module: 'admin' }) },
      );
      undo.push(() => admin.close());
      const node = new PartyNode({ config, identity, store, metrics, backend, network, mpc, jobs, admin, refusals, logger: log });
      registerAdminCommands(node);
      if (config.metrics.enabled) {
        node.http = await startMetricsServer(
          { host: config.metrics.host, port: config.metrics.port },
          { registry, logger: log.child({ module: 'http' }), health: () => node.health(), quantumHealth: () => node.quantumHealth(), securityStatus: () => node.securityStatus() },
        );
      }
      node.status = NODE_STATUS.running;
      log.info({ party: config.party.index, peerId: identity.peerId, listen: network.getMultiaddrs().map(String), admin: admin.socketPath, metrics: node.http?.url }, 'party node running');
      const missing = missingNodeOptions();
      if (missing.length > 0) log.warn({ missing }, 'node was started without the daemon\'s options: bulk MPC transfers cost more CPU (README, "Node options")');
      return node;
    } catch (e) {
      for (const u of undo.reverse()) await u().catch(() => {});
      throw e;
    }
  }

  /** Applies what can change without a restart; returns the keys it changed and those that need one. */
  reload(next: QmpcConfig): { applied: string[]; needsRestart: string[] } {
    const applied: string[] = [], needsRestart: string[] = [];
    const cur = this.config;
    if (next.logging.level !== cur.logging.level) {
      this.logger.level = next.logging.level;
      applied.push('logging.level');
    }
    for (const section of ['party', 'committee', 'network', 'storage', 'identity', 'mpc', 'admin', 'metrics', 'scheduler', 'limits'] as const) {
      if (JSON.stringify(next[section]) !== JSON.stringify(cur[section])) needsRestart.push(section);
    }
    this.config = { ...cur, logging: next.logging };
    return { applied, needsRestart };
  }

  describe() {
    return {
      party: this.party, name: this.config.party.name ?? null, version: VERSION, status: this.status, peerId: this.identity.peerId,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      listen: this.network.getMultiaddrs().map(String), peersConnected: this.network.connectedParties(),
      jobsActive: this.jobs.activeCount, backend: this.backend.name,
    };
  }

  health(): HealthReport {
    const connected = this.network.connectedParties();
    const missing = ([0, 1, 2] as PartyIndex[]).filter((i) => i !== this.party && !connected.includes(i));
    const peers = missing.length ? { status: 'degraded' as const, detail: `not connected to party ${missing.join(', ')}` } : { status: 'healthy' as const };
    const store = this.store.controller.isOpen ? { status: 'healthy' as const } : { status: 'unhealthy' as const, detail: 'store closed' };
    const running = this.status === NODE_STATUS.running;
    const status = !running || store.status !== 'healthy' ? 'unhealthy' : peers.status;
    return { status, version: VERSION, party: this.party, uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000), checks: { node: { status: running ? 'healthy' : 'unhealthy', detail: this.status }, store, peers, backend: { status: 'healthy', detail: this.backend.name } } };
  }

  quantumHealth(): QuantumHealthReport {
    // The quantum-inspired planner arrives with its own issue; until then jobs run first come, first served.
    return { status: 'healthy', planner: { name: 'fifo', version: VERSION, state: this.jobs.activeCount ? 'executing' : 'idle' }, annealingSteps: 0, plansComputed: 0 };
  }

  securityStatus(): SecurityStatusReport {
    const connected = new Set(this.network.connectedParties());
    return {
      status: 'healthy', securityLevel: this.config.mpc.security_level, protocol: this.config.mpc.protocol, threatModel: 'semi-honest, honest majority',
      channel: { encryption: 'noise', noiseEncryption: true, cipher: `ChaChaPoly/${noiseCipher.impl}`, muxer: 'yamux' },
      committee: { size: 3, party: this.party, members: this.config.committee.map((m) => ({ party: m.index, peerId: m.peer_id, connected: m.index === this.party || connected.has(m.index) })) },
      refusedPeers: { total: this.network.stats().refused, recent: [...this.refusals] },
      threatsDetected: 0,
    };
  }

  /** Ordered shutdown: stop intake, end jobs (recorded), network, endpoints, backend, store last. */
  async close(): Promise<void> {
    if (this.status === NODE_STATUS.stopping || this.status === NODE_STATUS.stopped) return;
    this.status = NODE_STATUS.stopping;
    const steps: [string, () => Promise<unknown>][] = [
      ['admin', () => this.admin.close()],
      ['jobs', () => this.jobs.close()],
      ['mpc', () => this.mpc.close('party shutting down')],
      ['network', () => this.network.stop()],
      ['http', async () => this.http?.close()],
      ['backend', () => this.backend.close()],
      ['store', () => this.store.close()],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (e) {
        this.logger.error({ subsystem: name, err: (e as Error).message }, 'error while stopping');
      }
    }
    this.status = NODE_STATUS.stopped;
  }
}

function jobMetrics(m: QmpcMetrics): JobMetrics {
  return {
    scheduled: () => m.tasksScheduled.inc(),
    completed: (_kind, seconds, bytes, rounds) => {
      m.tasksCompleted.inc();
      m.taskExecutionTime.observe(seconds);
      m.jobBytes.observe(bytes);
      m.jobRounds.observe(rounds);
      m.mpcRounds.inc(rounds);
    },
    failed: (_kind, code) => m.tasksFailed.inc({ reason: failureReason(code) }),
    active: (delta) => m.jobsActive.inc(delta),
  };
}

const FAILURE_REASONS: Record<string, TaskFailureReason> = {
  ERR_JOB_TIMEOUT: 'timeout', ERR_TIMEOUT: 'timeout', ERR_CANCELLED: 'aborted', ERR_SHUTTING_DOWN: 'aborted', ERR_ABORTED: 'aborted',
  ERR_ADMISSION: 'rejected', ERR_SESSION_CLOSED: 'peer_lost', ERR_PROTOCOL: 'protocol',
};

function failureReason(code: string): TaskFailureReason {
  return FAILURE_REASONS[code] ?? 'internal';
}

function registerAdminCommands(node: PartyNode): void {
  const a = node.admin;
  const count = (cmd: string) => node.metrics.adminRequests.inc({ cmd, result: 'ok' });
  a.register('status', { help: 'party, peer id, listen addresses, connected peers, running jobs', handler: () => (count('status'), node.describe()) });
  a.register('peers', {
    help: 'the committee and who is connected',
    handler: () => {
      count('peers');
      const connected = new Set(node.network.connectedParties());
      return node.config.committee.map((m) => ({ party: m.index, peerId: m.peer_id, self: m.index === node.party, connected: m.index === node.party || connected.has(m.index), addrs: m.addrs.join(' ') }));
    },
  });
  a.register('jobs', {
    help: 'recent jobs (state=STATE, limit=N)',
    args: { state: { help: 'received, running, done, failed or cancelled', type: 'string' }, limit: { help: 'at most this many (default 50)', type: 'integer' } },
    handler: async (args) => {
      count('jobs');
      const list = await jobStoreOf(node.store).listJobs({ state: args.state as never, limit: (args.limit as number) ?? 50 });
      return list.map((j) => ({ id: j.id, kind: j.kind, state: j.state, created: new Date(j.createdAt).toISOString(), ms: j.stats?.durationMs ?? null, error: j.error?.code ?? null }));
    },
  });
  a.register('job', {
    help: 'one job record (id=JOB_ID)',
    args: { id: { help: 'the job id (32 hex digits)', type: 'string', required: true } },
    handler: async (args) => {
      count('job');
      const rec = await jobStoreOf(node.store).getJob(String(args.id));
      if (!rec) throw new QmpcError('ERR_JOB_UNKNOWN', `job ${args.id} is unknown to party ${node.party}`);
      return rec;
    },
  });
  a.register('config', { help: 'the effective configuration (secrets redacted)', handler: () => (count('config'), redactConfig(node.config)) });
  a.register('store-stats', { help: 'records and approximate bytes per store bucket', handler: async () => (count('store-stats'), node.store.stats()) });
  a.register('network-stats', { help: 'MPC frames, bytes, sessions and refused peers', handler: () => (count('network-stats'), { ...node.mpc.stats(), refused: node.network.stats().refused }) });
}
