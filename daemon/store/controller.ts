/**
 * The store controller: one LevelDB database in `<stateDir>/db`, binary keys
 * and values, every key prefixed with its bucket's byte. It owns opening
 * (lock and schema checks), closing, and the value formats the repositories
 * share; repositories never see bucket prefixes or LevelDB errors.
 */
import { chmodSync, mkdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { StoreError, StoreLockedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { BUCKET_NAMES, BUCKETS, SCHEMA_VERSION, bucketName, type BucketId, type BucketName } from './buckets.ts';
import { DB_DIR_NAME, type StoreOptions } from './options.ts';

export interface StoreDeps {
  logger: Logger;
  signal?: AbortSignal;
}

export interface WriteOptions {
  /** fsync before resolving: the write survives a power loss, not only a process crash. */
  sync?: boolean;
}

export type BatchOp =
  | { type: 'put'; bucket: BucketId; key: Uint8Array; value: Uint8Array }
  | { type: 'del'; bucket: BucketId; key: Uint8Array };

/** A key range inside one bucket (keys without the bucket byte). */
export interface KeyRange {
  prefix?: Uint8Array;
  gte?: Uint8Array;
  gt?: Uint8Array;
  lt?: Uint8Array;
  lte?: Uint8Array;
  reverse?: boolean;
  limit?: number;
}

export interface BucketStats {
  bucket: BucketName;
  id: number;
  entries: number;
  /** LevelDB's estimate of file-system bytes; recent writes still in the memtable are not counted. */
  approximateBytes: number;
}

/** The schema record in the meta bucket. */
export interface SchemaRecord {
  version: number;
  createdAt: number;
}

export const META_SCHEMA_KEY: Uint8Array = new TextEncoder().encode('schema');

type Db = Level<Uint8Array, Uint8Array>;

/**
 * Databases this process has open, by real path. LevelDB must never be asked
 * to open one of them a second time: its in-process lock check opens and
 * closes the LOCK file, and closing any descriptor of a file drops every
 * fcntl lock the process holds on it — the running instance would silently
 * lose its lock, and another process could then open the same database.
 */
const openInThisProcess = new Set<string>();

/** classic-level has approximateSize; `level`'s portable typings leave it out. */
type SizedDb = Db & { approximateSize(start: Uint8Array, end: Uint8Array): Promise<number> };

export class StoreController {
  readonly location: string;
  readonly schemaVersion: number;
  private readonly db: Db;
  private readonly realLocation: string;
  private readonly log: Logger;
  private closing: Promise<void> | null = null;

  private constructor(db: Db, location: string, realLocation: string, schemaVersion: number, log: Logger) {
    this.db = db;
    this.location = location;
    this.realLocation = realLocation;
    this.schemaVersion = schemaVersion;
    this.log = log;
  }

  /**
   * Opens (creating if needed) the database of a state directory. Throws
   * StoreLockedError when another process or instance holds it, StoreError
   * for anything else (unreadable directory, corruption, newer schema).
   */
  static async open(opts: Pick<StoreOptions, 'stateDir'> & Partial<StoreOptions>, deps: StoreDeps): Promise<StoreController> {
    deps.signal?.throwIfAborted();
    const log = deps.logger.child({ module: 'store' });
    const location = join(opts.stateDir, DB_DIR_NAME);
    const real = prepareDirectory(location, log);
    if (openInThisProcess.has(real)) {
      throw new StoreLockedError(
        `the database ${location} is locked: another qmpcd (or another process) holds it — this process already has it open. ` +
          'Close the other store first, or give this one its own storage.state_dir',
      );
    }
    const db: Db = new Level<Uint8Array, Uint8Array>(location, {
      keyEncoding: 'view',
      valueEncoding: 'view',
      createIfMissing: true,
      ...(opts.cacheSizeBytes !== undefined && { cacheSize: opts.cacheSizeBytes }),
      ...(opts.writeBufferSizeBytes !== undefined && { writeBufferSize: opts.writeBufferSizeBytes }),
    });
    openInThisProcess.add(real);
    try {
      await db.open();
    } catch (e) {
      openInThisProcess.delete(real);
      throw openError(location, e);
    }
    try {
      const version = await checkSchema(db, location);
      deps.signal?.throwIfAborted();
      log.info({ location, schemaVersion: version }, 'store opened');
      return new StoreController(db, location, real, version, log);
    } catch (e) {
      await db.close().catch(() => {});
      openInThisProcess.delete(real);
      throw codeOf(e)?.startsWith('LEVEL_') ? new StoreError(`cannot read the schema record of ${location}: ${messageOf(e)}`, e) : e;
    }
  }

  get isOpen(): boolean {
    return this.closing === null && this.db.status === 'open';
  }

  async get(bucket: BucketId, key: Uint8Array): Promise<Uint8Array | null> {
    this.assertOpen();
    try {
      return (await this.db.get(prefixed(bucket, key))) ?? null;
    } catch (e) {
      throw opError('read', bucket, key, e);
    }
  }

  async getMany(bucket: BucketId, keys: Uint8Array[]): Promise<(Uint8Array | null)[]> {
    this.assertOpen();
    if (keys.length === 0) return [];
    try {
      const values = await this.db.getMany(keys.map((k) => prefixed(bucket, k)));
      return values.map((v) => v ?? null);
    } catch (e) {
      throw opError('read', bucket, undefined, e);
    }
  }

  async put(bucket: BucketId, key: Uint8Array, value: Uint8Array, opts: WriteOptions = {}): Promise<void> {
    this.assertOpen();
    try {
      await this.db.put(prefixed(bucket, key), value, { sync: opts.sync === true });
    } catch (e) {
      throw opError('write', bucket, key, e);
    }
  }

  async del(bucket: BucketId, key: Uint8Array, opts: WriteOptions = {}): Promise<void> {
    this.assertOpen();
    try {
      await this.db.del(prefixed(bucket, key), { sync: opts.sync === true });
    } catch (e) {
      throw opError('delete', bucket, key, e);
    }
  }

  /** Applies all operations atomically: after a crash either all of them are there or none. */
  async batch(ops: BatchOp[], opts: WriteOptions = {}): Promise<void> {
    this.assertOpen();
    if (ops.length === 0) return;
    try {
      await this.db.batch(
        ops.map((op) =>
          op.type === 'put'
            ? { type: 'put' as const, key: prefixed(op.bucket, op.key), value: op.value }
            : { type: 'del' as const, key: prefixed(op.bucket, op.key) },
        ),
        { sync: opts.sync === true },
      );
    } catch (e) {
      const names = [...new Set(ops.map((o) => bucketLabel(o.bucket)))].join(', ');
      throw new StoreError(`could not write a batch of ${ops.length} operations (buckets ${names}) to ${this.location}: ${messageOf(e)}`, e);
    }
  }

  /** Entries of a bucket in key order (keys without the bucket byte). */
  async *entries(bucket: BucketId, range: KeyRange = {}): AsyncGenerator<[Uint8Array, Uint8Array]> {
    this.assertOpen();
    const it = this.db.iterator(levelRange(bucket, range));
    try {
      for await (const [k, v] of it) yield [k.subarray(1), v];
    } catch (e) {
      throw new StoreError(`could not iterate bucket ${bucketLabel(bucket)} of ${this.location}: ${messageOf(e)}`, e);
    } finally {
      await it.close().catch(() => {});
    }
  }

  /** Keys of a bucket in key order (without the bucket byte); values are not read. */
  async *keys(bucket: BucketId, range: KeyRange = {}): AsyncGenerator<Uint8Array> {
    this.assertOpen();
    const it = this.db.keys(levelRange(bucket, range));
    try {
      for await (const k of it) yield k.subarray(1);
    } catch (e) {
      throw new StoreError(`could not iterate bucket ${bucketLabel(bucket)} of ${this.location}: ${messageOf(e)}`, e);
    } finally {
      await it.close().catch(() => {});
    }
  }

  /** Number of keys in a bucket (a scan: meant for operators, not hot paths). */
  async count(bucket: BucketId, range: KeyRange = {}): Promise<number> {
    this.assertOpen();
    const it = this.db.keys(levelRange(bucket, range));
    let n = 0;
    try {
      for (;;) {
        const chunk = await it.nextv(1000);
        if (chunk.length === 0) return n;
        n += chunk.length;
      }
    } catch (e) {
      throw new StoreError(`could not count bucket ${bucketLabel(bucket)} of ${this.location}: ${messageOf(e)}`, e);
    } finally {
      await it.close().catch(() => {});
    }
  }

  async approximateSize(bucket: BucketId): Promise<number> {
    this.assertOpen();
    const { gte, lt } = levelRange(bucket, {});
    try {
      return await (this.db as SizedDb).approximateSize(gte!, lt!);
    } catch (e) {
      throw new StoreError(`could not size bucket ${bucketLabel(bucket)} of ${this.location}: ${messageOf(e)}`, e);
    }
  }

  /** Entries and approximate bytes of every bucket, for the admin `store stats` command. */
  async stats(): Promise<BucketStats[]> {
    return Promise.all(
      BUCKET_NAMES.map(async (name) => {
        const id = BUCKETS[name];
        const [entries, approximateBytes] = await Promise.all([this.count(id), this.approximateSize(id)]);
        return { bucket: name, id, entries, approximateBytes };
      }),
    );
  }

  /** Waits for pending writes, then releases the lock. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.db.close().then(
      () => {
        openInThisProcess.delete(this.realLocation);
        this.log.info({ location: this.location }, 'store closed');
      },
      (e) => {
        throw new StoreError(`could not close the store at ${this.location}: ${messageOf(e)}`, e);
      },
    );
    return this.closing;
  }

  private assertOpen(): void {
    if (!this.isOpen) throw new StoreError(`the store at ${this.location} is closed`);
  }
}

/**
 * The database directory is created 0700: LevelDB creates its files with the
 * process umask, and they hold key shares, so the directory is what keeps
 * other users out.
 */
function prepareDirectory(location: string, log: Logger): string {
  let real: string;
  try {
    mkdirSync(location, { recursive: true, mode: 0o700 });
    real = realpathSync(location);
  } catch (e) {
    throw new StoreError(`cannot create the database directory ${location}: ${messageOf(e)}`, e);
  }
  try {
    if ((statSync(location).mode & 0o077) !== 0) chmodSync(location, 0o700);
  } catch (e) {
    log.warn({ location, error: messageOf(e) }, 'could not restrict the database directory to mode 0700');
  }
  return real;
}

async function checkSchema(db: Db, location: string): Promise<number> {
  const key = prefixed(BUCKETS.meta, META_SCHEMA_KEY);
  const raw = await db.get(key);
  if (raw === undefined) {
    const rec: SchemaRecord = { version: SCHEMA_VERSION, createdAt: Date.now() };
    await db.put(key, encodeJson(rec), { sync: true });
    return SCHEMA_VERSION;
  }
  const rec = decodeJson(raw, { bucket: 'meta', key: 'schema' });
  const version = (rec as Partial<SchemaRecord> | null)?.version;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw new StoreError(`the schema record of ${location} (bucket meta, key "schema") has no valid version: ${JSON.stringify(rec)}`);
  }
  if (version > SCHEMA_VERSION) {
    throw new StoreError(
      `the database at ${location} has schema version ${version}, written by a newer qmpcd; this qmpcd understands schema version ${SCHEMA_VERSION} at most. ` +
        'Run the newer qmpcd, or point storage.state_dir at another directory',
    );
  }
  if (version < SCHEMA_VERSION) {
    // Version 1 is the first layout; a migration goes here when there is a version 2.
    throw new StoreError(`the database at ${location} has schema version ${version} and this qmpcd has no migration from it to ${SCHEMA_VERSION}`);
  }
  return version;
}

function openError(location: string, e: unknown): StoreError | StoreLockedError {
  const code = codeOf(e);
  const cause = (e as { cause?: unknown } | null)?.cause;
  if (code === 'LEVEL_LOCKED' || codeOf(cause) === 'LEVEL_LOCKED') {
    const holder = lockHolder(join(location, 'LOCK'));
    return new StoreLockedError(
      `the database ${location} is locked: another qmpcd (or another process) holds it${holder ? ` — ${holder}` : ''}. ` +
        'Stop that process, or give this daemon its own storage.state_dir',
      e,
    );
  }
  const corrupt = code === 'LEVEL_CORRUPTION' || codeOf(cause) === 'LEVEL_CORRUPTION';
  return new StoreError(
    `cannot open the database ${location}${corrupt ? ' (it is corrupt)' : ''}: ${messageOf(cause ?? e)}`,
    e,
  );
}

/** Best effort: which process holds LevelDB's fcntl lock, from /proc/locks. */
function lockHolder(lockFile: string): string | null {
  try {
    const ino = statSync(lockFile).ino;
    for (const line of readFileSync('/proc/locks', 'utf8').split('\n')) {
      const f = line.trim().split(/\s+/);
      // "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
      const pid = Number(f[4]);
      const inode = f[5]?.split(':')[2];
      if (inode === undefined || Number(inode) !== ino || !Number.isInteger(pid)) continue;
      if (pid === process.pid) return 'this process already has it open';
      let comm = '';
      try {
        comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      } catch {
        // The process may be gone or hidden from us; the pid alone still helps.
      }
      return `held by pid ${pid}${comm ? ` (${comm})` : ''}`;
    }
  } catch {
    // Not Linux, or no /proc: the generic message stands.
  }
  return null;
}

function prefixed(bucket: BucketId, key: Uint8Array): Uint8Array {
  const out = new Uint8Array(key.length + 1);
  out[0] = bucket;
  out.set(key, 1);
  return out;
}

/** The smallest key greater than every key starting with `p` (null: none, p is all 0xff). */
function prefixEnd(p: Uint8Array): Uint8Array | null {
  const out = Uint8Array.from(p);
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i] < 0xff) {
      out[i]++;
      return out.subarray(0, i + 1);
    }
  }
  return null;
}

function levelRange(bucket: BucketId, r: KeyRange) {
  const bucketEnd = Uint8Array.of(bucket + 1);
  const opts: { gte?: Uint8Array; gt?: Uint8Array; lt?: Uint8Array; lte?: Uint8Array; reverse: boolean; limit: number } = {
    reverse: r.reverse === true,
    limit: r.limit ?? -1,
  };
  if (r.gt) opts.gt = prefixed(bucket, r.gt);
  else opts.gte = prefixed(bucket, r.gte ?? r.prefix ?? new Uint8Array(0));
  if (r.lte) opts.lte = prefixed(bucket, r.lte);
  else if (r.lt) opts.lt = prefixed(bucket, r.lt);
  else if (r.prefix) {
    const end = prefixEnd(r.prefix);
    opts.lt = end ? prefixed(bucket, end) : bucketEnd;
  } else opts.lt = bucketEnd;
  return opts;
}

function bucketLabel(id: number): string {
  return bucketName(id) ?? `#${id}`;
}

/** A key as people read it: text when it is printable, hex otherwise. */
export function keyLabel(key: Uint8Array): string {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(key);
  return /^[\x20-\x7e]*$/.test(text) ? JSON.stringify(text) : `0x${Buffer.from(key.buffer, key.byteOffset, key.length).toString('hex')}`;
}

function opError(op: string, bucket: BucketId, key: Uint8Array | undefined, e: unknown): StoreError {
  return new StoreError(`could not ${op} bucket ${bucketLabel(bucket)}${key ? `, key ${keyLabel(key)}` : ''}: ${messageOf(e)}`, e);
}

function codeOf(e: unknown): string | undefined {
  return e && typeof e === 'object' && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---------------------------------------------------------------------------
// Value formats. The first byte of every record says how the rest is encoded,
// so a later format can be introduced without rewriting old values.

/** Where a value came from, for error messages. */
export interface ValueWhere {
  bucket: BucketName;
  key: string;
}

const FORMAT_JSON = 0x01;
const FORMAT_FRAMED = 0x02;
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** A JSON record: [0x01][UTF-8 JSON]. */
export function encodeJson(value: unknown): Uint8Array {
  const body = utf8.encode(JSON.stringify(value));
  const out = new Uint8Array(body.length + 1);
  out[0] = FORMAT_JSON;
  out.set(body, 1);
  return out;
}

export function decodeJson(raw: Uint8Array, where: ValueWhere): unknown {
  if (raw.length === 0 || raw[0] !== FORMAT_JSON) throw corrupt(where, `expected a JSON record (format byte 0x01), found ${formatByte(raw)}`);
  try {
    return JSON.parse(utf8Strict.decode(raw.subarray(1)));
  } catch (e) {
    throw corrupt(where, `the JSON record does not parse: ${messageOf(e)}`, e);
  }
}

/**
 * A JSON header followed by raw bytes: [0x02][u32 BE header length][header
 * JSON][payload]. Share payloads stay raw (no base64) and can be returned as
 * a view without copying.
 */
export function encodeFramed(header: unknown, payload: Uint8Array): Uint8Array {
  const h = utf8.encode(JSON.stringify(header));
  const out = new Uint8Array(5 + h.length + payload.length);
  out[0] = FORMAT_FRAMED;
  new DataView(out.buffer).setUint32(1, h.length);
  out.set(h, 5);
  out.set(payload, 5 + h.length);
  return out;
}

export function decodeFramed(raw: Uint8Array, where: ValueWhere): { header: unknown; payload: Uint8Array } {
  if (raw.length < 5 || raw[0] !== FORMAT_FRAMED) throw corrupt(where, `expected a framed record (format byte 0x02, at least 5 bytes), found ${formatByte(raw)} in ${raw.length} bytes`);
  const len = new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getUint32(1);
  if (5 + len > raw.length) throw corrupt(where, `the header claims ${len} bytes but only ${raw.length - 5} follow`);
  let header: unknown;
  try {
    header = JSON.parse(utf8Strict.decode(raw.subarray(5, 5 + len)));
  } catch (e) {
    throw corrupt(where, `the record header does not parse: ${messageOf(e)}`, e);
  }
  return { header, payload: raw.subarray(5 + len) };
}

/** A stored value that does not decode: names the bucket and key so an operator can find it. */
export function corrupt(where: ValueWhere, what: string, cause?: unknown): StoreError {
  return new StoreError(`corrupt value in bucket ${where.bucket}, key ${JSON.stringify(where.key)}: ${what}`, cause);
}

function formatByte(raw: Uint8Array): string {
  return raw.length === 0 ? 'an empty value' : `format byte 0x${raw[0].toString(16).padStart(2, '0')}`;
}
