/**
 * Job intake and execution on one party: validates and durably records a
 * client's submission, bounds concurrency, runs the job over its MPC session
 * with a deadline, and keeps the output shares until the client takes them.
 * Every way a job can end — success, a peer that never confirms, a peer that
 * disappears, a timeout, cancellation, shutdown — ends in a recorded state and
 * an error the client sees, never a hang.
 */
import type { ComputeBackend } from '../../protocols/backend.ts';
import type { SharePair } from '../../protocols/arith.ts';
import type { PartyIndex, Transport } from '../../protocols/transport.ts';
import { QmpcError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { JobRecord as StoredJobRecord, JobState as StoredJobState } from '../store/repositories.ts';
import { jobKind } from './kinds.ts';
import { runJob } from './runner.ts';
import { decodePairs, encodePairs, type Header, type TensorSpec } from './wire.ts';

/** The stored lifecycle, less 'admitted': this service runs a job as soon as all three parties hold it. */
export type JobState = Exclude<StoredJobState, 'admitted'>;

/** The stored job record (daemon/store) with the fields this service writes given their types. */
export interface JobRecord extends StoredJobRecord {
  state: JobState;
  inputs: TensorSpec[];
  outputs?: TensorSpec[];
  stats?: { durationMs: number; bytesSent: number; bytesReceived: number; messages: number; rounds: number };
}

/** What the service needs from the store (daemon/store implements it durably). */
export interface JobStore {
  getJob(id: string): Promise<JobRecord | null>;
  putJob(rec: JobRecord): Promise<void>;
  listJobs(opts?: { state?: JobState; limit?: number }): Promise<JobRecord[]>;
  putResult(id: string, outputs: TensorSpec[], body: Uint8Array, expiresAt: number): Promise<void>;
  takeResult(id: string): Promise<{ outputs: TensorSpec[]; body: Uint8Array } | null>;
}

export interface JobMetrics {
  scheduled(kind: string): void;
  completed(kind: string, seconds: number, bytes: number, rounds: number): void;
  failed(kind: string, reason: string): void;
  active(delta: number): void;
}

export interface JobServiceOptions {
  maxConcurrent: number;
  maxQueued: number;
  taskTimeoutMs: number;
  admissionTimeoutMs: number;
  roundTimeoutMs: number;
  resultTtlMs: number;
  maxTensorElements: number;
}

export interface JobServiceDeps {
  party: PartyIndex;
  logger: Logger;
  backend: ComputeBackend;
  store: JobStore;
  /** The MPC session of a job (session id = job id) with the other two parties. */
  openSession: (jobId: string) => Transport;
  metrics?: JobMetrics;
}

export class JobError extends QmpcError {
  constructor(code: string, message: string, cause?: unknown) {
    super(code, message, { cause });
  }
}

export interface JobOutcome {
  outputs: TensorSpec[];
  body: Uint8Array;
}

/** A counting semaphore with a bounded wait queue. */
class Slots {
  private free: number;
  private readonly waiters: (() => void)[] = [];
  constructor(n: number) {
    this.free = n;
  }
  get queued(): number {
    return this.waiters.length;
  }
  async acquire(signal: AbortSignal): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const go = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(go);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal.reason);
      };
      this.waiters.push(go);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.free++;
  }
}

export class JobService {
  private readonly opts: JobServiceOptions;
  private readonly deps: JobServiceDeps;
  private readonly slots: Slots;
  private readonly running = new Map<string, AbortController>();
  private readonly shutdown = new AbortController();
  private readonly settled = new Set<Promise<unknown>>();

  constructor(opts: JobServiceOptions, deps: JobServiceDeps) {
    this.opts = opts;
    this.deps = deps;
    this.slots = new Slots(opts.maxConcurrent);
  }

  get activeCount(): number {
    return this.running.size;
  }

  /** Validates and records a submission; resolves with this party's output shares. */
  async submit(header: Header<'submit'>, body: Uint8Array, onStage: (stage: string) => void = () => {}): Promise<JobOutcome> {
    if (this.shutdown.signal.aborted) throw new JobError('ERR_SHUTTING_DOWN', 'this party is shutting down; submit the job again later');
    const kind = jobKind(header.kind);
    const outputs = kind.outputs(header.inputs, header.params);
    const elements = header.inputs.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
    if (elements > this.opts.maxTensorElements) {
      throw new JobError('ERR_JOB_TOO_LARGE', `job ${header.job_id} has ${elements} input elements; this party accepts at most ${this.opts.maxTensorElements}`);
    }
    const inputs = decodePairs(body, header.inputs);
    // Reserve the id and the slot before the first await, so two submissions racing cannot both pass these checks.
    if (this.running.has(header.job_id)) throw new JobError('ERR_JOB_EXISTS', `job ${header.job_id} was already submitted to this party`);
    if (this.running.size >= this.opts.maxConcurrent + this.opts.maxQueued) {
      throw new JobError('ERR_BUSY', `this party already has ${this.running.size} jobs running or queued (limit ${this.opts.maxConcurrent} + ${this.opts.maxQueued})`);
    }
    const ctl = new AbortController();
    this.running.set(header.job_id, ctl);
    const now = Date.now();
    const rec: JobRecord = { id: header.job_id, kind: header.kind, state: 'received', createdAt: now, updatedAt: now, inputs: header.inputs };
    try {
      if (await this.deps.store.getJob(header.job_id)) throw new JobError('ERR_JOB_EXISTS', `job ${header.job_id} was already submitted to this party`);
      await this.deps.store.putJob(rec);
    } catch (e) {
      this.running.delete(header.job_id);
      throw e;
    }
    this.deps.metrics?.scheduled(header.kind);
    const run = this.execute(rec, header, inputs, outputs, ctl, onStage);
    this.settled.add(run);
    run.finally(() => this.settled.delete(run)).catch(() => {});
    return run;
  }

  private async execute(rec: JobRecord, header: Header<'submit'>, inputs: SharePair[], outputs: TensorSpec[], ctl: AbortController, onStage: (s: string) => void): Promise<JobOutcome> {
    const log = this.deps.logger.child({ job: rec.id, kind: rec.kind });
    const signal = AbortSignal.any([ctl.signal, this.shutdown.signal, AbortSignal.timeout(this.opts.taskTimeoutMs)]);
    let transport: Transport | null = null;
    const started = performance.now();
    let acquired = false;
    try {
      onStage('queued');
      await this.slots.acquire(signal);
      acquired = true;
      this.deps.metrics?.active(1);
      await this.update(rec, { state: 'running' });
      transport = this.deps.openSession(rec.id);
      log.info({ inputs: rec.inputs.map((t) => `${t.name}[${t.shape}]`) }, 'job running');
      const { outputs: pairs, rounds } = await runJob({
        transport, header, inputs, backend: this.deps.backend, signal, onStage,
        roundTimeoutMs: this.opts.roundTimeoutMs, admissionTimeoutMs: this.opts.admissionTimeoutMs,
      });
      const body = encodePairs(pairs);
      const seconds = (performance.now() - started) / 1000;
      const s = transport.stats;
      await this.deps.store.putResult(rec.id, outputs, body, Date.now() + this.opts.resultTtlMs);
      await this.update(rec, { state: 'done', outputs, stats: { durationMs: Math.round(seconds * 1000), bytesSent: s.bytesSent, bytesReceived: s.bytesReceived, messages: s.messagesSent, rounds } });
      this.deps.metrics?.completed(rec.kind, seconds, s.bytesSent + s.bytesReceived, rounds);
      log.info({ ms: Math.round(seconds * 1000), bytesSent: s.bytesSent }, 'job done');
      return { outputs, body };
    } catch (e) {
      const err = this.explain(e, signal, ctl);
      transport?.close(err.message);
      await this.update(rec, { state: err.code === 'ERR_CANCELLED' ? 'cancelled' : 'failed', error: { code: err.code, message: err.message } }).catch((w) => log.error({ err: w }, 'could not record job failure'));
      this.deps.metrics?.failed(rec.kind, err.code);
      log.warn({ code: err.code, error: err.message }, 'job failed');
      throw err;
    } finally {
      if (acquired) {
        this.slots.release();
        this.deps.metrics?.active(-1);
      }
      this.running.delete(rec.id);
      transport?.close('job finished');
    }
  }

  /** Turns whatever stopped a job into the error the client and the record show. */
  private explain(e: unknown, signal: AbortSignal, ctl: AbortController): JobError {
    if (ctl.signal.aborted) return new JobError('ERR_CANCELLED', 'the job was cancelled', e);
    if (this.shutdown.signal.aborted) return new JobError('ERR_SHUTTING_DOWN', 'this party shut down while the job ran', e);
    if (signal.aborted) return new JobError('ERR_JOB_TIMEOUT', `the job did not finish within ${this.opts.taskTimeoutMs / 1000} s`, e);
    if (e instanceof QmpcError) return new JobError(e.code, e.message, e);
    return new JobError('ERR_INTERNAL', `internal error: ${(e as Error)?.message ?? String(e)}`, e);
  }

  private async update(rec: JobRecord, patch: Partial<JobRecord>): Promise<void> {
    Object.assign(rec, patch, { updatedAt: Date.now() });
    await this.deps.store.putJob(rec);
  }

  /**
   * Jobs a previous run of this daemon left unfinished (it crashed or was
   * killed) can never finish: their sessions are gone. Records them as failed
   * so the record tells the truth. Call once at start-up, before intake.
   */
  async recoverInterrupted(): Promise<number> {
    let n = 0;
    for (const state of ['received', 'running'] as const) {
      for (const rec of await this.deps.store.listJobs({ state })) {
        if (this.running.has(rec.id)) continue;
        await this.update(rec, { state: 'failed', error: { code: 'ERR_INTERRUPTED', message: 'the party stopped while this job ran (crash or kill); resubmit it' } });
        n++;
      }
    }
    if (n) this.deps.logger.warn({ jobs: n }, 'recorded jobs interrupted by the previous run as failed');
    return n;
  }

  /** Cancels a queued or running job; false if it is not running here. */
  cancel(jobId: string): boolean {
    const ctl = this.running.get(jobId);
    if (!ctl) return false;
    ctl.abort(new JobError('ERR_CANCELLED', 'the job was cancelled'));
    return true;
  }

  /** The stored output shares of a finished job, removed once taken. */
  async fetch(jobId: string): Promise<JobOutcome> {
    const r = await this.deps.store.takeResult(jobId);
    if (r) return r;
    const rec = await this.deps.store.getJob(jobId);
    if (!rec) throw new JobError('ERR_JOB_UNKNOWN', `job ${jobId} is unknown to this party`);
    if (rec.state === 'done') throw new JobError('ERR_RESULT_GONE', `job ${jobId}'s result was already fetched or has expired`);
    throw new JobError('ERR_JOB_NOT_DONE', `job ${jobId} is ${rec.state}${rec.error ? `: ${rec.error.message}` : ''}`);
  }

  /** Stops intake, aborts running jobs and waits for them to record their end. */
  async close(): Promise<void> {
    this.shutdown.abort(new JobError('ERR_SHUTTING_DOWN', 'this party is shutting down'));
    await Promise.allSettled([...this.settled]);
  }
}
