import t from 'tap';
import { mkdtempSync, readFileSync, statSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { loadConfig, redactConfig, validateConfig } from '../daemon/config/load.ts';
import { configSchema } from '../daemon/config/schema.ts';
import { clusterInit } from '../daemon/cluster-init.ts';
import { generateIdentityFile, loadIdentityFile, loadOrCreateIdentity } from '../daemon/identity.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'qmpc-config-'));
const ids = ['12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo', '12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq', '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'];
const committee = ids.map((peer_id, index) => ({ index, peer_id, addrs: [`/ip4/127.0.0.1/tcp/${7400 + index}`] }));

t.test('config/defaults.yaml documents exactly the schema defaults', async (t) => {
  const doc = parse(readFileSync(new URL('../config/defaults.yaml', import.meta.url), 'utf8'));
  const fromFile = configSchema.parse({ ...doc, committee });
  const fromSchema = configSchema.parse({ party: { index: 0 }, committee });
  t.same(fromFile, fromSchema);
});

t.test('a minimal file, environment and --set layer in order', async (t) => {
  const dir = tmp();
  const file = join(dir, 'qmpc.yaml');
  writeFileSync(file, `party: {index: 1}\ncommittee: ${JSON.stringify(committee)}\nstorage: {state_dir: state}\nscheduler: {max_concurrent_tasks: 4}\n`);
  const c = loadConfig({ file, env: {} });
  t.equal(c.party.index, 1);
  t.equal(c.scheduler.max_concurrent_tasks, 4);
  t.equal(c.storage.state_dir, join(dir, 'state'), 'relative paths resolve against the file');
  t.equal(c.logging.level, 'info');
  const env = { MAX_CONCURRENT_TASKS: '6', QMPC_LOGGING__LEVEL: 'debug', STATE_DIRECTORY: '/var/lib/qmpc', GPU_ACCELERATION: 'true' };
  const e = loadConfig({ file, env });
  t.equal(e.scheduler.max_concurrent_tasks, 6, 'guide variable overrides the file');
  t.equal(e.logging.level, 'debug');
  t.equal(e.storage.state_dir, join(dir, 'state'), 'the file beats systemd directories');
  t.equal(e.mpc.execution_provider, 'cuda');
  const s = loadConfig({ file, env, sets: ['scheduler.max_concurrent_tasks=2', 'metrics.enabled=false'] });
  t.equal(s.scheduler.max_concurrent_tasks, 2, '--set beats the environment');
  t.equal(s.metrics.enabled, false);
  rmSync(dir, { recursive: true });
});

t.test('errors name the key path, what was expected and what was found', async (t) => {
  const base = { party: { index: 0 }, committee };
  const cases: [unknown, RegExp][] = [
    [{ ...base, scheduler: { max_concurrent_tasks: 'eight' } }, /scheduler\.max_concurrent_tasks: expected number, found the string "eight"/],
    [{ ...base, scheduler: { max_concurrent_tasks: 0 } }, /scheduler\.max_concurrent_tasks: .*>=1.*found number 0/],
    [{ ...base, network: { listn: [] } }, /network\.listn: unknown key/],
    [{ ...base, party: { index: 3 } }, /party\.index: .*found number 3/],
    [{ committee }, /party: required \(object\) but missing/],
    [{ ...base, committee: committee.slice(0, 2) }, /committee: exactly 3 members/],
    [{ ...base, committee: [committee[0], committee[0], committee[1]] }, /one member for each index 0, 1, 2, found indices 0, 0, 1/],
    [{ ...base, committee: committee.map((m) => ({ ...m, peer_id: 'alice' })) }, /committee\.0\.peer_id: .*libp2p peer id.*"alice"/],
    [{ ...base, network: { listen: ['tcp://0.0.0.0:7400'] } }, /network\.listen\.0: .*TCP multiaddr/],
    [{ ...base, network: { redial_min: 60, redial_max: 5 } }, /redial_min \(60\) must not exceed network\.redial_max \(5\)/],
    [{ ...base, mpc: { backend: 'gpu' } }, /mpc\.backend: .*"ort"\|"js".*found the string "gpu"/],
  ];
  for (const [raw, re] of cases) t.throws(() => validateConfig(raw), { code: 'ERR_CONFIG', message: re }, String(re));
  const dir = tmp();
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'party:\n  index: [1\n');
  t.throws(() => loadConfig({ file: bad, env: {} }), { message: /not valid YAML \(line \d+, column \d+\)/ });
  writeFileSync(bad, '- a list\n');
  t.throws(() => loadConfig({ file: bad, env: {} }), { message: /expected a mapping of sections/ });
  t.throws(() => loadConfig({ file: join(dir, 'missing.yaml'), env: {} }), { message: /cannot read config file .*missing\.yaml: ENOENT/ });
  t.throws(() => loadConfig({ env: {}, sets: ['no-equals'] }), { message: /--set "no-equals": expected section.key=value/ });
  t.throws(() => loadConfig({ env: { QMPC_SCHEDULER__TASK_TIMEOUT: '-1' }, overrides: base }), { message: /scheduler\.task_timeout/ });
  rmSync(dir, { recursive: true });
});

t.test('redaction masks secret-looking keys', async (t) => {
  const c = validateConfig({ party: { index: 0 }, committee });
  const r = redactConfig({ ...c, extra: { api_token: 'x', nested: { password: 'y' } } } as never) as Record<string, Record<string, unknown>>;
  t.equal(r.extra.api_token, '[redacted]');
  t.same(r.extra.nested, { password: '[redacted]' });
  t.equal(r.identity.key_file, 'identity.key');
});

t.test('identity keys are 0600, stable, and refused when others can read them', async (t) => {
  const dir = tmp();
  const file = join(dir, 'k', 'identity.key');
  const a = await generateIdentityFile(file);
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.match(a.peerId, /^12D3KooW/);
  t.equal(loadIdentityFile(file).peerId, a.peerId, 'same peer id after reload');
  await t.rejects(generateIdentityFile(file), { code: 'ERR_IDENTITY', message: /already exists/ });
  const b = await loadOrCreateIdentity(file);
  t.equal(b.created, false);
  chmodSync(file, 0o644);
  t.throws(() => loadIdentityFile(file), { code: 'ERR_IDENTITY', message: /accessible by group or others \(mode 0644\); run: chmod 600/ });
  chmodSync(file, 0o600);
  writeFileSync(file, 'not a key', { mode: 0o600 });
  t.throws(() => loadIdentityFile(file), { message: /does not hold a libp2p private key/ });
  const fresh = await loadOrCreateIdentity(join(dir, 'new.key'));
  t.equal(fresh.created, true);
  rmSync(dir, { recursive: true });
});

t.test('cluster init writes three loadable configurations that agree on the committee', async (t) => {
  const dir = tmp();
  const layout = await clusterInit({ dir, basePort: 17400, metricsBasePort: 19464 });
  t.equal(layout.configs.length, 3);
  const configs = layout.configs.map((file) => loadConfig({ file, env: {} }));
  configs.forEach((c, i) => {
    t.equal(c.party.index, i);
    t.same(c.committee.map((m) => m.peer_id), layout.committee.map((m) => m.peer_id));
    t.same(c.network.listen, [`/ip4/127.0.0.1/tcp/${17400 + i}`]);
    t.equal(c.metrics.port, 19464 + i);
    t.equal(loadIdentityFile(join(c.storage.state_dir, c.identity.key_file)).peerId, c.committee[i].peer_id);
  });
  await t.rejects(clusterInit({ dir }), { code: 'ERR_USAGE', message: /already holds a cluster/ });
  await t.rejects(clusterInit({ dir: tmp(), parties: 4 }), { message: /--parties must be 3/ });
  rmSync(dir, { recursive: true });
});
