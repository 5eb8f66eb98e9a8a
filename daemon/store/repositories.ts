/**
 * Typed repositories over the store controller: job records, job results,
 * model shares and planner caches. "Not found" is `null`; a stored value
 * that does not decode is a StoreError naming its bucket and key.
 *
 * Each repository serialises read-modify-write sequences per key in memory:
 * the database lock guarantees this process is the only writer, so an
 * in-process lock is enough to keep records and their indexes consistent.
 */
import { EXIT, QmpcError, StoreError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { BUCKETS, type BucketId, type BucketName } from './buckets.ts';
import { corrupt, decodeFramed, decodeJson, encodeFramed, encodeJson, type BatchOp, type StoreController, type ValueWhere } from './controller.ts';

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });
const EMPTY = new Uint8Array(0);

// ---------------------------------------------------------------------------
// Jobs

export const JOB_STATES = ['received', 'admitted', 'running', 'done', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

/** States a job never leaves. */
export const TERMINAL_JOB_STATES: ReadonlySet<JobState> = new Set(['done', 'failed', 'cancelled']);

/** Which state may follow which; a job may skip admission (a party that runs jobs as they come). */
const NEXT_STATES: Readonly<Record<JobState, readonly JobState[]>> = {
  received: ['admitted', 'running', 'failed', 'cancelled'],
  admitted: ['running', 'failed', 'cancelled'],
  running: ['done', 'failed', 'cancelled'],
  done: [],
  failed: [],
  cancelled: [],
};

export interface JobRecord {
  id: string;
  kind: string;
  state: JobState;
  /** Milliseconds since the epoch (an integer: it orders the creation index). */
  createdAt: number;
  updatedAt: number;
  /** Job parameters as the client sent them (JSON). */
  params?: unknown;
  /** Tensor names and shapes of the inputs and outputs (JSON; never the shares). */
  inputs?: unknown;
  outputs?: unknown;
  /** Run statistics (JSON). */
  stats?: unknown;
  error?: { code: string; message: string };
}

export interface JobQuery {
  state?: JobState | readonly JobState[];
  /** At most this many records (default: all). */
  limit?: number;
  /** By creation time: oldest first (default) or newest first. */
  order?: 'asc' | 'desc';
}

/** A state change the job lifecycle does not allow (e.g. out of a terminal state). */
export class JobTransitionError extends QmpcError {
  readonly exitCode = EXIT.software;
  constructor(message: string) {
    super('ERR_JOB_TRANSITION', message);
  }
}

export class JobRepository {
  private readonly c: StoreController;
  private readonly lock = new KeyedLock();

  constructor(controller: StoreController) {
    this.c = controller;
  }

  async get(id: string): Promise<JobRecord | null> {
    const raw = await this.c.get(BUCKETS.jobs, idKey(id, 'job id'));
    return raw === null ? null : decodeJob(raw, id);
  }

  /** Creates or replaces a record, durably (fsync) together with its creation-index entry. */
  async put(rec: JobRecord): Promise<void> {
    checkJob(rec);
    await this.lock.run(rec.id, () => this.write(rec));
  }

  /**
   * Moves a job to `to` (with optional fields such as `error`), durably.
   * Null when the job is unknown; JobTransitionError when the lifecycle does
   * not allow the step, so a late "running" cannot resurrect a cancelled job.
   */
  async transition(id: string, to: JobState, patch: Partial<Omit<JobRecord, 'id' | 'state' | 'createdAt'>> = {}, now: number = Date.now()): Promise<JobRecord | null> {
    if (!JOB_STATES.includes(to)) throw new JobTransitionError(`job ${id}: unknown state ${JSON.stringify(to)}`);
    return this.lock.run(id, async () => {
      const cur = await this.get(id);
      if (cur === null) return null;
      if (!NEXT_STATES[cur.state].includes(to)) {
        throw new JobTransitionError(`job ${id} cannot go from ${cur.state} to ${to}`);
      }
      const next: JobRecord = { ...cur, ...patch, id, state: to, createdAt: cur.createdAt, updatedAt: patch.updatedAt ?? now };
      checkJob(next);
      await this.write(next);
      return next;
    });
  }

  /** Records in creation order, optionally only those in the given state(s). */
  async list(q: JobQuery = {}): Promise<JobRecord[]> {
    const limit = q.limit ?? Infinity;
    if (!(limit > 0)) return [];
    const states = q.state === undefined ? null : new Set<JobState>(typeof q.state === 'string' ? [q.state] : q.state);
    const out: JobRecord[] = [];
    let pending: { id: string; createdAt: number }[] = [];
    // Records are fetched in chunks so a limited list reads about `limit` records, not all of them.
    const flush = async (): Promise<boolean> => {
      const raws = await this.c.getMany(BUCKETS.jobs, pending.map((p) => utf8.encode(p.id)));
      for (let i = 0; i < pending.length; i++) {
        const raw = raws[i];
        if (raw === null) continue;
        const rec = decodeJob(raw, pending[i].id);
        // An index entry left by a record whose createdAt was rewritten; the record is listed under its own entry.
        if (rec.createdAt !== pending[i].createdAt) continue;
        if (states && !states.has(rec.state)) continue;
        out.push(rec);
        if (out.length >= limit) return true;
      }
      pending = [];
      return false;
    };
    for await (const k of this.c.keys(BUCKETS.jobsByCreation, { reverse: q.order === 'desc' })) {
      const { t, id } = parseTimeKey(k, 'jobsByCreation');
      pending.push({ id, createdAt: t });
      if (pending.length >= 64 && (await flush())) break;
    }
    if (out.length < limit && pending.length > 0) await flush();
    return out;
  }

  /** Removes a record and its index entry; false if there was none. */
  async delete(id: string): Promise<boolean> {
    return this.lock.run(id, async () => {
      const raw = await this.c.get(BUCKETS.jobs, idKey(id, 'job id'));
      if (raw === null) return false;
      const ops: BatchOp[] = [{ type: 'del', bucket: BUCKETS.jobs, key: utf8.encode(id) }];
      const old = tryDecode(() => decodeJob(raw, id));
      if (old) ops.push({ type: 'del', bucket: BUCKETS.jobsByCreation, key: timeKey(old.createdAt, id) });
      await this.c.batch(ops, { sync: true });
      return true;
    });
  }

  private async write(rec: JobRecord): Promise<void> {
    const key = utf8.encode(rec.id);
    const ops: BatchOp[] = [
      { type: 'put', bucket: BUCKETS.jobs, key, value: encodeJson(rec) },
      { type: 'put', bucket: BUCKETS.jobsByCreation, key: timeKey(rec.createdAt, rec.id), value: EMPTY },
    ];
    const raw = await this.c.get(BUCKETS.jobs, key);
    // A corrupt old record is simply overwritten; list() skips whatever stale index entry it may leave.
    const old = raw === null ? null : tryDecode(() => decodeJob(raw, rec.id));
    if (old && old.createdAt !== rec.createdAt) ops.push({ type: 'del', bucket: BUCKETS.jobsByCreation, key: timeKey(old.createdAt, rec.id) });
    await this.c.batch(ops, { sync: true });
  }
}

function checkJob(rec: JobRecord): void {
  idKey(rec.id, 'job id');
  if (typeof rec.kind !== 'string') throw new StoreError(`job ${rec.id}: kind must be a string, found ${typeof rec.kind}`);
  if (!JOB_STATES.includes(rec.state)) throw new StoreError(`job ${rec.id}: state must be one of ${JOB_STATES.join(', ')}, found ${JSON.stringify(rec.state)}`);
  checkTime(rec.createdAt, `job ${rec.id}: createdAt`);
  if (typeof rec.updatedAt !== 'number' || !Number.isFinite(rec.updatedAt)) throw new StoreError(`job ${rec.id}: updatedAt must be a number of milliseconds, found ${rec.updatedAt}`);
}

function decodeJob(raw: Uint8Array, id: string): JobRecord {
  const where: ValueWhere = { bucket: 'jobs', key: id };
  const v = decodeJson(raw, where);
  if (!isObject(v)) throw corrupt(where, 'expected a job record object');
  if (v.id !== id) throw corrupt(where, `the record's id is ${JSON.stringify(v.id)}`);
  if (typeof v.kind !== 'string') throw corrupt(where, 'the record has no kind');
  if (typeof v.state !== 'string' || !(JOB_STATES as readonly string[]).includes(v.state)) throw corrupt(where, `unknown state ${JSON.stringify(v.state)}`);
  if (typeof v.createdAt !== 'number' || typeof v.updatedAt !== 'number') throw corrupt(where, 'createdAt/updatedAt are not numbers');
  return v as unknown as JobRecord;
}

// ---------------------------------------------------------------------------
// Results

export interface StoredResult {
  jobId: string;
  /** The output share pairs, as the job service encoded them. */
  payload: Uint8Array;
  expiresAt: number;
  storedAt: number;
  /** What the caller stored beside the payload (e.g. output tensor specs). */
  meta: unknown;
}

interface ResultHeader {
  expiresAt: number;
  storedAt: number;
  meta?: unknown;
}

/** Output shares kept until the client fetches them or they expire. */
export class ResultRepository {
  private readonly c: StoreController;
  private readonly lock = new KeyedLock();

  constructor(controller: StoreController) {
    this.c = controller;
  }

  /** Stores (or replaces) a job's result durably; it counts as gone once `now >= expiresAt`. */
  async put(jobId: string, payload: Uint8Array, expiresAt: number, meta?: unknown, now: number = Date.now()): Promise<void> {
    const key = idKey(jobId, 'job id');
    checkTime(expiresAt, `result of job ${jobId}: expiresAt`);
    const header: ResultHeader = { expiresAt, storedAt: now, ...(meta !== undefined && { meta }) };
    await this.lock.run(jobId, async () => {
      const ops: BatchOp[] = [
        { type: 'put', bucket: BUCKETS.jobResults, key, value: encodeFramed(header, payload) },
        { type: 'put', bucket: BUCKETS.resultExpiry, key: timeKey(expiresAt, jobId), value: EMPTY },
      ];
      const old = await this.read(jobId).catch(() => null);
      if (old && old.expiresAt !== expiresAt) ops.push({ type: 'del', bucket: BUCKETS.resultExpiry, key: timeKey(old.expiresAt, jobId) });
      await this.c.batch(ops, { sync: true });
    });
  }

  /** The result if it is there and has not expired. */
  async get(jobId: string, now: number = Date.now()): Promise<StoredResult | null> {
    const r = await this.read(jobId);
    return r && now < r.expiresAt ? r : null;
  }

  /** Fetch-once: returns the result (null if missing or expired) and deletes it either way. */
  async take(jobId: string, now: number = Date.now()): Promise<StoredResult | null> {
    return this.lock.run(jobId, async () => {
      const raw = await this.c.get(BUCKETS.jobResults, idKey(jobId, 'job id'));
      if (raw === null) return null;
      // A corrupt result throws and stays for inspection; sweepExpired removes it once its index entry is due.
      const r = decodeResult(raw, jobId);
      await this.remove(jobId, r.expiresAt);
      return now < r.expiresAt ? r : null;
    });
  }

  async delete(jobId: string): Promise<boolean> {
    return this.lock.run(jobId, async () => {
      const raw = await this.c.get(BUCKETS.jobResults, idKey(jobId, 'job id'));
      if (raw === null) return false;
      await this.remove(jobId, tryDecode(() => decodeResult(raw, jobId))?.expiresAt ?? null);
      return true;
    });
  }

  /** Deletes every result with expiresAt <= now; returns how many. */
  async sweepExpired(now: number = Date.now()): Promise<number> {
    const due: { id: string; expiresAt: number }[] = [];
    for await (const k of this.c.keys(BUCKETS.resultExpiry, { lt: timeKey(Math.max(0, Math.floor(now)) + 1, '') })) {
      const { t, id } = parseTimeKey(k, 'resultExpiry');
      due.push({ id, expiresAt: t });
    }
    let deleted = 0;
    for (const d of due) {
      deleted += await this.lock.run(d.id, async () => {
        const raw = await this.c.get(BUCKETS.jobResults, utf8.encode(d.id));
        const cur = raw === null ? null : tryDecode(() => decodeResult(raw, d.id));
        // The index entry may be stale (the result was replaced with a later expiry): then only the entry goes.
        const expired = raw !== null && (cur === null || cur.expiresAt <= now);
        const ops: BatchOp[] = [{ type: 'del', bucket: BUCKETS.resultExpiry, key: timeKey(d.expiresAt, d.id) }];
        if (expired) ops.push({ type: 'del', bucket: BUCKETS.jobResults, key: utf8.encode(d.id) });
        await this.c.batch(ops, { sync: true });
        return expired ? 1 : 0;
      });
    }
    return deleted;
  }

  private async read(jobId: string): Promise<StoredResult | null> {
    const raw = await this.c.get(BUCKETS.jobResults, idKey(jobId, 'job id'));
    return raw === null ? null : decodeResult(raw, jobId);
  }

  private async remove(jobId: string, expiresAt: number | null): Promise<void> {
    const ops: BatchOp[] = [{ type: 'del', bucket: BUCKETS.jobResults, key: utf8.encode(jobId) }];
    if (expiresAt !== null) ops.push({ type: 'del', bucket: BUCKETS.resultExpiry, key: timeKey(expiresAt, jobId) });
    await this.c.batch(ops, { sync: true });
  }
}

function decodeResult(raw: Uint8Array, jobId: string): StoredResult {
  const where: ValueWhere = { bucket: 'jobResults', key: jobId };
  const { header, payload } = decodeFramed(raw, where);
  if (!isObject(header) || typeof header.expiresAt !== 'number' || typeof header.storedAt !== 'number') {
    throw corrupt(where, 'the result header lacks expiresAt/storedAt');
  }
  return { jobId, payload, expiresAt: header.expiresAt, storedAt: header.storedAt, meta: header.meta };
}

// ---------------------------------------------------------------------------
// Model shares

export interface ModelShareInfo {
  modelId: string;
  /** Caller's description (JSON): tensor shapes, fixed-point format, owner, digest… */
  meta: unknown;
  blobs: { name: string; bytes: number }[];
  storedAt: number;
}

export interface ModelShares {
  info: ModelShareInfo;
  blobs: Map<string, Uint8Array>;
}

/** A model's share blobs (raw bytes, one per tensor) and their description. */
export class ModelShareRepository {
  private readonly c: StoreController;
  private readonly lock = new KeyedLock();

  constructor(controller: StoreController) {
    this.c = controller;
  }

  /** Replaces everything stored for the model, atomically and durably. */
  async put(modelId: string, meta: unknown, blobs: ReadonlyMap<string, Uint8Array> | Readonly<Record<string, Uint8Array>>, now: number = Date.now()): Promise<ModelShareInfo> {
    const prefix = modelPrefix(modelId);
    const entries = blobs instanceof Map ? [...blobs.entries()] : Object.entries(blobs);
    for (const [name, bytes] of entries) {
      if (typeof name !== 'string' || name.length === 0) throw new StoreError(`model ${modelId}: blob names must be non-empty strings`);
      if (!(bytes instanceof Uint8Array)) throw new StoreError(`model ${modelId}: blob ${name} must be a Uint8Array`);
    }
    const info: ModelShareInfo = { modelId, meta: meta ?? null, blobs: entries.map(([name, b]) => ({ name, bytes: b.length })), storedAt: now };
    await this.lock.run(modelId, async () => {
      const ops: BatchOp[] = [];
      for await (const k of this.c.keys(BUCKETS.modelShareBlobs, { prefix })) ops.push({ type: 'del', bucket: BUCKETS.modelShareBlobs, key: k });
      for (const [name, bytes] of entries) ops.push({ type: 'put', bucket: BUCKETS.modelShareBlobs, key: concat(prefix, utf8.encode(name)), value: bytes });
      ops.push({ type: 'put', bucket: BUCKETS.modelShares, key: utf8.encode(modelId), value: encodeJson(info) });
      await this.c.batch(ops, { sync: true });
    });
    return info;
  }

  async info(modelId: string): Promise<ModelShareInfo | null> {
    const raw = await this.c.get(BUCKETS.modelShares, idKey(modelId, 'model id'));
    return raw === null ? null : decodeModelInfo(raw, modelId);
  }

  /** One blob, or null if the model or the blob is not stored. */
  async blob(modelId: string, name: string): Promise<Uint8Array | null> {
    return this.c.get(BUCKETS.modelShareBlobs, concat(modelPrefix(modelId), utf8.encode(name)));
  }

  /** The description and every blob it lists. */
  async get(modelId: string): Promise<ModelShares | null> {
    const info = await this.info(modelId);
    if (info === null) return null;
    const prefix = modelPrefix(modelId);
    const values = await this.c.getMany(BUCKETS.modelShareBlobs, info.blobs.map((b) => concat(prefix, utf8.encode(b.name))));
    const blobs = new Map<string, Uint8Array>();
    info.blobs.forEach((b, i) => {
      const v = values[i];
      if (v === null || v.length !== b.bytes) {
        throw corrupt({ bucket: 'modelShareBlobs', key: `${modelId}/${b.name}` }, v === null ? 'the blob listed by the model is missing' : `expected ${b.bytes} bytes, found ${v.length}`);
      }
      blobs.set(b.name, v);
    });
    return { info, blobs };
  }

  async list(): Promise<ModelShareInfo[]> {
    const out: ModelShareInfo[] = [];
    for await (const [k, v] of this.c.entries(BUCKETS.modelShares)) out.push(decodeModelInfo(v, keyText(k)));
    return out;
  }

  async delete(modelId: string): Promise<boolean> {
    const prefix = modelPrefix(modelId);
    return this.lock.run(modelId, async () => {
      const had = (await this.c.get(BUCKETS.modelShares, utf8.encode(modelId))) !== null;
      const ops: BatchOp[] = [{ type: 'del', bucket: BUCKETS.modelShares, key: utf8.encode(modelId) }];
      for await (const k of this.c.keys(BUCKETS.modelShareBlobs, { prefix })) ops.push({ type: 'del', bucket: BUCKETS.modelShareBlobs, key: k });
      await this.c.batch(ops, { sync: true });
      return had || ops.length > 1;
    });
  }
}

/** Blob keys start with the model id's length so that model "a" never matches model "ab"'s blobs. */
function modelPrefix(modelId: string): Uint8Array {
  const id = idKey(modelId, 'model id');
  return concat(Uint8Array.of(id.length), id);
}

function decodeModelInfo(raw: Uint8Array, modelId: string): ModelShareInfo {
  const where: ValueWhere = { bucket: 'modelShares', key: modelId };
  const v = decodeJson(raw, where);
  if (!isObject(v) || v.modelId !== modelId || !Array.isArray(v.blobs) || typeof v.storedAt !== 'number') {
    throw corrupt(where, 'expected a model-share description {modelId, meta, blobs, storedAt}');
  }
  for (const b of v.blobs) {
    if (!isObject(b) || typeof b.name !== 'string' || typeof b.bytes !== 'number') throw corrupt(where, 'a blob entry lacks name/bytes');
  }
  return v as unknown as ModelShareInfo;
}

// ---------------------------------------------------------------------------
// Planner caches

export interface CacheOptions {
  /** Lifetime of an entry when put() is not given one. */
  ttlMs: number;
  /** Entries kept; beyond this, expired entries and then the soonest-expiring ones are evicted. 0 keeps nothing. */
  maxEntries: number;
}

export interface SweepResult {
  expired: number;
  evicted: number;
}

/**
 * A TTL cache in one bucket, keyed by (namespace, key): a plugin uses its name
 * as the namespace so two planners never read each other's entries. Not
 * fsynced: losing a cache entry costs a recomputation, nothing more.
 */
export class CacheRepository {
  readonly bucket: BucketName;
  private readonly id: BucketId;
  private readonly c: StoreController;
  private readonly opts: CacheOptions;
  private readonly log: Logger;
  /** Upper bound on the entry count (overwrites count twice); null until first needed. */
  private size: number | null = null;
  private sweeping: Promise<SweepResult> | null = null;

  constructor(controller: StoreController, bucket: 'planCache' | 'annealerCache', opts: CacheOptions, log: Logger) {
    this.c = controller;
    this.bucket = bucket;
    this.id = BUCKETS[bucket];
    this.opts = opts;
    this.log = log;
  }

  async get(namespace: string, key: string, now: number = Date.now()): Promise<Uint8Array | null> {
    const k = cacheKey(namespace, key);
    const raw = await this.c.get(this.id, k);
    if (raw === null) return null;
    const e = this.decode(raw, namespace, key);
    return now < e.expiresAt ? e.value : null;
  }

  async put(namespace: string, key: string, value: Uint8Array, ttlMs: number = this.opts.ttlMs, now: number = Date.now()): Promise<void> {
    const k = cacheKey(namespace, key);
    if (this.opts.maxEntries <= 0) return;
    if (!(ttlMs > 0)) throw new StoreError(`cache ${this.bucket}: ttlMs must be positive, found ${ttlMs}`);
    await this.c.put(this.id, k, encodeFramed({ expiresAt: now + ttlMs }, value));
    this.size ??= await this.c.count(this.id);
    this.size++;
    if (this.size > this.opts.maxEntries) await this.sweep(now);
  }

  async getJson(namespace: string, key: string, now?: number): Promise<unknown> {
    const raw = await this.get(namespace, key, now);
    if (raw === null) return null;
    try {
      return JSON.parse(utf8Strict.decode(raw));
    } catch (e) {
      throw corrupt({ bucket: this.bucket, key: `${namespace}/${key}` }, `the cached value is not JSON: ${(e as Error).message}`, e);
    }
  }

  async putJson(namespace: string, key: string, value: unknown, ttlMs?: number, now?: number): Promise<void> {
    await this.put(namespace, key, utf8.encode(JSON.stringify(value)), ttlMs, now);
  }

  async delete(namespace: string, key: string): Promise<void> {
    await this.c.del(this.id, cacheKey(namespace, key));
    this.size = null;
  }

  /** Drops a namespace (or the whole cache); returns how many entries went. */
  async clear(namespace?: string): Promise<number> {
    const range = namespace === undefined ? {} : { prefix: namespacePrefix(namespace) };
    let ops: BatchOp[] = [];
    let n = 0;
    for await (const k of this.c.keys(this.id, range)) {
      ops.push({ type: 'del', bucket: this.id, key: k });
      if (ops.length >= 1000) {
        await this.c.batch(ops);
        n += ops.length;
        ops = [];
      }
    }
    await this.c.batch(ops);
    this.size = null;
    return n + ops.length;
  }

  /**
   * Deletes expired entries, then, while more than maxEntries remain, the
   * soonest-expiring ones down to 90% of maxEntries, so that a full cache
   * does not pay for a scan on every put.
   */
  sweep(now: number = Date.now()): Promise<SweepResult> {
    this.sweeping ??= this.doSweep(now).finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  private async doSweep(now: number): Promise<SweepResult> {
    const live: { key: Uint8Array; expiresAt: number }[] = [];
    const dead: Uint8Array[] = [];
    for await (const [k, v] of this.c.entries(this.id)) {
      const e = tryDecode(() => decodeFramed(v, { bucket: this.bucket, key: keyText(k) }));
      const expiresAt = e && isObject(e.header) && typeof e.header.expiresAt === 'number' ? e.header.expiresAt : null;
      // A cache entry that does not decode is worth nothing: it goes with the expired ones.
      if (expiresAt === null || expiresAt <= now) dead.push(k);
      else live.push({ key: k, expiresAt });
    }
    let evict: Uint8Array[] = [];
    if (live.length > this.opts.maxEntries) {
      live.sort((a, b) => a.expiresAt - b.expiresAt);
      evict = live.splice(0, live.length - Math.floor(this.opts.maxEntries * 0.9)).map((e) => e.key);
    }
    const all = [...dead, ...evict];
    for (let i = 0; i < all.length; i += 1000) {
      await this.c.batch(all.slice(i, i + 1000).map((key) => ({ type: 'del' as const, bucket: this.id, key })));
    }
    this.size = live.length;
    if (all.length > 0) this.log.debug({ cache: this.bucket, expired: dead.length, evicted: evict.length, kept: live.length }, 'cache swept');
    return { expired: dead.length, evicted: evict.length };
  }

  private decode(raw: Uint8Array, namespace: string, key: string): { expiresAt: number; value: Uint8Array } {
    const where: ValueWhere = { bucket: this.bucket, key: `${namespace}/${key}` };
    const { header, payload } = decodeFramed(raw, where);
    if (!isObject(header) || typeof header.expiresAt !== 'number') throw corrupt(where, 'the cache entry header lacks expiresAt');
    return { expiresAt: header.expiresAt, value: payload };
  }
}

function namespacePrefix(namespace: string): Uint8Array {
  const ns = idKey(namespace, 'cache namespace');
  return concat(Uint8Array.of(ns.length), ns);
}

function cacheKey(namespace: string, key: string): Uint8Array {
  if (typeof key !== 'string') throw new StoreError(`cache key must be a string, found ${typeof key}`);
  return concat(namespacePrefix(namespace), utf8.encode(key));
}

// ---------------------------------------------------------------------------
// Shared helpers

/** Ids become keys as UTF-8; 255 bytes keeps them usable as a 1-byte-length prefix. */
function idKey(id: string, what: string): Uint8Array {
  if (typeof id !== 'string' || id.length === 0) throw new StoreError(`${what} must be a non-empty string, found ${JSON.stringify(id)}`);
  const b = utf8.encode(id);
  if (b.length > 255) throw new StoreError(`${what} must be at most 255 bytes of UTF-8, found ${b.length}`);
  return b;
}

function checkTime(t: number, what: string): void {
  if (!Number.isSafeInteger(t) || t < 0) throw new StoreError(`${what} must be a non-negative integer of milliseconds, found ${t}`);
}

/** (time, id) index keys: 8-byte big-endian milliseconds, then the id, so key order is time order. */
function timeKey(t: number, id: string): Uint8Array {
  const out = new Uint8Array(8 + Buffer.byteLength(id));
  const dv = new DataView(out.buffer);
  dv.setUint32(0, Math.floor(t / 2 ** 32));
  dv.setUint32(4, t >>> 0);
  utf8.encodeInto(id, out.subarray(8));
  return out;
}

function parseTimeKey(k: Uint8Array, bucket: BucketName): { t: number; id: string } {
  if (k.length < 9) throw corrupt({ bucket, key: Buffer.from(k).toString('hex') }, 'an index key shorter than 9 bytes');
  const dv = new DataView(k.buffer, k.byteOffset, k.byteLength);
  const t = dv.getUint32(0) * 2 ** 32 + dv.getUint32(4);
  return { t, id: keyText(k.subarray(8)) };
}

function keyText(k: Uint8Array): string {
  return new TextDecoder().decode(k);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The value, or null when it does not decode (for clean-up paths that must not fail on a corrupt record). */
function tryDecode<T>(f: () => T): T | null {
  try {
    return f();
  } catch (e) {
    if (e instanceof StoreError) return null;
    throw e;
  }
}

/** Runs functions one at a time per key; different keys run concurrently. */
class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const mine = prev.then(fn, fn);
    const tail = mine.catch(() => {});
    this.tails.set(key, tail);
    try {
      return await mine;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
