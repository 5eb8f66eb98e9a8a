/**
 * The daemon's durable state: `openStore` opens the LevelDB database of a
 * state directory and puts the typed repositories on it. Closed last by the
 * node (DESIGN convention 1), after everything that writes to it.
 */
import type { JobRecord as ServiceJobRecord, JobStore } from '../jobs/service.ts';
import type { TensorSpec } from '../jobs/wire.ts';
import { StoreController, type BucketStats, type StoreDeps } from './controller.ts';
import { resolveStoreOptions, type StoreInit } from './options.ts';
import { CacheRepository, JobRepository, ModelShareRepository, ResultRepository } from './repositories.ts';

export { BUCKETS, BUCKET_NAMES, RETIRED_BUCKETS, SCHEMA_VERSION, type BucketId, type BucketName } from './buckets.ts';
export { StoreController, type BatchOp, type BucketStats, type KeyRange, type StoreDeps, type WriteOptions } from './controller.ts';
export { DB_DIR_NAME, STORE_DEFAULTS, resolveStoreOptions, type StoreInit, type StoreOptions } from './options.ts';
export {
  CacheRepository,
  JOB_STATES,
  JobRepository,
  JobTransitionError,
  ModelShareRepository,
  ResultRepository,
  TERMINAL_JOB_STATES,
  type CacheOptions,
  type JobQuery,
  type JobRecord,
  type JobState,
  type ModelShareInfo,
  type ModelShares,
  type StoredResult,
  type SweepResult,
} from './repositories.ts';

export interface StoreStats {
  location: string;
  schemaVersion: number;
  buckets: BucketStats[];
  totalEntries: number;
  approximateBytes: number;
}

export interface Store {
  controller: StoreController;
  jobs: JobRepository;
  results: ResultRepository;
  modelShares: ModelShareRepository;
  caches: { plan: CacheRepository; annealer: CacheRepository };
  /** Per-bucket entries and sizes, for the admin `store stats` command. */
  stats(): Promise<StoreStats>;
  close(): Promise<void>;
}

/** Opens the store of `opts.stateDir` (see StoreController.open for the errors). */
export async function openStore(opts: StoreInit, deps: StoreDeps): Promise<Store> {
  const o = resolveStoreOptions(opts);
  const controller = await StoreController.open(o, deps);
  const log = deps.logger.child({ module: 'store' });
  const cacheOpts = { ttlMs: o.cacheTtlMs, maxEntries: o.cacheMaxEntries };
  return {
    controller,
    jobs: new JobRepository(controller),
    results: new ResultRepository(controller),
    modelShares: new ModelShareRepository(controller),
    caches: {
      plan: new CacheRepository(controller, 'planCache', cacheOpts, log),
      annealer: new CacheRepository(controller, 'annealerCache', cacheOpts, log),
    },
    async stats() {
      const buckets = await controller.stats();
      return {
        location: controller.location,
        schemaVersion: controller.schemaVersion,
        buckets,
        totalEntries: buckets.reduce((s, b) => s + b.entries, 0),
        approximateBytes: buckets.reduce((s, b) => s + b.approximateBytes, 0),
      };
    },
    close: () => controller.close(),
  };
}

/**
 * The job service's view of the store: job records plus fetch-once results
 * whose output tensor specs travel in the result's metadata.
 */
export function jobStoreOf(store: Pick<Store, 'jobs' | 'results'>): JobStore {
  return {
    // The service never writes 'admitted', so what it reads back is one of its own states.
    getJob: async (id) => (await store.jobs.get(id)) as ServiceJobRecord | null,
    putJob: (rec) => store.jobs.put(rec),
    listJobs: async (q) => (await store.jobs.list(q)) as ServiceJobRecord[],
    putResult: (id, outputs, body, expiresAt) => store.results.put(id, body, expiresAt, { outputs }),
    takeResult: async (id) => {
      const r = await store.results.take(id);
      if (r === null) return null;
      const outputs = (r.meta as { outputs?: TensorSpec[] } | null)?.outputs ?? [];
      return { outputs, body: r.payload };
    },
  };
}
