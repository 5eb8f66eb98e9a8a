import t from 'tap';
import { JobService, type JobServiceOptions } from '../daemon/jobs/service.ts';
import { prepareJob, reconstructOutputs } from '../daemon/client/job-request.ts';
import { decodeMessage, encodeMessage, JobWireError, MSG } from '../daemon/jobs/wire.ts';
import { createMemoryTransports } from '../protocols/memory-transport.ts';
import { JsBackend } from '../protocols/backend-js.ts';
import type { Transport } from '../protocols/transport.ts';
import { silentLogger } from '../daemon/logger.ts';
import { MemoryJobStore } from './helpers/memory-job-store.ts';
import { uniform } from './helpers/three-parties.ts';
import { softmaxRows } from './helpers/float-reference.ts';

const OPTS: JobServiceOptions = { maxConcurrent: 2, maxQueued: 1, taskTimeoutMs: 20_000, admissionTimeoutMs: 400, roundTimeoutMs: 2_000, resultTtlMs: 60_000, maxTensorElements: 1 << 20 };

/** Three services whose sessions meet in memory, keyed by job id. */
function cluster(opts: Partial<JobServiceOptions> = {}) {
  const sessions = new Map<string, Transport[]>();
  const stores = [new MemoryJobStore(), new MemoryJobStore(), new MemoryJobStore()];
  const services = ([0, 1, 2] as const).map((party) => new JobService({ ...OPTS, ...opts }, {
    party, logger: silentLogger(), backend: new JsBackend(), store: stores[party],
    openSession: (id) => {
      if (!sessions.has(id)) sessions.set(id, createMemoryTransports({ timeoutMs: 2_000 }));
      return sessions.get(id)![party];
    },
  }));
  return { services, stores, close: () => Promise.all(services.map((s) => s.close())) };
}

function matmulSoftmaxJob(m = 4, k = 6, n = 5) {
  const x = uniform(m * k, -2, 2, 1), w = uniform(k * n, -2, 2, 2);
  const job = prepareJob('matmul-softmax', [{ name: 'x', shape: [m, k], values: x }, { name: 'w', shape: [k, n], values: w }]);
  const prod = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let q = 0; q < k; q++) prod[i * n + j] += x[i * k + q] * w[q * n + j];
  return { job, want: softmaxRows(prod, n) };
}

t.test('a job runs on all three parties and the client reconstructs the plaintext result', async (t) => {
  const c = cluster();
  const { job, want } = matmulSoftmaxJob();
  const stages: string[][] = [[], [], []];
  const outs = await Promise.all(c.services.map((s, i) => s.submit(job.header, job.bodies[i], (st) => stages[i].push(st))));
  const [y] = reconstructOutputs(outs.map((o, party) => ({ party, ...o })));
  t.same(y.shape, [4, 5]);
  t.ok(y.values.every((v, i) => Math.abs(v - want[i]) < 1e-2), 'matches softmax(x @ w) within 1e-2');
  t.same(stages[0], ['queued', 'admission', 'setup', 'compute']);
  for (const st of c.stores) {
    const rec = await st.getJob(job.header.job_id);
    t.equal(rec?.state, 'done');
    t.ok(rec!.stats!.bytesSent > 0, 'bytes recorded');
  }
  // the result stays until fetched, once
  const again = await c.services[1].fetch(job.header.job_id);
  t.same(again.body, outs[1].body);
  await t.rejects(c.services[1].fetch(job.header.job_id), { code: 'ERR_RESULT_GONE' });
  await t.rejects(c.services[1].fetch('0'.repeat(32)), { code: 'ERR_JOB_UNKNOWN' });
  await c.close();
});

t.test('mean-variance job', async (t) => {
  const c = cluster();
  const x = uniform(3 * 50, -5, 5, 9);
  const job = prepareJob('mean-variance', [{ name: 'x', shape: [3, 50], values: x }]);
  const outs = await Promise.all(c.services.map((s, i) => s.submit(job.header, job.bodies[i])));
  const [mean, variance] = reconstructOutputs(outs.map((o, party) => ({ party, ...o })));
  for (let r = 0; r < 3; r++) {
    const row = x.subarray(r * 50, (r + 1) * 50);
    const mu = row.reduce((a, b) => a + b, 0) / 50;
    const v = row.reduce((a, b) => a + (b - mu) ** 2, 0) / 50;
    t.ok(Math.abs(mean.values[r] - mu) < 1e-3 && Math.abs(variance.values[r] - v) < 1e-2, `row ${r}`);
  }
  await c.close();
});

t.test('a party that never gets the job: the others fail admission within the timeout', async (t) => {
  const c = cluster();
  const { job } = matmulSoftmaxJob();
  const t0 = Date.now();
  const res = await Promise.allSettled([0, 1].map((i) => c.services[i].submit(job.header, job.bodies[i])));
  t.ok(Date.now() - t0 < 3_000, 'bounded');
  for (const r of res) t.match(r, { status: 'rejected', reason: { code: 'ERR_ADMISSION', message: /party 2 did not confirm the job/ } });
  t.equal((await c.stores[0].getJob(job.header.job_id))?.state, 'failed');
  await c.close();
});

t.test('parties holding different requests for one job id refuse to run it', async (t) => {
  const c = cluster();
  const { job } = matmulSoftmaxJob();
  const other = { ...job.header, params: { tampered: 1 } };
  const res = await Promise.allSettled(c.services.map((s, i) => s.submit(i === 2 ? other : job.header, job.bodies[i])));
  for (const r of res) t.match(r, { status: 'rejected', reason: { code: 'ERR_ADMISSION' } });
  t.match(res[0], { reason: { message: /party 2 holds a different request/ } });
  await c.close();
});

t.test('cancelling on one party ends the job on every party with an error', async (t) => {
  const c = cluster();
  const { job } = matmulSoftmaxJob(16, 16, 64);
  // Party 1 cancels as soon as it starts computing (the in-memory session never yields to timers).
  const onStage = (i: number) => (stage: string) => {
    if (i === 1 && stage === 'compute') c.services[1].cancel(job.header.job_id);
  };
  const runs = c.services.map((s, i) => s.submit(job.header, job.bodies[i], onStage(i)).then(() => 'done', (e) => e.code));
  const codes = await Promise.all(runs);
  t.equal(codes[1], 'ERR_CANCELLED');
  t.ok(codes.every((c) => c !== 'done'), `all parties end with an error: ${codes}`);
  t.equal((await c.stores[1].getJob(job.header.job_id))?.state, 'cancelled');
  await c.close();
});

t.test('submissions are validated before anything is recorded', async (t) => {
  const c = cluster({ maxConcurrent: 1, maxQueued: 0 });
  const s = c.services[0];
  const { job } = matmulSoftmaxJob();
  await t.rejects(s.submit({ ...job.header, kind: 'nope' }, job.bodies[0]), { code: 'ERR_JOB_REQUEST', message: /unknown job kind "nope"; this party runs: matmul-softmax, mean-variance/ });
  await t.rejects(s.submit({ ...job.header, inputs: [{ name: 'x', shape: [4, 6] }, { name: 'w', shape: [5, 5] }] }, job.bodies[0]), { message: /inner dimensions differ/ });
  await t.rejects(s.submit(job.header, job.bodies[0].subarray(8)), { code: 'ERR_JOB_WIRE', message: /share body has \d+ bytes; the declared tensors need \d+/ });
  t.equal(c.stores[0].jobs.size, 0, 'nothing recorded');
  const first = s.submit(job.header, job.bodies[0]).catch((e) => e);
  await t.rejects(s.submit(job.header, job.bodies[0]), { code: 'ERR_JOB_EXISTS' });
  const second = prepareJob('mean-variance', [{ name: 'x', shape: [2, 2], values: [1, 2, 3, 4] }]);
  await t.rejects(s.submit(second.header, second.bodies[0]), { code: 'ERR_BUSY' });
  await first;
  await c.close();
});

t.test('shutdown ends running jobs with a recorded error', async (t) => {
  const c = cluster({ admissionTimeoutMs: 10_000 });
  const { job } = matmulSoftmaxJob();
  const run = c.services[0].submit(job.header, job.bodies[0]).catch((e) => e);
  await new Promise((r) => setTimeout(r, 20));
  await c.services[0].close();
  t.match(await run, { code: 'ERR_SHUTTING_DOWN' });
  t.equal((await c.stores[0].getJob(job.header.job_id))?.state, 'failed');
  await t.rejects(c.services[0].submit(job.header, job.bodies[0]), { code: 'ERR_SHUTTING_DOWN' });
  await c.close();
});

t.test('job wire messages round-trip and malformed ones get a JobWireError', async (t) => {
  const { job } = matmulSoftmaxJob();
  const m = decodeMessage(encodeMessage('submit', job.header, job.bodies[0]));
  t.equal(m.type, 'submit');
  t.same(m.header, job.header);
  t.same(m.body, job.bodies[0]);
  const good = encodeMessage('fetch', { job_id: job.header.job_id });
  const cases: [Uint8Array, RegExp][] = [
    [good.subarray(0, 3), /shorter than its 6-byte preamble/],
    [Uint8Array.of(2, ...good.subarray(1)), /version 2 is not supported/],
    [Uint8Array.of(1, 99, ...good.subarray(2)), /unknown job message type 99/],
    [good.subarray(0, good.length - 2), /header length \d+ does not fit/],
    [encodeMessage('fetch', { job_id: 'xyz' } as never), /fetch header: job_id: /],
  ];
  for (const [bytes, re] of cases) t.throws(() => decodeMessage(bytes), { code: 'ERR_JOB_WIRE', message: re }, String(re));
  // bounded fuzz: random frames never escape as anything but JobWireError
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  let other = 0;
  for (let i = 0; i < 3000; i++) {
    const base = i % 2 ? encodeMessage('submit', job.header) : good;
    const f = base.slice(0, Math.floor(rnd() * (base.length + 8)));
    for (let k = 0; k < 1 + rnd() * 4; k++) if (f.length) f[Math.floor(rnd() * f.length)] = Math.floor(rnd() * 256);
    if (i % 7 === 0 && f.length > 1) f[1] = 1 + Math.floor(rnd() * 7);
    try {
      decodeMessage(f);
    } catch (e) {
      if (!(e instanceof JobWireError)) other++;
    }
  }
  t.equal(other, 0, 'no other exception type');
  t.equal(MSG.submit, 1);
});

t.test('jobs a crashed run left unfinished are recorded as failed at start-up', async (t) => {
  const c = cluster();
  const now = Date.now();
  await c.stores[0].putJob({ id: 'a'.repeat(32), kind: 'mean-variance', state: 'running', createdAt: now, updatedAt: now, inputs: [] });
  await c.stores[0].putJob({ id: 'b'.repeat(32), kind: 'mean-variance', state: 'done', createdAt: now, updatedAt: now, inputs: [] });
  t.equal(await c.services[0].recoverInterrupted(), 1);
  t.match(await c.stores[0].getJob('a'.repeat(32)), { state: 'failed', error: { code: 'ERR_INTERRUPTED' } });
  t.equal((await c.stores[0].getJob('b'.repeat(32)))?.state, 'done');
  await c.close();
});
