import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { StoreError, StoreLockedError } from '../daemon/errors.ts';
import { silentLogger } from '../daemon/logger.ts';
import {
  BUCKETS,
  JobTransitionError,
  jobStoreOf,
  openStore,
  SCHEMA_VERSION,
  type JobRecord,
  type Store,
  type StoreInit,
} from '../daemon/store/index.ts';
import { encodeJson, META_SCHEMA_KEY } from '../daemon/store/controller.ts';
import { rejection } from './helpers/async.ts';

const STORE_URL = pathToFileURL(join(import.meta.dirname, '..', 'daemon', 'store', 'index.ts')).href;
const LOGGER_URL = pathToFileURL(join(import.meta.dirname, '..', 'daemon', 'logger.ts')).href;
const utf8 = new TextEncoder();

function tempStateDir(t: Tap): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmpc-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

type Tap = { teardown(fn: () => unknown): void };

async function open(t: Tap, init: StoreInit): Promise<Store> {
  const store = await openStore(init, { logger: silentLogger() });
  t.teardown(() => store.close());
  return store;
}

function job(id: string, createdAt: number, over: Partial<JobRecord> = {}): JobRecord {
  return { id, kind: 'matmul-softmax', state: 'received', createdAt, updatedAt: createdAt, inputs: [{ name: 'x', shape: [4, 6] }], params: { frac_bits: 16 }, ...over };
}

/** Runs an inline ES-module script in a child Node process; resolves on exit, with a deadline. */
function runChild(script: string, opts: { onLine?: (line: string, kill: () => void) => void; timeoutMs?: number } = {}) {
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '--no-warnings', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let buf = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child did not finish within ${opts.timeoutMs ?? 15_000} ms; stdout=${stdout} stderr=${stderr}`));
    }, opts.timeoutMs ?? 15_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        opts.onLine?.(line, () => child.kill('SIGKILL'));
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A child script that tries to open the store and prints what happened as JSON. */
function lockProbe(stateDir: string): string {
  return `
    import { openStore } from ${JSON.stringify(STORE_URL)};
    import { silentLogger } from ${JSON.stringify(LOGGER_URL)};
    try {
      const s = await openStore({ stateDir: ${JSON.stringify(stateDir)} }, { logger: silentLogger() });
      console.log(JSON.stringify({ opened: true }));
      await s.close();
    } catch (e) {
      console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message }));
    }`;
}

t.test('bucket numbers are fixed forever and unique', async (t) => {
  t.match(BUCKETS, { meta: 0, jobs: 1, jobResults: 2, modelShares: 3, planCache: 4, annealerCache: 5, jobsByCreation: 6, resultExpiry: 7, modelShareBlobs: 8 });
  const ids = Object.values(BUCKETS);
  t.equal(new Set(ids).size, ids.length, 'no two buckets share a prefix byte');
  t.ok(ids.every((i) => Number.isInteger(i) && i >= 0 && i < 255));
});

t.test('job records: round trip, null when missing, durable transitions, lifecycle enforced', async (t) => {
  const stateDir = tempStateDir(t);
  let store = await openStore({ stateDir }, { logger: silentLogger() });
  t.equal(await store.jobs.get('nope'), null, 'unknown job is null');

  const rec = job('job-1', 1_700_000_000_000, { stats: { durationMs: 5 } });
  await store.jobs.put(rec);
  t.same(await store.jobs.get('job-1'), rec, 'every field comes back');

  const admitted = await store.jobs.transition('job-1', 'admitted', {}, 1_700_000_000_500);
  t.equal(admitted?.state, 'admitted');
  t.equal(admitted?.updatedAt, 1_700_000_000_500);
  t.equal(admitted?.createdAt, rec.createdAt, 'createdAt is kept');
  await store.jobs.transition('job-1', 'running');
  const failed = await store.jobs.transition('job-1', 'failed', { error: { code: 'ERR_JOB_TIMEOUT', message: 'too slow' } });
  t.same(failed?.error, { code: 'ERR_JOB_TIMEOUT', message: 'too slow' });
  t.equal(await store.jobs.transition('ghost', 'running'), null, 'transition of an unknown job is null');

  const err = await rejection(store.jobs.transition('job-1', 'running'));
  t.ok(err instanceof JobTransitionError, 'a terminal job cannot be revived');
  t.equal((err as JobTransitionError).code, 'ERR_JOB_TRANSITION');
  t.match((err as Error).message, /job-1 cannot go from failed to running/);

  await store.close();
  store = await open(t, { stateDir });
  const back = await store.jobs.get('job-1');
  t.equal(back?.state, 'failed', 'the last transition survived a reopen');
  t.same(back?.error, { code: 'ERR_JOB_TIMEOUT', message: 'too slow' });
  t.same(back?.params, { frac_bits: 16 });

  t.equal(await store.jobs.delete('job-1'), true);
  t.equal(await store.jobs.get('job-1'), null);
  t.equal(await store.jobs.delete('job-1'), false, 'deleting twice reports nothing was there');
  t.equal(await store.controller.count(BUCKETS.jobsByCreation), 0, 'the creation index entry went with the record');

  const bad = await rejection(store.jobs.put(job('', 1)));
  t.ok(bad instanceof StoreError, 'an empty id is refused');
  const badTime = await rejection(store.jobs.put(job('j', 1.5)));
  t.match((badTime as Error).message, /createdAt must be a non-negative integer/);
});

t.test('job list: state filter, creation order, limit', async (t) => {
  const store = await open(t, { stateDir: tempStateDir(t) });
  const states = ['received', 'running', 'done', 'failed', 'done', 'running', 'done'] as const;
  // Inserted out of creation order, with ids whose lexical order differs from creation order.
  const order = [3, 0, 6, 1, 5, 2, 4];
  for (const i of order) await store.jobs.put(job(`z${9 - i}`, 1000 + i * 10, { state: states[i] }));

  const all = await store.jobs.list();
  t.same(all.map((r) => r.createdAt), [1000, 1010, 1020, 1030, 1040, 1050, 1060], 'oldest first by default');
  const newest = await store.jobs.list({ order: 'desc', limit: 2 });
  t.same(newest.map((r) => r.id), ['z3', 'z4'], 'newest first, limited');
  const done = await store.jobs.list({ state: 'done' });
  t.same(done.map((r) => r.createdAt), [1020, 1040, 1060]);
  t.ok(done.every((r) => r.state === 'done'));
  const two = await store.jobs.list({ state: ['running', 'failed'], limit: 2 });
  t.same(two.map((r) => r.state), ['running', 'failed']);
  t.same(await store.jobs.list({ state: 'cancelled' }), []);
  t.same(await store.jobs.list({ limit: 0 }), []);

  // Rewriting a record with another createdAt moves it in the order instead of listing it twice.
  await store.jobs.put(job('z9', 2000, { state: 'done' }));
  const after = await store.jobs.list();
  t.equal(after.length, 7);
  t.equal(after.at(-1)?.id, 'z9');

  // More records than one read chunk (64), filtered, in order.
  const many = Array.from({ length: 150 }, (_, i) => job(`bulk-${i}`, 5000 + i, { state: i % 3 === 0 ? 'done' : 'received' }));
  for (const r of many) await store.jobs.put(r);
  const bulkDone = await store.jobs.list({ state: 'done', order: 'desc', limit: 40 });
  t.equal(bulkDone.length, 40);
  t.same(bulkDone.slice(0, 3).map((r) => r.id), ['bulk-147', 'bulk-144', 'bulk-141']);
});

t.test('results: round trip, fetch-once, expiry and sweep', async (t) => {
  const store = await open(t, { stateDir: tempStateDir(t) });
  const now = 1_700_000_000_000;
  const payload = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7) & 0xff);
  t.equal(await store.results.get('missing', now), null);
  t.equal(await store.results.take('missing', now), null);

  await store.results.put('j1', payload, now + 60_000, { outputs: [{ name: 'y', shape: [4, 5] }] }, now);
  const r = await store.results.get('j1', now);
  t.same(Buffer.from(r!.payload), Buffer.from(payload), 'payload bytes round trip');
  t.same(r!.meta, { outputs: [{ name: 'y', shape: [4, 5] }] });
  t.equal(r!.expiresAt, now + 60_000);
  t.equal(await store.results.get('j1', now + 60_000), null, 'at expiresAt the result is gone');

  const taken = await store.results.take('j1', now + 1);
  t.same(Buffer.from(taken!.payload), Buffer.from(payload));
  t.equal(await store.results.get('j1', now + 1), null, 'fetching deletes the result');
  t.equal(await store.results.take('j1', now + 1), null);

  await store.results.put('old', new Uint8Array([1]), now + 10, undefined, now);
  await store.results.put('new', new Uint8Array([2]), now + 1_000, undefined, now);
  await store.results.put('moved', new Uint8Array([3]), now + 10, undefined, now);
  await store.results.put('moved', new Uint8Array([4]), now + 5_000, undefined, now); // replaced with a later expiry
  t.equal(await store.results.take('old', now + 20), null, 'an expired result is not handed out');
  t.equal(await store.results.get('old', now), null, '…and take() deleted it');

  await store.results.put('old2', new Uint8Array([1]), now + 10, undefined, now);
  t.equal(await store.results.sweepExpired(now + 100), 1, 'only the expired result is swept');
  t.equal(await store.results.get('old2', now), null);
  t.ok(await store.results.get('new', now + 100));
  t.same(Buffer.from((await store.results.get('moved', now + 100))!.payload), Buffer.from([4]), 'a replaced result keeps its new expiry');
  t.equal(await store.controller.count(BUCKETS.resultExpiry), 2, 'stale and swept index entries are gone');
  t.equal(await store.results.sweepExpired(now + 10_000), 2);
  t.equal(await store.controller.count(BUCKETS.jobResults), 0);
  t.equal(await store.controller.count(BUCKETS.resultExpiry), 0);
  t.equal(await store.results.delete('new'), false);
});

t.test('model shares: blobs and metadata round trip, replace, list, delete', async (t) => {
  const stateDir = tempStateDir(t);
  let store = await openStore({ stateDir }, { logger: silentLogger() });
  t.equal(await store.modelShares.info('m'), null);
  t.equal(await store.modelShares.get('m'), null);
  t.equal(await store.modelShares.blob('m', 'w0'), null);

  const w0 = Uint8Array.from({ length: 10_000 }, (_, i) => i & 0xff);
  const w1 = new Uint8Array(0);
  const info = await store.modelShares.put('bert-tiny', { fracBits: 16, shapes: { w0: [100, 100] } }, new Map([['w0', w0], ['w1', w1]]), 42);
  t.same(info.blobs, [{ name: 'w0', bytes: 10_000 }, { name: 'w1', bytes: 0 }]);
  await store.modelShares.put('bert', { other: true }, { w0: new Uint8Array([9, 9]) });
  await store.close();

  store = await open(t, { stateDir });
  const got = await store.modelShares.get('bert-tiny');
  t.same(got?.info, { modelId: 'bert-tiny', meta: { fracBits: 16, shapes: { w0: [100, 100] } }, blobs: info.blobs, storedAt: 42 });
  t.same(Buffer.from(got!.blobs.get('w0')!), Buffer.from(w0), 'blob bytes survive a reopen');
  t.equal(got!.blobs.get('w1')!.length, 0);
  t.same(Buffer.from((await store.modelShares.blob('bert', 'w0'))!), Buffer.from([9, 9]), 'a model id that prefixes another does not see its blobs');
  t.same((await store.modelShares.list()).map((m) => m.modelId).sort(), ['bert', 'bert-tiny']);

  await store.modelShares.put('bert-tiny', { v: 2 }, { w2: new Uint8Array([1, 2, 3]) });
  t.equal(await store.modelShares.blob('bert-tiny', 'w0'), null, 'replacing a model drops its old blobs');
  t.same((await store.modelShares.get('bert-tiny'))!.info.blobs, [{ name: 'w2', bytes: 3 }]);

  t.equal(await store.modelShares.delete('bert-tiny'), true);
  t.equal(await store.modelShares.get('bert-tiny'), null);
  t.equal(await store.modelShares.delete('bert-tiny'), false);
  t.ok(await store.modelShares.get('bert'), 'the other model is untouched');
  t.equal(await store.controller.count(BUCKETS.modelShareBlobs), 1);
});

t.test('planner caches: TTL, namespaces, JSON, eviction beyond maxEntries', async (t) => {
  const store = await open(t, { stateDir: tempStateDir(t), cacheMaxEntries: 10, cacheTtlMs: 1_000 });
  const now = 1_000_000;
  const { plan, annealer } = store.caches;
  t.equal(await plan.get('qa', 'k', now), null);
  await plan.put('qa', 'k', new Uint8Array([1, 2, 3]), undefined, now);
  t.same(Buffer.from((await plan.get('qa', 'k', now + 999))!), Buffer.from([1, 2, 3]));
  t.equal(await plan.get('qa', 'k', now + 1_000), null, 'the default TTL applies');
  t.equal(await plan.get('q', 'ak', now), null, 'namespace and key do not run together');
  t.equal(await annealer.get('qa', 'k', now), null, 'the annealer cache is a separate bucket');

  await annealer.putJson('qa', 'schedule', { steps: 1000, decay: 0.95 }, 60_000, now);
  t.same(await annealer.getJson('qa', 'schedule', now + 30_000), { steps: 1000, decay: 0.95 });

  // maxEntries is 10: 'qa/k' plus nine more fill the cache without a sweep.
  for (let i = 0; i < 9; i++) await plan.put('ev', `k${i}`, new Uint8Array([i]), 10_000 + i, now);
  t.equal(await store.controller.count(BUCKETS.planCache), 10);
  // The eleventh entry overflows; 'qa/k' has expired by then, and dropping it is enough.
  await plan.put('ev', 'k9', new Uint8Array([9]), 10_000, now + 2_000);
  t.equal(await store.controller.count(BUCKETS.planCache), 10);
  t.equal(await plan.get('qa', 'k', now), null, 'the expired entry was swept');
  // Overflowing again with nothing expired evicts the soonest-expiring down to 90% of maxEntries.
  await plan.put('ev', 'k10', new Uint8Array([10]), 20_000, now + 2_000);
  t.equal(await store.controller.count(BUCKETS.planCache), 9);
  t.equal(await plan.get('ev', 'k0', now + 2_000), null, 'soonest-expiring entries are evicted');
  t.equal(await plan.get('ev', 'k1', now + 2_000), null);
  t.ok(await plan.get('ev', 'k2', now + 2_000), 'later-expiring entries stay');
  t.ok(await plan.get('ev', 'k10', now + 2_000), 'the newest entry stays');

  t.equal(await plan.clear('ev'), 9);
  t.equal(await store.controller.count(BUCKETS.planCache), 0);
  t.equal(await store.controller.count(BUCKETS.annealerCache), 1, 'clearing one cache leaves the other');
  const sweep = await annealer.sweep(now + 60_000);
  t.same(sweep, { expired: 1, evicted: 0 });
});

t.test('stats: entries per bucket for the admin command', async (t) => {
  const stateDir = tempStateDir(t);
  const store = await open(t, { stateDir });
  for (let i = 0; i < 3; i++) await store.jobs.put(job(`s${i}`, 100 + i));
  await store.results.put('s0', new Uint8Array(100), Date.now() + 60_000);
  await store.modelShares.put('m', null, { a: new Uint8Array(5), b: new Uint8Array(6) });
  await store.caches.plan.put('p', 'k', new Uint8Array(1));
  const s = await store.stats();
  const entries = Object.fromEntries(s.buckets.map((b) => [b.bucket, b.entries]));
  t.same(entries, { meta: 1, jobs: 3, jobResults: 1, modelShares: 1, planCache: 1, annealerCache: 0, jobsByCreation: 3, resultExpiry: 1, modelShareBlobs: 2 });
  t.equal(s.totalEntries, 13);
  t.equal(s.location, join(stateDir, 'db'));
  t.equal(s.schemaVersion, SCHEMA_VERSION);
  t.ok(s.buckets.every((b) => Number.isInteger(b.approximateBytes) && b.approximateBytes >= 0));
  t.same(s.buckets.map((b) => b.id), s.buckets.map((b) => BUCKETS[b.bucket]));
});

t.test('the database directory is private (0700)', async (t) => {
  const stateDir = tempStateDir(t);
  await open(t, { stateDir });
  t.equal(statSync(join(stateDir, 'db')).mode & 0o777, 0o700);
});

t.test('a database written by a newer schema is refused with a clear error', async (t) => {
  const stateDir = tempStateDir(t);
  const store = await openStore({ stateDir }, { logger: silentLogger() });
  await store.controller.put(BUCKETS.meta, META_SCHEMA_KEY, encodeJson({ version: SCHEMA_VERSION + 98, createdAt: 1 }), { sync: true });
  await store.close();
  const err = await rejection(openStore({ stateDir }, { logger: silentLogger() }));
  t.ok(err instanceof StoreError);
  t.equal((err as StoreError).code, 'ERR_STORE');
  t.match((err as Error).message, `schema version ${SCHEMA_VERSION + 98}`);
  t.match((err as Error).message, `understands schema version ${SCHEMA_VERSION} at most`);
  t.match((err as Error).message, join(stateDir, 'db'));
  // The refused open released the lock: rewriting the record makes the database usable again.
  const { Level } = await import('level');
  const db = new Level<Uint8Array, Uint8Array>(join(stateDir, 'db'), { keyEncoding: 'view', valueEncoding: 'view' });
  await db.put(Uint8Array.of(BUCKETS.meta, ...META_SCHEMA_KEY), encodeJson({ version: SCHEMA_VERSION, createdAt: 1 }));
  await db.close();
  await open(t, { stateDir });
});

t.test('a second open in the same process gets StoreLockedError naming the directory', async (t) => {
  const stateDir = tempStateDir(t);
  const first = await open(t, { stateDir });
  const err = await rejection(openStore({ stateDir }, { logger: silentLogger() }));
  t.ok(err instanceof StoreLockedError);
  t.equal((err as StoreLockedError).code, 'ERR_STORE_LOCKED');
  t.equal((err as StoreLockedError).exitCode, 75);
  t.match((err as Error).message, join(stateDir, 'db'));
  t.match((err as Error).message, /another qmpcd \(or another process\) holds it/);
  t.match((err as Error).message, /this process already has it open/);
  const viaOtherSpelling = await rejection(openStore({ stateDir: join(stateDir, '..', basename(stateDir)) }, { logger: silentLogger() }));
  t.ok(viaOtherSpelling instanceof StoreLockedError, 'another spelling of the same path is the same database');
  t.ok(first.controller.isOpen, 'the first instance is unaffected');
  await first.jobs.put(job('still-works', 1));
  t.ok(await first.jobs.get('still-works'));
  // The refused attempts must not have cost the first instance its OS-level lock.
  const r = await runChild(lockProbe(stateDir));
  t.equal(JSON.parse(r.stdout.trim()).code, 'ERR_STORE_LOCKED', `another process is still locked out ${r.stderr}`);
  await first.close();
  const again = await open(t, { stateDir });
  t.ok(await again.jobs.get('still-works'), 'after close the directory opens again in this process');
});

t.test('an open from another process gets StoreLockedError naming the directory and holder', async (t) => {
  const stateDir = tempStateDir(t);
  await open(t, { stateDir });
  const r = await runChild(lockProbe(stateDir));
  t.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim());
  t.equal(out.name, 'StoreLockedError');
  t.equal(out.code, 'ERR_STORE_LOCKED');
  t.match(out.message, join(stateDir, 'db'));
  t.match(out.message, /another qmpcd \(or another process\) holds it/);
  if (existsSync('/proc/locks')) t.match(out.message, `held by pid ${process.pid}`, 'names the holding process');
});

t.test('other open failures are StoreError, not a lock error', async (t) => {
  const dir = tempStateDir(t);
  const notADir = join(dir, 'file');
  writeFileSync(notADir, 'x');
  const err = await rejection(openStore({ stateDir: notADir }, { logger: silentLogger() }));
  t.ok(err instanceof StoreError);
  t.notOk(err instanceof StoreLockedError);
  t.match((err as Error).message, join(notADir, 'db'));

  const aborted = await rejection(openStore({ stateDir: dir }, { logger: silentLogger(), signal: AbortSignal.abort() }));
  t.equal((aborted as Error).name, 'AbortError', 'an aborted open does not start');
});

t.test('a closed store refuses operations with StoreError', async (t) => {
  const store = await openStore({ stateDir: tempStateDir(t) }, { logger: silentLogger() });
  await store.close();
  await store.close(); // idempotent
  t.notOk(store.controller.isOpen);
  const err = await rejection(store.jobs.get('x'));
  t.ok(err instanceof StoreError);
  t.match((err as Error).message, /is closed/);
});

t.test('writes survive a SIGKILL of the writing process', async (t) => {
  const stateDir = tempStateDir(t);
  const N = 120;
  const script = `
    import { openStore } from ${JSON.stringify(STORE_URL)};
    import { silentLogger } from ${JSON.stringify(LOGGER_URL)};
    const store = await openStore({ stateDir: ${JSON.stringify(stateDir)} }, { logger: silentLogger() });
    for (let i = 0; i < ${N}; i++) {
      await store.jobs.put({ id: 'crash-' + i, kind: 'k', state: 'received', createdAt: 1000 + i, updatedAt: 1000 + i });
      if (i % 2 === 0) await store.jobs.transition('crash-' + i, 'running', {}, 5000 + i);
    }
    await store.results.put('crash-0', new Uint8Array([7, 7, 7]), Date.now() + 3600000);
    console.log('written');
    setInterval(() => {}, 1000); // stay alive, database open, until killed
  `;
  let sawWritten = false;
  const r = await runChild(script, {
    onLine: (line, kill) => {
      if (line === 'written') {
        sawWritten = true;
        kill();
      }
    },
  });
  t.ok(sawWritten, r.stderr);
  t.equal(r.signal, 'SIGKILL', 'the writer was killed, not closed');

  const store = await open(t, { stateDir });
  const all = await store.jobs.list();
  t.equal(all.length, N, 'every record is there after the crash');
  t.ok(all.every((rec, i) => rec.id === `crash-${i}` && rec.state === (i % 2 === 0 ? 'running' : 'received')), 'with the last state written');
  t.same(Buffer.from((await store.results.get('crash-0'))!.payload), Buffer.from([7, 7, 7]));
});

t.test('a corrupt stored value is a StoreError naming the bucket and key', async (t) => {
  const store = await open(t, { stateDir: tempStateDir(t) });
  await store.jobs.put(job('good', 1));
  await store.jobs.put(job('bad', 2));
  await store.controller.put(BUCKETS.jobs, utf8.encode('bad'), utf8.encode('\x01{not json'));
  const err = await rejection(store.jobs.get('bad'));
  t.ok(err instanceof StoreError);
  t.match((err as Error).message, /corrupt value in bucket jobs, key "bad"/);
  t.match((err as Error).message, /does not parse/);
  const listErr = await rejection(store.jobs.list());
  t.match((listErr as Error).message, /bucket jobs, key "bad"/, 'listing names the bad record too');
  t.ok(await store.jobs.get('good'), 'other records still read');

  await store.controller.put(BUCKETS.jobs, utf8.encode('bad'), new Uint8Array([0x7f, 1, 2]));
  t.match((await rejection(store.jobs.get('bad')) as Error).message, /bucket jobs, key "bad": expected a JSON record \(format byte 0x01\), found format byte 0x7f/);
  await store.controller.put(BUCKETS.jobs, utf8.encode('bad'), encodeJson({ id: 'bad', state: 'exploded' }));
  t.match((await rejection(store.jobs.get('bad')) as Error).message, /bucket jobs, key "bad"/);
  // Rewriting a corrupt record repairs it.
  await store.jobs.put(job('bad', 2, { state: 'done' }));
  t.equal((await store.jobs.get('bad'))?.state, 'done');

  await store.results.put('r', new Uint8Array([1]), Date.now() + 60_000);
  await store.controller.put(BUCKETS.jobResults, utf8.encode('r'), new Uint8Array([2, 0, 0, 0, 99]));
  const rErr = await rejection(store.results.take('r'));
  t.match((rErr as Error).message, /corrupt value in bucket jobResults, key "r": the header claims 99 bytes/);

  await store.modelShares.put('m', null, { w: new Uint8Array(4) });
  await store.controller.put(BUCKETS.modelShares, utf8.encode('m'), encodeJson([1, 2]));
  t.match((await rejection(store.modelShares.get('m')) as Error).message, /bucket modelShares, key "m"/);
});

t.test('jobStoreOf gives the job service its JobStore on LevelDB', async (t) => {
  const store = await open(t, { stateDir: tempStateDir(t) });
  const js = jobStoreOf(store);
  const rec = { id: 'svc', kind: 'mean-variance', state: 'received' as const, createdAt: 10, updatedAt: 10, inputs: [{ name: 'x', shape: [2, 2] }] };
  await js.putJob(rec as never);
  t.same(await js.getJob('svc'), rec);
  t.same((await js.listJobs({ state: 'received' })).map((r) => r.id), ['svc']);
  const outputs = [{ name: 'y', shape: [2] }];
  await js.putResult('svc', outputs as never, new Uint8Array([5, 6]), Date.now() + 60_000);
  const got = await js.takeResult('svc');
  t.same(got?.outputs, outputs);
  t.same(Buffer.from(got!.body), Buffer.from([5, 6]));
  t.equal(await js.takeResult('svc'), null, 'a result is handed out once');
});
