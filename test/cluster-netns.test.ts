/**
 * Three qmpcd daemons on three "hosts" — network namespaces plugged into one
 * bridge (test/helpers/netns.ts) — with no peer addresses in their
 * configuration: they find each other by mDNS alone. A client on a fourth
 * host runs a job; then party 2's link goes down (a partition), a job fails
 * with a clear error within a bound and parties 0 and 1 record it as failed;
 * the link comes back, the parties reconnect, and the next job succeeds.
 *
 * Needs root and `ip netns`; skipped otherwise. Everything it creates (four
 * host namespaces and a switch namespace holding the bridge) is removed in
 * teardown, also when a step fails.
 */
import tap from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { clusterInit } from '../daemon/cluster-init.ts';
import { adminRequest } from '../daemon/admin/client.ts';
import { newJobId } from '../daemon/client/job-request.ts';
import { ENV_ALIASES } from '../daemon/config/load.ts';
import { createNetnsLab, netnsUnavailable, sweepStaleNetns, type NetnsHost, type NetnsLab } from './helpers/netns.ts';
import type { ClientReply, ClientRequest } from './helpers/netns-client.ts';
import { waitFor } from '../scripts/wait-for.ts';
import { DAEMON_NODE_OPTIONS } from '../daemon/node-options.ts';
import { maxAbsDiff, meanVariance } from './helpers/daemon-cluster.ts';
import { softmaxRows } from './helpers/float-reference.ts';

const CLI = new URL('../daemon/cli.ts', import.meta.url).pathname;
const CLIENT = new URL('./helpers/netns-client.ts', import.meta.url).pathname;
const PORT = 7400;
const PARTY_OCTETS = [10, 11, 12];
const CLIENT_OCTET = 100;
/** A daemon outliving the test (the test process killed hard) still ends after this long. */
const DAEMON_MAX_LIFE_S = 300;
/** Codes a job may fail with when a party is cut off. */
const PARTITION_CODES = ['ERR_ADMISSION', 'ERR_TIMEOUT', 'ERR_SESSION_CLOSED', 'ERR_UNAVAILABLE'];
/** The partition's failure must reach the client within this long. */
const PARTITION_FAIL_BOUND_MS = 30_000;
/** The daemons must notice a dead link within this long (libp2p pings every connection every 10 s, timeout >= 5 s). */
const PARTITION_DETECT_BOUND_MS = 40_000;

type Status = { party: number; peersConnected: number[]; listen: string[] };
type JobRec = { id: string; state: string; error?: { code: string; message: string } };

const t = tap;
const skip = netnsUnavailable();

// Inputs and their plaintext results.
const M = 3, K = 8, N = 5;
const X = Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.9) * 1.5);
const W = Array.from({ length: K * N }, (_, i) => Math.cos(i * 0.4) * 0.5);
function matmulSoftmax(x: number[], w: number[]): Float64Array {
  const prod = new Float64Array(M * N);
  for (let r = 0; r < M; r++) for (let j = 0; j < N; j++) for (let q = 0; q < K; q++) prod[r * N + j] += x[r * K + q] * w[q * N + j];
  return softmaxRows(prod, N);
}
const V = Array.from({ length: 4 * 6 }, (_, i) => Math.cos(i * 1.3) * 2 + (i % 6) * 0.25);

/** Polls `probe` until it returns a value; gives up after timeoutMs, or at once when `signal` aborts (the test ended). */

/** The environment for child processes, without anything that would reconfigure a daemon behind the test's back. */
function cleanEnv(): NodeJS.ProcessEnv {
  const drop = new Set(['STATE_DIRECTORY', 'RUNTIME_DIRECTORY', 'NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS', 'LISTEN_PID', ...Object.keys(ENV_ALIASES)]);
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !drop.has(k) && !k.startsWith('QMPC_')));
}

/** SIGTERM, then SIGKILL after graceMs; resolves once the process has exited. */
function stopProcess(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

t.test('three hosts on a bridge: mDNS discovery, a job, a partition, a heal', { skip: skip ?? false, timeout: 150_000 }, async (t) => {
  const t0 = performance.now();
  const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
  for (const name of sweepStaleNetns()) t.comment(`removed namespace ${name} left by an earlier run`);

  const dir = mkdtempSync(join(tmpdir(), 'qmpc-netns-'));
  const procs: ChildProcess[] = [];
  /** Aborted by teardown, so that a timed-out or failed test stops polling at once. */
  const ended = new AbortController();
  const wait = <T>(what: string, timeoutMs: number, probe: () => Promise<T | null | undefined>, everyMs = 200) => waitFor(what, timeoutMs, probe, everyMs, ended.signal);
  let lab: NetnsLab | null = null;
  /** The job submitted during the partition. */
  let partitionedJob: string | null = null;
  // Last resort if the process exits before teardown runs: no daemon or namespace outlives it.
  const onExit = () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    lab?.destroy();
  };
  process.once('exit', onExit);
  const dumpLogs = () => {
    for (let i = 0; i < 3; i++) {
      const f = join(dir, `party-${i}`, 'daemon.log');
      if (!existsSync(f)) continue;
      const tail = readFileSync(f, 'utf8').trimEnd().split('\n').slice(-25).join('\n');
      t.comment(`--- party ${i} daemon.log (tail) ---\n${tail}`);
    }
  };
  // Registered before anything is created; runs whatever happens below.
  t.teardown(async () => {
    ended.abort();
    await Promise.allSettled(procs.map((p) => stopProcess(p)));
    if (!t.passing()) dumpLogs();
    lab?.destroy();
    process.off('exit', onExit);
    if (process.env.QMPC_KEEP_NETNS_LOGS) t.comment(`logs kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  });
  lab = createNetnsLab({ hosts: [...PARTY_OCTETS.map((o, i) => ({ label: `party-${i}`, octet: o })), { label: 'client', octet: CLIENT_OCTET }] });
  const partyHost = (i: number): NetnsHost => lab!.hosts[i];
  const clientHost = lab.hosts[3];
  const addrOf = (i: number) => `/ip4/${partyHost(i).address}/tcp/${PORT}`;

  // Keys from cluster init; the configs are then rewritten for the lab: no committee addresses at all.
  const layout = await clusterInit({ dir, metricsBasePort: 0, force: true });
  const serviceTag = `qmpc-netns-${process.pid}-${randomBytes(3).toString('hex')}`;
  for (let i = 0; i < 3; i++) {
    const cfg = parseYaml(readFileSync(layout.configs[i], 'utf8'));
    cfg.committee = layout.committee.map((m) => ({ index: m.index, peer_id: m.peer_id, addrs: [], name: m.name }));
    cfg.network = {
      listen: [addrOf(i)],
      mdns: { enabled: true, service_tag: serviceTag },
      connection_timeout: 5,
      redial_min: 0.5,
      redial_max: 2,
    };
    cfg.mpc = { round_timeout: 3 };
    cfg.scheduler = { admission_timeout: 5, task_timeout: 60 };
    cfg.metrics = { enabled: false };
    cfg.logging = { level: 'debug', format: 'json' };
    writeFileSync(layout.configs[i], stringifyYaml(cfg));
  }
  /** What the client knows: the parties' peer ids and their addresses on the lab network. */
  const clientCommittee = layout.committee.map((m) => ({ index: m.index, peer_id: m.peer_id, addrs: [addrOf(m.index)] }));
  const admin = <T>(i: number, cmd: string, args: Record<string, unknown> = {}) => adminRequest(layout.sockets[i], cmd, args, { timeoutMs: 5_000 }) as Promise<T>;

  const startParty = (i: number) => {
    if (ended.signal.aborted) throw new Error('the test ended; not starting a daemon');
    const argv = ['timeout', '-k', '5', String(DAEMON_MAX_LIFE_S), process.execPath, ...DAEMON_NODE_OPTIONS, CLI, 'daemon', '--config', layout.configs[i]];
    const child = spawn('ip', lab!.execArgs(partyHost(i), argv), { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv(), cwd: dir });
    const log = createWriteStream(join(dir, `party-${i}`, 'daemon.log'), { flags: 'a' });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    procs.push(child);
    return child;
  };

  /** Runs one job through the client process on the client host. */
  const runClient = async (kind: string, inputs: ClientRequest['inputs'], timeoutMs: number): Promise<ClientReply> => {
    if (ended.signal.aborted) throw new Error('the test ended; no more jobs');
    const req: ClientRequest = { committee: clientCommittee, kind, inputs, jobId: newJobId(), timeoutMs };
    const file = join(dir, `job-${req.jobId}.json`);
    writeFileSync(file, JSON.stringify(req));
    const child = spawn('ip', lab!.execArgs(clientHost, [process.execPath, CLIENT, file]), { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv() });
    procs.push(child);
    let out = '', err = '';
    child.stdout!.on('data', (b) => (out += b));
    child.stderr!.on('data', (b) => (err += b));
    const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 15_000);
    const code = await new Promise<number | string | null>((r) => child.once('exit', (c, s) => r(c ?? s)));
    clearTimeout(killer);
    const line = out.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as ClientReply;
    } catch {
      throw new Error(`client process ended (${code}) without a reply; stderr: ${err.trim().slice(-2000)}`);
    }
  };

  const connectedSets = async () => Promise.all([0, 1, 2].map(async (i) => (await admin<Status>(i, 'status')).peersConnected));
  const waitAllConnected = (what: string, timeoutMs: number) =>
    wait(what, timeoutMs, async () => {
      const sets = await connectedSets();
      return sets.every((s) => s.length === 2) ? sets : null;
    }, 250);

  // ---- 1. three daemons, one per host; they find each other by mDNS alone ----
  await t.test('daemons start in their namespaces and find each other by mDNS alone', async (t) => {
    for (let i = 0; i < 3; i++) {
      const cfg = parseYaml(readFileSync(layout.configs[i], 'utf8'));
      t.same(cfg.committee.map((m: { addrs: string[] }) => m.addrs), [[], [], []], `party ${i}'s committee lists no peer addresses`);
    }
    const children = [0, 1, 2].map(startParty);
    await Promise.all([0, 1, 2].map((i) => wait(`party ${i} admin socket`, 30_000, async () => {
      if (children[i].exitCode !== null || children[i].signalCode !== null) throw new Error(`party ${i} exited during start-up (see its log)`);
      return admin(i, 'version', {});
    })));
    t.comment(`admin sockets up after ${elapsed()}`);
    for (let i = 0; i < 3; i++) {
      const s = await admin<Status>(i, 'status');
      t.same(s.listen.filter((a) => a.startsWith(addrOf(i))).length, 1, `party ${i} listens on its lab address ${addrOf(i)} (${s.listen.join(', ')})`);
    }
    for (let i = 0; i < 3; i++) {
      const c = (await admin<{ committee: { addrs: string[] }[]; network: { bootstrap: string[]; mdns: { enabled: boolean } } }>(i, 'config'));
      t.ok(c.committee.every((m) => m.addrs.length === 0) && c.network.bootstrap.length === 0 && c.network.mdns.enabled,
        `party ${i}'s effective configuration has no peer addresses and no bootstrap list, only mDNS`);
    }
    const sets = await waitAllConnected('every party connected to both peers via mDNS', 45_000);
    t.same(sets, [[1, 2], [0, 2], [0, 1]], 'each party reports both other parties connected');
    t.comment(`committee complete after ${elapsed()}`);
  });
  if (!t.passing()) return;

  // ---- 2. a client on a fourth host runs a job ----
  await t.test('a client on a fourth host runs a job with the right result', async (t) => {
    const reply = await runClient('matmul-softmax', [{ name: 'x', shape: [M, K], values: X }, { name: 'w', shape: [K, N], values: W }], 60_000);
    if (!reply.ok) return void t.fail(`job failed: ${reply.code}: ${reply.message}`);
    const y = reply.outputs.find((o) => o.name === 'y')!;
    t.same(y.shape, [M, N], 'output shape');
    const err = maxAbsDiff(y.values, matmulSoftmax(X, W));
    t.ok(err <= 1e-2, `softmax(x @ w) matches the plaintext (max error ${err.toExponential(2)} <= 1e-2)`);
    for (let i = 0; i < 3; i++) t.equal((await admin<JobRec>(i, 'job', { id: reply.jobId })).state, 'done', `party ${i} records the job as done`);
    t.comment(`first job took ${reply.ms} ms (at ${elapsed()})`);
  });
  if (!t.passing()) return;

  // ---- 3. partition: party 2's link goes down ----
  await t.test('partition: with party 2 cut off, a job fails promptly with a clear error', async (t) => {
    lab!.linkDown(partyHost(2));
    t.equal(lab!.portState(partyHost(2)), 'DOWN', "party 2's port on the bridge is down");
    const started = performance.now();
    const reply = await runClient('matmul-softmax', [{ name: 'x', shape: [M, K], values: X }, { name: 'w', shape: [K, N], values: W }], PARTITION_FAIL_BOUND_MS);
    const ms = Math.round(performance.now() - started);
    t.equal(reply.ok, false, 'the job does not succeed');
    if (reply.ok) return;
    t.comment(`client error after ${ms} ms: [${reply.code}] ${reply.message}`);
    t.ok(PARTITION_CODES.includes(reply.code), `the error code ${reply.code} is one of ${PARTITION_CODES.join(', ')}`);
    // Either the client names the party it cannot reach, or a reachable party explains why it gave up.
    t.ok(reply.code === 'ERR_UNAVAILABLE' ? reply.party === 2 : reply.party === 0 || reply.party === 1, `the error names the right party (party ${reply.party}, ${reply.code})`);
    t.ok(ms < PARTITION_FAIL_BOUND_MS, `the failure arrives within ${PARTITION_FAIL_BOUND_MS / 1000} s (${ms} ms)`);
    for (const i of [0, 1]) {
      const rec = await wait(`party ${i} records the job's end`, 15_000, async () => {
        const r = await admin<JobRec>(i, 'job', { id: reply.jobId });
        return r.state === 'received' || r.state === 'running' ? null : r;
      });
      t.equal(rec.state, 'failed', `party ${i} records the job as failed`);
      t.ok(rec.error && PARTITION_CODES.includes(rec.error.code), `party ${i}'s record names why: [${rec.error?.code}] ${rec.error?.message}`);
    }
    // Party 2 never saw the job (the client could not reach it); it is asked after the heal.
    partitionedJob = reply.jobId;
    // The link is dead, not closed: nothing tells the daemons; their connection keep-alive has to notice.
    const sets = await wait('the parties notice the partition', PARTITION_DETECT_BOUND_MS, async () => {
      const s = await connectedSets();
      return s[0].includes(2) || s[1].includes(2) || s[2].length > 0 ? null : s;
    }, 500);
    t.same(sets, [[1], [0], []], 'parties 0 and 1 report party 2 disconnected, and party 2 reports no peers');
    t.comment(`partition noticed at ${elapsed()}`);
  });
  if (!t.passing()) return;

  // ---- 4. heal: link up, the parties reconnect, the next job succeeds ----
  await t.test('heal: the link comes back, the parties reconnect and the next job succeeds', async (t) => {
    lab!.linkUp(partyHost(2));
    t.equal(lab!.portState(partyHost(2)), 'UP', "party 2's port on the bridge is up again");
    const sets = await waitAllConnected('every party reconnected to both peers after the heal', 45_000);
    t.same(sets, [[1, 2], [0, 2], [0, 1]], 'each party reports both other parties connected again');
    t.comment(`reconnected at ${elapsed()}`);
    const reply = await runClient('mean-variance', [{ name: 'x', shape: [4, 6], values: V }], 60_000);
    if (!reply.ok) return void t.fail(`job after the heal failed: ${reply.code}: ${reply.message}`);
    const want = meanVariance(Float64Array.from(V), 6);
    const mean = reply.outputs.find((o) => o.name === 'mean')!, variance = reply.outputs.find((o) => o.name === 'variance')!;
    const errMean = maxAbsDiff(mean.values, want.mean), errVar = maxAbsDiff(variance.values, want.variance);
    t.ok(errMean <= 1e-2, `row means match the plaintext (max error ${errMean.toExponential(2)})`);
    t.ok(errVar <= 1e-2, `row variances match the plaintext (max error ${errVar.toExponential(2)})`);
    for (let i = 0; i < 3; i++) t.equal((await admin<JobRec>(i, 'job', { id: reply.jobId })).state, 'done', `party ${i} records the job as done`);
    if (partitionedJob) {
      const e = await admin(2, 'job', { id: partitionedJob }).then(() => null, (err: Error & { code?: string }) => err);
      t.equal(e?.code, 'ERR_JOB_UNKNOWN', 'party 2 never received the job submitted during the partition');
    }
  });
  t.comment(`total ${elapsed()}`);
});
