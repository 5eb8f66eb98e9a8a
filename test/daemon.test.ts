/**
 * Integration tests with three real qmpcd daemons on loopback (child
 * processes from a fresh `cluster init`, scripts/local-cluster.ts): jobs end
 * to end through the client SDK and the CLI, the admin socket, the metrics
 * and health endpoints, refusal of a peer outside the committee, a party
 * killed mid-job, crash durability, the state-directory lock and a graceful
 * stop. Every wait is bounded; child processes are stopped in teardown and
 * SIGKILLed on exit if anything is left.
 */
import t from 'tap';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { createLibp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { multiaddr } from '@multiformats/multiaddr';
import { startLocalCluster, type LocalCluster } from '../scripts/local-cluster.ts';
import { adminRequest } from '../daemon/admin/client.ts';
import { JobClient, JobFailedError } from '../daemon/client/job-client.ts';
import { prepareJob, reconstructOutputs } from '../daemon/client/job-request.ts';
import { EXIT } from '../daemon/errors.ts';
import { VERSION } from '../daemon/version.ts';
import { uniform } from './helpers/three-parties.ts';
import {
  freeBasePort, freePort, httpGet, killStrays, matmulSoftmaxCase, maxAbsDiff, meanVariance, metricSum, runCli, samples, waitFor,
  type MatmulSoftmaxCase,
} from './helpers/daemon-cluster.ts';

const TOL = 1e-2;
const PARTIES = [0, 1, 2] as const;

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

// Last resort if the test process exits before a teardown ran: no daemon outlives it.
const clusters: LocalCluster[] = [];
process.once('exit', () => {
  for (const c of clusters) for (const p of c.procs) p?.kill('SIGKILL');
  killStrays();
});

async function newCluster(t: TapTest, sets: string[] = []): Promise<LocalCluster> {
  const basePort = await freeBasePort();
  const cluster = await startLocalCluster({ basePort, sets });
  clusters.push(cluster);
  t.teardown(async () => {
    killStrays();
    await cluster.close();
  });
  await cluster.waitConnected(20_000);
  return cluster;
}

interface JobRow { id: string; kind: string; state: string; created: string; ms: number | null; error: string | null }
interface JobRec { id: string; kind: string; state: string; createdAt: number; updatedAt: number; inputs: unknown; outputs?: { name: string; shape: number[] }[]; error?: { code: string; message: string }; stats?: { durationMs: number } }
interface Status { party: number; peerId: string; status: string; peersConnected: number[]; jobsActive: number }

function metricsPort(cluster: LocalCluster, i: number): number {
  const cfg = parseYaml(readFileSync(cluster.layout.configs[i], 'utf8')) as { metrics: { enabled: boolean; port: number } };
  if (!cfg.metrics.enabled) throw new Error(`party ${i} has metrics disabled in ${cluster.layout.configs[i]}`);
  return cfg.metrics.port;
}

function matmulJob(c: MatmulSoftmaxCase) {
  return prepareJob('matmul-softmax', [{ name: 'x', shape: [c.m, c.k], values: c.x }, { name: 'w', shape: [c.k, c.n], values: c.w }]);
}

/** Runs a matmul-softmax job through `client` and checks the reconstructed output against float64. */
async function runMatmulChecked(t: TapTest, client: JobClient, c: MatmulSoftmaxCase, what: string): Promise<string> {
  const job = matmulJob(c);
  const results = await client.run(job);
  const [y] = reconstructOutputs(results, job.header.frac_bits);
  t.same(y.shape, [c.m, c.n], `${what}: output shape`);
  t.ok(maxAbsDiff(y.values, c.want) < TOL, `${what}: softmax(x@w) within ${TOL} of float64 (max error ${maxAbsDiff(y.values, c.want).toExponential(2)})`);
  return job.header.job_id;
}

t.test('three daemons on loopback', { timeout: 90_000 }, async (t) => {
  const cluster = await newCluster(t);
  const { sockets, committee } = cluster.layout;
  const client = await JobClient.create(committee, { timeoutMs: 30_000 });
  t.teardown(() => client.close());
  const jobIds: string[] = [];
  let mainJobId = '';

  await t.test('1. jobs end to end: SDK and CLI results equal the plaintext computation', async (t) => {
    const c = matmulSoftmaxCase(4, 8, 5, 11);
    const stages = new Set<string>();
    const job = matmulJob(c);
    const results = await client.run(job, { onProgress: (p, s) => stages.add(`${p}:${s}`) });
    t.same(results.map((r) => r.party).sort(), [0, 1, 2], 'every party returned its output shares');
    const [y] = reconstructOutputs(results, job.header.frac_bits);
    t.equal(y.name, 'y');
    t.same(y.shape, [4, 5]);
    t.ok(maxAbsDiff(y.values, c.want) < TOL, `matmul-softmax within ${TOL} (max error ${maxAbsDiff(y.values, c.want).toExponential(2)})`);
    for (const p of PARTIES) t.ok(stages.has(`${p}:compute`), `party ${p} reported the compute stage`);
    mainJobId = job.header.job_id;
    jobIds.push(mainJobId);

    const x = uniform(3 * 16, -3, 3, 7);
    const mv = prepareJob('mean-variance', [{ name: 'x', shape: [3, 16], values: x }]);
    const out = reconstructOutputs(await client.run(mv), mv.header.frac_bits);
    const want = meanVariance(x, 16);
    t.same(out.map((o) => [o.name, o.shape]), [['mean', [3]], ['variance', [3]]]);
    t.ok(maxAbsDiff(out[0].values, want.mean) < TOL, `mean within ${TOL}`);
    t.ok(maxAbsDiff(out[1].values, want.variance) < TOL, `variance within ${TOL}`);
    jobIds.push(mv.header.job_id);

    const c2 = matmulSoftmaxCase(4, 8, 5, 23);
    const xFile = join(cluster.dir, 'x.json'), wFile = join(cluster.dir, 'w.json');
    writeFileSync(xFile, JSON.stringify({ shape: [4, 8], values: [...c2.x] }));
    writeFileSync(wFile, JSON.stringify({ shape: [8, 5], values: [...c2.w] }));
    const before = ((await cluster.admin(0, 'jobs')) as JobRow[]).length;
    const r = await runCli(['run', '--cluster', join(cluster.dir, 'cluster.yaml'), '--kind', 'matmul-softmax', '--input', `x=${xFile}`, '--input', `w=${wFile}`, '--json', '--timeout', '30'], 40_000);
    t.equal(r.code, 0, `qmpc run exits 0 (stderr: ${r.stderr.trim()})`);
    const printed = JSON.parse(r.stdout) as { name: string; shape: number[]; values: number[] }[];
    t.equal(printed.length, 1);
    t.equal(printed[0].name, 'y');
    t.same(printed[0].shape, [4, 5]);
    t.ok(maxAbsDiff(printed[0].values, c2.want) < TOL, `CLI result within ${TOL} of float64 (max error ${maxAbsDiff(printed[0].values, c2.want).toExponential(2)})`);
    const after = (await cluster.admin(0, 'jobs')) as JobRow[];
    t.equal(after.length, before + 1, 'the CLI job is recorded at party 0');
    jobIds.push(after.at(-1)!.id);
  });

  await t.test('2. admin socket: CLI and adminRequest', async (t) => {
    const sock = sockets[0];
    const cli = async (cmd: string, ...args: string[]) => {
      const r = await runCli(['admin', cmd, ...args, '--socket', sock, '--json'], 15_000);
      t.equal(r.code, 0, `qmpc admin ${cmd} exits 0 (stderr: ${r.stderr.trim()})`);
      return JSON.parse(r.stdout) as unknown;
    };

    const help = (await cli('help')) as { command: string; help: string }[];
    const names = help.map((h) => h.command);
    for (const c of ['help', 'version', 'status', 'peers', 'jobs', 'job', 'config', 'store-stats', 'network-stats']) t.ok(names.includes(c), `help lists ${c}`);
    t.ok(help.every((h) => typeof h.help === 'string' && h.help.length > 0), 'every command has a help line');

    const version = (await cli('version')) as { version: string; node: string; api: number };
    t.equal(version.version, VERSION);
    t.equal(version.node, process.versions.node, 'version reports the Node.js version');
    t.equal(typeof version.api, 'number');

    const status0 = (await cli('status')) as Status;
    t.equal(status0.party, 0);
    t.equal(status0.peerId, committee[0].peer_id);
    t.equal(status0.status, 'running');
    t.same(status0.peersConnected, [1, 2]);
    for (const i of [1, 2] as const) {
      const s = (await adminRequest(sockets[i], 'status', {}, { timeoutMs: 5_000 })) as Status;
      t.equal(s.party, i, `party ${i}'s socket answers as party ${i}`);
      t.same(s.peersConnected, PARTIES.filter((j) => j !== i), `party ${i} is connected to the other two`);
    }

    const peers = (await cli('peers')) as { party: number; peerId: string; self: boolean; connected: boolean }[];
    t.same(peers.map((p) => [p.party, p.peerId, p.self, p.connected]), committee.map((m) => [m.index, m.peer_id, m.index === 0, true]));

    const jobs = (await cli('jobs')) as JobRow[];
    const row = jobs.find((j) => j.id === mainJobId);
    t.ok(row, 'jobs lists the job of test 1');
    t.equal(row?.state, 'done');
    t.equal(row?.kind, 'matmul-softmax');
    t.equal(row?.error, null);
    t.same(jobs.filter((j) => jobIds.includes(j.id)).map((j) => j.state), jobIds.map(() => 'done'), 'all jobs of test 1 are done');

    const viaCli = (await cli('job', `id=${mainJobId}`)) as JobRec;
    const direct = (await adminRequest(sock, 'job', { id: mainJobId }, { timeoutMs: 5_000 })) as JobRec;
    t.same(viaCli, direct, 'CLI and adminRequest return the same record');
    t.equal(direct.id, mainJobId);
    t.equal(direct.state, 'done');
    t.same(direct.inputs, [{ name: 'x', shape: [4, 8] }, { name: 'w', shape: [8, 5] }]);
    t.same(direct.outputs, [{ name: 'y', shape: [4, 5] }]);
    t.equal(typeof direct.stats?.durationMs, 'number');
    t.equal(direct.error, undefined);

    const config = (await cli('config')) as { party: { index: number }; metrics: { port: number }; committee: { peer_id: string }[]; storage: { state_dir: string } };
    t.equal(config.party.index, 0);
    t.equal(config.metrics.port, metricsPort(cluster, 0));
    t.same(config.committee.map((m) => m.peer_id), committee.map((m) => m.peer_id));
    const text = JSON.stringify(config);
    const key = readFileSync(join(config.storage.state_dir, 'identity.key'));
    const seed = key.subarray(key.length - 64, key.length - 32);
    for (const [what, bytes] of [['key file', key], ['private key', key.subarray(key.length - 64)], ['seed', seed]] as const) {
      for (const enc of ['hex', 'base64', 'base64url'] as const) {
        t.notOk(text.includes(Buffer.from(bytes).toString(enc).replace(/=+$/, '')), `config holds no ${enc} of the ${what}`);
      }
    }

    const stats = (await cli('store-stats')) as { location: string; buckets: { bucket: string; entries: number }[]; totalEntries: number };
    t.equal(stats.location, join(config.storage.state_dir, 'db'));
    t.ok((stats.buckets.find((b) => b.bucket === 'jobs')?.entries ?? 0) >= jobIds.length, 'the jobs bucket holds the job records');
    t.ok(stats.totalEntries >= jobIds.length);

    const bad = await runCli(['admin', 'frobnicate', '--socket', sock, '--json'], 15_000);
    t.not(bad.code, 0, 'an unknown command exits non-zero');
    t.equal(bad.stdout, '', 'nothing on stdout');
    t.match(bad.stderr, /frobnicate/);
    t.match(bad.stderr, /ERR_ADMIN_UNKNOWN_COMMAND/);
    await t.rejects(adminRequest(sock, 'frobnicate', {}, { timeoutMs: 5_000 }), { code: 'ERR_ADMIN_UNKNOWN_COMMAND' });

    for (const i of PARTIES) {
      const st = statSync(sockets[i]);
      t.ok(st.isSocket(), `party ${i}'s admin socket is a socket`);
      t.equal((st.mode & 0o777).toString(8), '660', `party ${i}'s admin socket has mode 0660`);
    }
  });

  await t.test('3. /metrics, /health and /security/status over HTTP', async (t) => {
    for (const i of PARTIES) {
      const base = `http://127.0.0.1:${metricsPort(cluster, i)}`;
      const m = await httpGet(`${base}/metrics`);
      t.equal(m.status, 200, `party ${i}: /metrics 200`);
      t.match(m.contentType, /^text\/plain/, `party ${i}: Prometheus text content type`);
      t.ok(metricSum(m.body, 'quantum_tasks_scheduled_total') >= jobIds.length, `party ${i}: quantum_tasks_scheduled_total >= ${jobIds.length}`);
      t.ok(metricSum(m.body, 'quantum_tasks_completed_total') >= jobIds.length, `party ${i}: quantum_tasks_completed_total >= ${jobIds.length}`);
      t.same(samples(m.body, 'qmpc_peers_connected').map(([, v]) => v), [2], `party ${i}: qmpc_peers_connected 2`);
      t.match(m.body, /^libp2p_data_transfer_bytes_total\{/m, `party ${i}: libp2p's own metrics share the registry`);

      const h = await httpGet(`${base}/health`);
      t.equal(h.status, 200, `party ${i}: /health 200`);
      t.match(h.contentType, /^application\/json/);
      const health = JSON.parse(h.body) as { status: string; party: number; version: string };
      t.equal(health.status, 'healthy', `party ${i}: healthy`);
      t.equal(health.party, i);
      t.equal(health.version, VERSION);

      const s = await httpGet(`${base}/security/status`);
      t.equal(s.status, 200, `party ${i}: /security/status 200`);
      const sec = JSON.parse(s.body) as { committee: { size: number; party: number; members: { party: number; peerId: string; connected: boolean }[] }; channel: { encryption: string; cipher: string } };
      t.equal(sec.committee.size, 3);
      t.equal(sec.committee.party, i);
      t.same(sec.committee.members, committee.map((c) => ({ party: c.index, peerId: c.peer_id, connected: true })), `party ${i}: lists the committee, all connected`);
      t.equal(sec.channel.encryption, 'noise');
      t.equal(sec.channel.cipher, 'ChaChaPoly/libsodium', 'Noise runs on libsodium here');
    }
  });

  await t.test('4. a peer outside the committee cannot open /qmpc/mpc/1', async (t) => {
    const base = `http://127.0.0.1:${metricsPort(cluster, 0)}`;
    const refusedBefore = ((await cluster.admin(0, 'network-stats')) as { refused: number }).refused;
    const metricBefore = metricSum((await httpGet(`${base}/metrics`)).body, 'qmpc_peers_refused_total', { reason: 'not_in_committee' });
    const outsider = await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] });
    t.teardown(() => outsider.stop());
    const target = multiaddr(`${committee[0].addrs[0]}/p2p/${committee[0].peer_id}`);
    let outcome: string;
    try {
      const stream = await outsider.dialProtocol(target, '/qmpc/mpc/1', { signal: AbortSignal.timeout(10_000) });
      outcome = await waitFor('the refused stream to end', 5_000, () => (['reset', 'closed', 'aborted'].includes(stream.status) ? stream.status : null), 20);
      t.throws(() => stream.send(new Uint8Array([1, 2, 3])), 'nothing can be written to the refused stream');
    } catch (e) {
      outcome = `dial failed: ${(e as Error).message}`;
    }
    t.match(outcome, /^(reset|closed|aborted|dial failed)/, `the stream is refused (${outcome})`);

    const refused = await waitFor('party 0 to count the refusal', 5_000, async () => {
      const n = ((await cluster.admin(0, 'network-stats')) as { refused: number }).refused;
      return n > refusedBefore ? n : null;
    });
    t.equal(refused, refusedBefore + 1, 'network-stats counts one refusal');
    const metrics = (await httpGet(`${base}/metrics`)).body;
    t.equal(metricSum(metrics, 'qmpc_peers_refused_total', { reason: 'not_in_committee' }), metricBefore + 1, 'qmpc_peers_refused_total{reason="not_in_committee"} counted it');
    const sec = JSON.parse((await httpGet(`${base}/security/status`)).body) as { refusedPeers: { total: number; recent: { peerId: string; reason: string }[] } };
    t.equal(sec.refusedPeers.recent[0]?.peerId, outsider.peerId.toString(), '/security/status names the refused peer');
    t.equal(sec.refusedPeers.recent[0]?.reason, 'not_in_committee');
    await outsider.stop();

    t.same(((await cluster.admin(0, 'status')) as Status).peersConnected, [1, 2], 'the committee is still connected');
    jobIds.push(await runMatmulChecked(t, client, matmulSoftmaxCase(3, 6, 4, 31), 'a job after the refusal'));
  });

  await t.test('6. kill -9 loses no committed job record; a second daemon on the same state exits', async (t) => {
    const before = (await cluster.admin(0, 'jobs')) as JobRow[];
    const done = before.filter((j) => j.state === 'done');
    t.ok(jobIds.every((id) => done.some((j) => j.id === id)), 'party 0 holds every job so far as done');
    const records = new Map<string, JobRec>();
    for (const j of done) records.set(j.id, (await cluster.admin(0, 'job', { id: j.id })) as JobRec);

    t.equal(await cluster.stop(0, 'SIGKILL'), 'SIGKILL', 'party 0 was killed');
    await cluster.start(0);
    await cluster.waitConnected(20_000);
    const after = (await cluster.admin(0, 'jobs')) as JobRow[];
    t.same(after.map((j) => [j.id, j.state]), before.map((j) => [j.id, j.state]), 'the same jobs, ids and states after the restart');
    for (const [id, rec] of records) t.same(await cluster.admin(0, 'job', { id }), rec, `job ${id} reads back unchanged`);
    const r = await runCli(['admin', 'job', `id=${mainJobId}`, '--socket', sockets[0], '--json'], 15_000);
    t.equal(r.code, 0);
    t.equal((JSON.parse(r.stdout) as JobRec).state, 'done', 'qmpc admin job shows the job of test 1 as done');

    const otherSocket = join(cluster.dir, 'party-0', 'run', 'second.sock');
    const second = await runCli([
      'daemon', '--config', cluster.layout.configs[0],
      '--set', `network.listen=[/ip4/127.0.0.1/tcp/${await freePort()}]`, '--set', 'metrics.enabled=false', '--set', `admin.socket=${otherSocket}`,
    ], 20_000);
    t.equal(second.signal, null, 'the second daemon exited on its own');
    t.equal(second.code, EXIT.tempFail, `the second daemon exits ${EXIT.tempFail} (state in use)`);
    t.match(second.stderr, /locked|in use/i, 'stderr says the database is in use');
    t.match(second.stderr, join(cluster.dir, 'party-0', 'state', 'db'), 'stderr names the database');
    t.notOk(existsSync(otherSocket), 'the second daemon created no admin socket');
    t.equal(((await cluster.admin(0, 'status')) as Status).status, 'running', 'the first daemon still runs');
    jobIds.push(await runMatmulChecked(t, client, matmulSoftmaxCase(2, 4, 3, 41), 'a job after the restart'));
  });

  await t.test('7. SIGTERM stops a daemon gracefully', async (t) => {
    const log = cluster.logFile(2);
    const offset = statSync(log).size;
    const started = performance.now();
    const how = await cluster.stop(2, 'SIGTERM');
    const ms = performance.now() - started;
    t.equal(how, 0, 'exit code 0');
    t.ok(ms < 10_000, `exited within 10 s (${Math.round(ms)} ms)`);
    t.notOk(existsSync(sockets[2]), 'the admin socket file is removed');
    const tail = readFileSync(log, 'utf8').slice(offset);
    t.match(tail, /"msg":"stopping"/, 'the log says stopping');
    t.match(tail, /"msg":"stopped"/, 'the log says stopped');
    await waitFor('the others to see party 2 gone', 10_000, async () => {
      const s = await Promise.all([0, 1].map(async (i) => ((await cluster.admin(i, 'status')) as Status).peersConnected));
      return s[0].join() === '1' && s[1].join() === '0' ? true : null;
    });
    t.pass('parties 0 and 1 report party 2 disconnected');
  });
});

t.test('5. a party killed mid-job: clear errors everywhere, then recovery', { timeout: 60_000 }, async (t) => {
  const cluster = await newCluster(t, ['mpc.round_timeout=3', 'scheduler.admission_timeout=3', 'scheduler.task_timeout=30']);
  const client = await JobClient.create(cluster.layout.committee, { timeoutMs: 40_000 });
  t.teardown(() => client.close());

  // Cancellation by the client: every party stops, the job is recorded cancelled where the request reached it.
  {
    const victim = matmulJob(matmulSoftmaxCase(256, 256, 256, 50));
    let asked: Promise<number[]> | null = null;
    const err = await client.run(victim, {
      onProgress: (_p, stage) => {
        if (stage === 'compute' && !asked) asked = client.cancel(victim.header.job_id);
      },
    }).then(() => null, (e: unknown) => e);
    const stopped = await asked!;
    t.ok(err instanceof JobFailedError, `a cancelled job rejects (${String(err)})`);
    t.ok(stopped.length >= 1, `the cancel request stopped the job on parties ${stopped.join(', ')}`);
    // A party whose peers cancelled first may already have failed on the closed session when its own cancel arrives.
    const states: string[] = [];
    for (const i of PARTIES) {
      const rec = await waitFor(`party ${i} records the job's end`, 10_000, async () => {
        const r = (await cluster.admin(i, 'job', { id: victim.header.job_id })) as JobRec;
        return r.state === 'running' || r.state === 'received' ? null : r;
      });
      states.push(rec.state);
    }
    t.ok(states.every((st) => st === 'cancelled' || st === 'failed'), `every party ended the job (${states})`);
    t.ok(states.includes('cancelled'), 'at least one party records it as cancelled');
  }

  // ≈ 3 s of compute on 2 cores, so the kill lands in the middle of it.
  const big = matmulSoftmaxCase(256, 256, 256, 51);
  const job = matmulJob(big);
  let killedAt = 0;
  const run = client.run(job, {
    onProgress: (_p, stage) => {
      if (stage === 'compute' && !killedAt) {
        killedAt = performance.now();
        cluster.procs[2]?.kill('SIGKILL');
      }
    },
  });
  const err = await run.then(() => null, (e: unknown) => e);
  const ms = performance.now() - killedAt;
  t.ok(killedAt > 0, 'party 2 was killed once computing had started');
  t.ok(err instanceof JobFailedError, `the client's run rejects with a JobFailedError (${String(err)})`);
  const e = err as JobFailedError;
  t.equal(e.code, 'ERR_PARTY_LOST', `the client names the lost party (${e.message})`);
  t.equal(e.party, 2, 'party 2');
  t.ok(ms < 20_000, `within 20 s of the kill (${Math.round(ms)} ms)`);

  for (const i of [0, 1] as const) {
    const rec = await waitFor(`party ${i} to record the job as failed`, 15_000, async () => {
      const r = (await cluster.admin(i, 'job', { id: job.header.job_id })) as JobRec;
      return r.state === 'failed' ? r : null;
    });
    t.match(rec.error?.code, /^ERR_(SESSION_CLOSED|TIMEOUT|JOB_TIMEOUT)$/, `party ${i} records a lost-peer or timeout error (${rec.error?.code}: ${rec.error?.message})`);
    t.ok((rec.error?.message ?? '').length > 0, `party ${i}'s error has a message`);
    const m = (await httpGet(`http://127.0.0.1:${metricsPort(cluster, i)}/metrics`)).body;
    t.ok(metricSum(m, 'quantum_tasks_failed_total') >= 1, `party ${i} counts the failure in quantum_tasks_failed_total`);
  }

  await cluster.start(2);
  await cluster.waitConnected(20_000);
  const interrupted = (await cluster.admin(2, 'job', { id: job.header.job_id })) as JobRec;
  t.equal(interrupted.state, 'failed', 'the restarted party records the job its crash interrupted as failed');
  t.equal(interrupted.error?.code, 'ERR_INTERRUPTED');
  await runMatmulChecked(t, client, matmulSoftmaxCase(4, 8, 5, 61), 'the next job after party 2 restarted');
});
