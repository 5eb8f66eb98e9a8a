/**
 * qmpcd under a real systemd. Boots systemd in containers (`systemd-nspawn -b`
 * over a Debian bookworm tree made with debootstrap and cached by
 * scripts/build-nspawn-tree.sh), each in its own network namespace on one
 * bridge (test/helpers/netns.ts, 10.78.0.0/24), installs qmpc in each
 * with scripts/install.sh from this checkout (bound read-only at /src), and
 * drives systemd from outside with `nsenter -t <PID 1> -a systemctl …`.
 *
 * One party first: qmpcd.service becomes active only after READY=1, its
 * STATUS= names the party and its peers, the hardened unit leaves the daemon
 * its state and runtime directories, admin socket, network and ONNX Runtime,
 * `systemctl reload` applies a changed logging level, `systemctl stop` is
 * graceful, and a hung daemon is killed and restarted by the watchdog. Then
 * all three: the parties find each other by mDNS alone (no addresses in the
 * committee) and a client in one container runs a job through them.
 *
 * Skipped unless root with systemd-nspawn and debootstrap (installed with
 * apt-get when missing) and a buildable tree. Containers are powered off (and
 * killed if they do not go) and the namespaces deleted, whatever happens.
 * QMPC_NSPAWN_KEEP=1 keeps the scratch directory (configs, console logs).
 */
import t, { type Test } from 'tap';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { clusterInit, type ClusterMember } from '../daemon/cluster-init.ts';
import { createNetnsLab, sweepStaleNetns, type NetnsLab } from './helpers/netns.ts';
import { maxAbsDiff, meanVariance } from './helpers/daemon-cluster.ts';

const NETNS_PREFIX = 'qmpcnsp';
import { NspawnContainer, REPO_ROOT, nspawnPrerequisites, onEmergencyCleanup, parseSystemdTimestampUs, waitFor, type JournalEntry } from './helpers/nspawn.ts';

const UNIT = 'qmpcd.service';
const PORT = 7400;
const SOCKET = '/run/qmpc/admin.sock';
const NODE = '/usr/lib/qmpc/node/bin/node';
const CLI = '/usr/lib/qmpc/daemon/cli.ts';
/** The unit's WatchdogSec= is 20 s: a hung daemon is killed 10–20 s after its last ping, restarted RestartSec= later. */
const WATCHDOG_BOUND_MS = 60_000;
const START_BOUND_MS = 90_000;

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
const pre = nspawnPrerequisites();

type Rec = Record<string, unknown>;

const records = (entries: JournalEntry[], msg: string) => entries.filter((e) => e.record?.msg === msg).map((e) => e.record!);
const systemdLines = (entries: JournalEntry[]) => entries.filter((e) => e.identifier === 'systemd').map((e) => e.message);
const nowUs = () => Date.now() * 1000;

t.test('qmpcd under a real systemd (systemd-nspawn containers)', { skip: 'skip' in pre ? pre.skip : false }, async (t) => {
  if ('skip' in pre) return;
  t.comment(pre.built ? `built the Debian tree ${pre.tree} in ${(pre.buildMs / 1000).toFixed(1)} s` : `reused the cached Debian tree ${pre.tree}`);
  const swept = sweepStaleNetns(NETNS_PREFIX);
  if (swept.length) t.comment(`removed stale namespaces ${swept.join(', ')}`);

  const dir = mkdtempSync(join(tmpdir(), 'qmpc-nspawn-'));
  const containers: NspawnContainer[] = [];
  let net: NetnsLab | null = null;
  t.teardown(async () => {
    await Promise.all(containers.map((c) => c.shutdown(15_000)));
    net?.destroy();
    if (process.env.QMPC_NSPAWN_KEEP) t.comment(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  });

  // ---- keys, configurations and the client's files (host side, bound read-only at /qmpc-test) ----
  const layout = await clusterInit({ dir: join(dir, 'keys'), metricsBasePort: 0, force: true });
  net = createNetnsLab({ prefix: NETNS_PREFIX, subnet: '10.78.0', hosts: [0, 1, 2].map((i) => ({ label: `party-${i}`, octet: 10 + i })) });
  // Killed mid-run (tap's timeout, ^C): containers die and the namespaces go even without the teardown.
  onEmergencyCleanup(() => {
    net?.destroy();
    if (!process.env.QMPC_NSPAWN_KEEP) rmSync(dir, { recursive: true, force: true });
  });
  const hosts = net.hosts;
  const committee: ClusterMember[] = layout.committee;
  const partyConfig = (i: number, level: string) =>
    `# qmpcd configuration for party ${i} (test/systemd-nspawn.test.ts)\n` +
    stringify({
      party: { index: i, name: `party-${i}` },
      // No addresses: the parties find each other by mDNS alone.
      committee: committee.map((m) => ({ index: m.index, peer_id: m.peer_id, addrs: [] })),
      network: { listen: [`/ip4/${hosts[i].address}/tcp/${PORT}`] },
      logging: { level },
    });
  const X = Array.from({ length: 4 * 6 }, (_, k) => Math.round((Math.sin(k * 1.7) * 3 + (k % 5) * 0.25) * 1000) / 1000);
  for (let i = 0; i < 3; i++) {
    const d = join(dir, `party-${i}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'qmpcd.yaml'), partyConfig(i, 'info'));
    copyFileSync(join(layout.dir, `party-${i}`, 'state', 'identity.key'), join(d, 'identity.key'));
    writeFileSync(join(d, 'cluster.yaml'), stringify({ committee: committee.map((m) => ({ index: m.index, peer_id: m.peer_id, addrs: [`/ip4/${hosts[m.index].address}/tcp/${PORT}`] })) }));
    writeFileSync(join(d, 'x.json'), JSON.stringify({ shape: [4, 6], values: X }));
  }

  const diagnose = async (t: Test, c: NspawnContainer) => {
    if (t.passing()) return;
    try {
      const j = await c.journal(UNIT);
      t.comment(`${c.name}: last journal lines of ${UNIT}:\n${j.slice(-25).map((e) => `  ${e.identifier}[${e.pid}]: ${e.message}`).join('\n')}`);
    } catch (e) {
      t.comment(`${c.name}: no journal: ${(e as Error).message}`);
    }
  };

  // ---- boot three containers and install qmpc in each ----
  let installed = false;
  await t.test('three containers boot and scripts/install.sh installs qmpc in each', async (t) => {
    const booted = await Promise.allSettled(hosts.map((h, i) =>
      NspawnContainer.boot({
        tree: pre.tree, name: `qmpc-nsp${process.pid}-${i}`, netnsPath: `/run/netns/${h.ns}`,
        bindsRo: { [REPO_ROOT]: '/src', [join(dir, `party-${i}`)]: '/qmpc-test' }, logFile: join(dir, `console-${i}.log`), timeoutMs: 60_000,
      }).then((c) => (containers[i] = c))));
    for (const [i, b] of booted.entries()) if (b.status === 'rejected') t.fail(`container ${i} boots: ${(b.reason as Error).message}`);
    if (booted.some((b) => b.status === 'rejected')) return;
    t.pass(`three containers booted (${elapsed()})`);

    const results = await Promise.allSettled(containers.map(async (c) => {
      // --no-start: the readiness test below starts the unit itself, to watch it go from activating to active.
      const r = await c.exec(['/src/scripts/install.sh', '--config', '/qmpc-test/qmpcd.yaml', '--identity-key', '/qmpc-test/identity.key', '--no-start'], { timeoutMs: 150_000, allowFail: true });
      if (r.code !== 0) throw new Error(`install.sh exited ${r.code}: ${r.stderr.trim().split('\n').slice(-5).join(' | ')}`);
      await c.exec(['systemctl', 'enable', UNIT]);
      return c.sh(`stat -c '%a %U:%G' /etc/qmpc/qmpcd.yaml; ${NODE} --version; test -x /usr/bin/qmpc && echo cli; getent passwd qmpc | cut -d: -f7`);
    }));
    for (const [i, r] of results.entries()) {
      if (r.status === 'rejected') {
        t.fail(`party ${i}: ${(r.reason as Error).message}`);
        continue;
      }
      const [mode, version, cli, shell] = r.value.trim().split('\n');
      t.equal(mode, '640 root:qmpc', `party ${i}: /etc/qmpc/qmpcd.yaml is 0640 root:qmpc`);
      t.match(version, /^v24\./, `party ${i}: the pinned Node 24 runs inside the container (${version})`);
      t.equal(cli, 'cli', `party ${i}: /usr/bin/qmpc installed`);
      t.equal(shell, '/usr/sbin/nologin', `party ${i}: the qmpc system user exists (sysusers)`);
    }
    installed = t.passing();
    t.comment(`installed (${elapsed()})`);
  });
  if (!installed) return;
  const [c0, c1, c2] = containers;

  // ---- one party ----
  let running = false;
  await t.test('qmpcd.service becomes active only after the daemon is ready (READY=1)', async (t) => {
    const since = nowUs();
    await c0.exec(['systemctl', 'start', '--no-block', UNIT]);
    const seen: string[] = [];
    const final = await waitFor('qmpcd leaves start-up', START_BOUND_MS, async () => {
      const s = await c0.show(UNIT, ['ActiveState', 'SubState']);
      const st = `${s.ActiveState}/${s.SubState}`;
      if (seen.at(-1) !== st) seen.push(st);
      return s.ActiveState === 'active' || s.ActiveState === 'failed' || s.SubState === 'auto-restart' ? s : null;
    }, 50);
    t.comment(`states seen: ${seen.join(' → ')}`);
    t.ok(seen.includes('activating/start'), 'systemd holds the unit in activating/start while the daemon starts');
    t.equal(final.ActiveState, 'active', 'then the unit is active');
    const show = await c0.show(UNIT, ['ActiveEnterTimestamp', 'ExecMainStartTimestamp', 'MainPID']);
    const activeUs = parseSystemdTimestampUs(show.ActiveEnterTimestamp), execUs = parseSystemdTimestampUs(show.ExecMainStartTimestamp);
    const journal = await c0.journal(UNIT, since);
    const ready = records(journal, 'party node running').at(-1);
    t.ok(ready, "the daemon logged 'party node running'");
    if (ready) {
      // The daemon stamps that line (ms, rounded down) just before it sends READY=1; systemd stamps ActiveEnterTimestamp when READY=1 arrives.
      const readyUs = Number(ready.time) * 1000;
      t.ok(readyUs <= activeUs, `active (${show.ActiveEnterTimestamp}) only after the daemon was ready (${new Date(Number(ready.time)).toISOString()})`);
      t.ok(activeUs - execUs >= 200_000, `start-up took ${((activeUs - execUs) / 1000).toFixed(0)} ms between ExecStart and active: systemd waited for READY=1, not for the exec`);
      t.same(ready.listen, [`/ip4/${hosts[0].address}/tcp/${PORT}/p2p/${committee[0].peer_id}`], 'listening on its 10.78 address');
    }
    running = final.ActiveState === 'active';
    await diagnose(t, c0);
  });
  if (!running) return;

  await t.test('STATUS= names the party and its peers', async (t) => {
    const s = await c0.show(UNIT, ['StatusText']);
    t.match(s.StatusText, /^party 0: (waiting for peers|peers [\d, ]+ connected); \d+ job\(s\) running$/, `StatusText: ${s.StatusText}`);
    t.match(s.StatusText, /waiting for peers/, 'alone, party 0 reports that it waits for its peers');
  });

  await t.test('the hardened unit leaves the daemon what it needs', async (t) => {
    const { MainPID } = await c0.show(UNIT, ['MainPID']);
    const stat = (await c0.sh(`stat -c '%n %F %a %U:%G' /var/lib/qmpc /var/lib/qmpc/db /var/lib/qmpc/identity.key /run/qmpc ${SOCKET}`)).trim().split('\n');
    t.same(stat, [
      '/var/lib/qmpc directory 700 qmpc:qmpc',
      '/var/lib/qmpc/db directory 700 qmpc:qmpc',
      '/var/lib/qmpc/identity.key regular file 600 qmpc:qmpc',
      '/run/qmpc directory 750 qmpc:qmpc',
      `${SOCKET} socket 660 qmpc:qmpc`,
    ], 'state directory with the LevelDB store, runtime directory and admin socket (0660), owned by qmpc');
    const proc = await c0.sh(`stat -c %U /proc/${MainPID}; grep -E '^(NoNewPrivs|CapEff|Seccomp):' /proc/${MainPID}/status; grep -c libonnxruntime /proc/${MainPID}/maps || true`);
    const [user, ...rest] = proc.trim().split('\n');
    const ort = Number(rest.pop());
    const fields = Object.fromEntries(rest.map((l) => l.split(/:\s+/)));
    t.equal(user, 'qmpc', 'the daemon runs as qmpc');
    t.same(fields, { NoNewPrivs: '1', CapEff: '0000000000000000', Seccomp: '2' }, 'no new privileges, no capabilities, a seccomp filter: the hardening is in force');
    t.ok(ort > 0, 'ONNX Runtime (libonnxruntime) is loaded in the daemon under the hardening');
    const status = JSON.parse(await c0.sh(`qmpc admin status --socket ${SOCKET} --json`, { timeoutMs: 20_000 })) as Rec;
    t.match(status, { party: 0, status: 'running', peerId: committee[0].peer_id }, '`qmpc admin status` answers through the admin socket inside the container');
    t.match(status.backend, /^ort-cpu/, `the compute backend is ONNX Runtime on the CPU (${status.backend})`);
    await diagnose(t, c0);
  });

  await t.test('systemctl reload applies a changed logging level in the same process', async (t) => {
    const before = await c0.show(UNIT, ['MainPID']);
    await c0.writeFile('/etc/qmpc/qmpcd.yaml', partyConfig(0, 'debug'));
    const since = nowUs();
    const r = await c0.exec(['systemctl', 'reload', UNIT], { allowFail: true, timeoutMs: 30_000 });
    t.equal(r.code, 0, 'systemctl reload qmpcd succeeds with the unit as shipped');
    // ExecReload= asks the daemon through its admin socket and waits for the answer, so by now the change is applied.
    const reloaded = records(await c0.journal(UNIT, since), 'configuration reloaded').at(-1);
    t.ok(reloaded, "the daemon had logged 'configuration reloaded' when systemctl reload returned");
    if (reloaded) t.match(reloaded, { applied: ['logging.level'], needsRestart: [] }, 'logging.level applied live, nothing needs a restart');
    const after = await waitFor('the unit is active again', 15_000, async () => {
      const s = await c0.show(UNIT, ['ActiveState', 'SubState', 'MainPID']);
      return s.ActiveState === 'active' ? s : null;
    });
    t.equal(after.MainPID, before.MainPID, 'same main process (reloaded, not restarted)');
    const cfg = JSON.parse(await c0.sh(`qmpc admin config --socket ${SOCKET} --json`, { timeoutMs: 20_000 })) as { logging: { level: string } };
    t.equal(cfg.logging.level, 'debug', 'the running daemon reports logging.level debug');
    await diagnose(t, c0);
  });

  await t.test('systemctl stop is graceful', async (t) => {
    const { MainPID } = await c0.show(UNIT, ['MainPID']);
    const since = nowUs();
    const r = await c0.exec(['systemctl', 'stop', UNIT], { allowFail: true, timeoutMs: 45_000 });
    t.equal(r.code, 0, 'systemctl stop returns 0');
    const s = await c0.show(UNIT, ['ActiveState', 'SubState', 'Result', 'ExecMainCode', 'ExecMainStatus']);
    t.same(s, { ActiveState: 'inactive', SubState: 'dead', Result: 'success', ExecMainCode: '1', ExecMainStatus: '0' }, 'inactive (not failed): the daemon exited 0 on SIGTERM');
    const j = await c0.journal(UNIT, since);
    t.match(records(j, 'stopping')[0], { signal: 'SIGTERM' }, "the daemon logged 'stopping' on SIGTERM");
    t.ok(records(j, 'store closed').length === 1 && records(j, 'stopped').length === 1, "it closed its store and logged 'stopped'");
    t.notOk(systemdLines(j).some((l) => /timed out|Killing process|SIGKILL/.test(l)), 'systemd did not have to kill anything');
    t.equal((await c0.exec(['test', '-e', SOCKET], { allowFail: true })).code, 1, 'the admin socket is gone');
    t.equal((await c0.exec(['test', '-e', `/proc/${MainPID}`], { allowFail: true })).code, 1, 'the process is gone');
    await c0.exec(['systemctl', 'start', UNIT], { timeoutMs: START_BOUND_MS });
    t.equal((await c0.show(UNIT, ['ActiveState'])).ActiveState, 'active', 'it starts again');
    await diagnose(t, c0);
  });

  await t.test('a hung daemon is killed and restarted by the watchdog', async (t) => {
    const before = await c0.show(UNIT, ['MainPID', 'NRestarts', 'ActiveState']);
    t.equal(before.ActiveState, 'active', 'active before');
    const since = nowUs(), t0 = Date.now();
    await c0.exec(['sh', '-c', 'kill -STOP "$1"', 'sh', before.MainPID]);
    const after = await waitFor('systemd restarts the hung daemon', WATCHDOG_BOUND_MS, async () => {
      const s = await c0.show(UNIT, ['MainPID', 'NRestarts', 'ActiveState']);
      return Number(s.NRestarts) > Number(before.NRestarts) && s.ActiveState === 'active' && s.MainPID !== before.MainPID && s.MainPID !== '0' ? s : null;
    }, 500).catch((e: Error) => (t.fail(e.message), null));
    if (after) {
      t.comment(`restarted ${((Date.now() - t0) / 1000).toFixed(1)} s after SIGSTOP`);
      t.equal(Number(after.NRestarts), Number(before.NRestarts) + 1, 'NRestarts went up by one');
      t.not(after.MainPID, before.MainPID, `a new main process (${before.MainPID} → ${after.MainPID})`);
      const lines = systemdLines(await c0.journal(UNIT, since));
      t.ok(lines.some((l) => /Watchdog timeout/.test(l)), 'systemd logged the watchdog timeout');
      t.ok(Date.now() - t0 >= 9_000, 'not before the daemon had missed its pings (WatchdogSec=20s, pings every 10 s)');
    }
    await diagnose(t, c0);
  });

  // ---- three parties ----
  let connected = false;
  await t.test('three parties in three containers find each other by mDNS', async (t) => {
    const starts = await Promise.allSettled([c1, c2].map((c) => c.exec(['systemctl', 'start', UNIT], { timeoutMs: START_BOUND_MS })));
    for (const [k, s] of starts.entries()) if (s.status === 'rejected') t.fail(`party ${k + 1} starts: ${(s.reason as Error).message}`);
    const texts = await waitFor('every party reports both peers connected', 60_000, async () => {
      const all = await Promise.all(containers.map((c) => c.show(UNIT, ['StatusText'])));
      return all.every((s, i) => s.StatusText.startsWith(`party ${i}: peers ${[0, 1, 2].filter((j) => j !== i).join(', ')} connected`)) ? all.map((s) => s.StatusText) : null;
    }, 500).catch((e: Error) => (t.fail(e.message), null));
    if (texts) for (const [i, s] of texts.entries()) t.pass(`party ${i} STATUS=: ${s}`);
    for (const [i, c] of containers.entries()) {
      const s = JSON.parse(await c.sh(`qmpc admin status --socket ${SOCKET} --json`, { timeoutMs: 20_000 })) as { peersConnected: number[] };
      t.same([...s.peersConnected].sort(), [0, 1, 2].filter((j) => j !== i), `party ${i}'s admin socket lists both other parties connected`);
    }
    connected = t.passing();
    for (const c of containers) await diagnose(t, c);
  });
  if (!connected) return;

  await t.test('a client in one container runs a job through the three parties', async (t) => {
    const r = await c0.exec([NODE, CLI, 'run', '--cluster', '/qmpc-test/cluster.yaml', '--kind', 'mean-variance', '--input', 'x=/qmpc-test/x.json', '--json', '--timeout', '60'], { allowFail: true, timeoutMs: 90_000 });
    t.equal(r.code, 0, `qmpc run exits 0${r.code ? `: ${r.stderr.trim()}` : ''}`);
    if (r.code !== 0) return;
    const outs = JSON.parse(r.stdout) as { name: string; shape: number[]; values: number[] }[];
    const want = meanVariance(Float64Array.from(X), 6);
    const mean = outs.find((o) => o.name === 'mean'), variance = outs.find((o) => o.name === 'variance');
    t.same(mean?.shape, [4], 'four row means');
    const errMean = maxAbsDiff(mean?.values ?? [], want.mean), errVar = maxAbsDiff(variance?.values ?? [], want.variance);
    t.ok(errMean <= 1e-3, `row means equal the plaintext's (max error ${errMean.toExponential(2)})`);
    t.ok(errVar <= 1e-2, `row variances equal the plaintext's (max error ${errVar.toExponential(2)})`);
    for (const [i, c] of containers.entries()) {
      const jobs = JSON.parse(await c.sh(`qmpc admin jobs --socket ${SOCKET} --json`, { timeoutMs: 20_000 })) as { kind: string; state: string }[];
      t.match(jobs, [{ kind: 'mean-variance', state: 'done' }], `party ${i} recorded the job as done`);
    }
    for (const c of containers) await diagnose(t, c);
  });
  t.comment(`total ${elapsed()}`);
});
