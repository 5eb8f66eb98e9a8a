/**
 * Options of the store (LevelDB in `<storage.state_dir>/db`). The YAML loader
 * and the CLI take their defaults from here; the cache settings carry the
 * deployment guide's `caching.optimization_cache.*` names.
 */

export interface StoreOptions {
  /** Durable state directory (`storage.state_dir`); the database lives in its `db/` subdirectory. */
  stateDir: string;
  /** LevelDB's in-memory LRU of uncompressed blocks. Share blobs are read rarely and in full, so the default stays small. */
  cacheSizeBytes: number;
  /** LevelDB's memtable size; larger speeds up bulk model-share imports at the cost of a longer recovery after a crash. */
  writeBufferSizeBytes: number;
  /** Lifetime of a planner/annealer cache entry unless its writer says otherwise (`caching.optimization_cache.ttl_hours`). */
  cacheTtlMs: number;
  /** Entries each planner cache keeps before the soonest-expiring ones are evicted (`caching.optimization_cache.max_entries`). */
  cacheMaxEntries: number;
}

export const STORE_DEFAULTS: Readonly<Omit<StoreOptions, 'stateDir'>> = Object.freeze({
  cacheSizeBytes: 8 * 1024 * 1024,
  writeBufferSizeBytes: 4 * 1024 * 1024,
  cacheTtlMs: 24 * 3600_000,
  cacheMaxEntries: 1000,
});

/** What `openStore` accepts: the state directory, anything else defaults. */
export type StoreInit = Partial<StoreOptions> & Pick<StoreOptions, 'stateDir'>;

export function resolveStoreOptions(init: StoreInit): StoreOptions {
  return { ...STORE_DEFAULTS, ...withoutUndefined(init), stateDir: init.stateDir };
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Subdirectory of the state directory that holds the LevelDB files. */
export const DB_DIR_NAME = 'db';
