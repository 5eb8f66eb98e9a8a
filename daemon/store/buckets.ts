/**
 * Bucket ids: the first byte of every key in the database. A number, once
 * used, means that bucket forever — data written by an older qmpcd is read by
 * a newer one through these numbers, so a bucket that is dropped moves to
 * RETIRED_BUCKETS and its number is never handed out again.
 */

export const BUCKETS = {
  /** Store bookkeeping: the schema record. */
  meta: 0,
  /** Job records by job id. */
  jobs: 1,
  /** Output share pairs waiting for the client, by job id. */
  jobResults: 2,
  /** Model-share descriptions (metadata and blob list), by model id. */
  modelShares: 3,
  /** Planner caches, by namespaced key. */
  planCache: 4,
  annealerCache: 5,
  /** Index: (createdAt, job id) → nothing; lists jobs in creation order without reading every record. */
  jobsByCreation: 6,
  /** Index: (expiresAt, job id) → nothing; sweeps expired results without reading their payloads. */
  resultExpiry: 7,
  /** Model-share tensors as raw bytes, by (model id, blob name); apart from the descriptions so listing models reads no weights. */
  modelShareBlobs: 8,
} as const;

export type BucketName = keyof typeof BUCKETS;
export type BucketId = (typeof BUCKETS)[BucketName];

/** Numbers of buckets that no longer exist; listed so nobody reuses them. */
export const RETIRED_BUCKETS: readonly number[] = Object.freeze([]);

export const BUCKET_NAMES: readonly BucketName[] = Object.freeze(Object.keys(BUCKETS) as BucketName[]);

const NAME_BY_ID = new Map<number, BucketName>(BUCKET_NAMES.map((n) => [BUCKETS[n], n]));

export function bucketName(id: number): BucketName | undefined {
  return NAME_BY_ID.get(id);
}

/**
 * Version of the key/value layout above. Raise it when an existing bucket's
 * encoding changes (adding a bucket does not need it); a daemon refuses a
 * database written by a newer layout instead of misreading it.
 */
export const SCHEMA_VERSION = 1;
