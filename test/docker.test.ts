/**
 * The three parties as containers built from the project's own Dockerfile,
 * started with testcontainers. CI has no Docker engine: there the test reports
 * a skip with the reason; on a host with one it builds, starts and runs a job.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { clusterInit } from '../daemon/cluster-init.ts';
import { JobClient } from '../daemon/client/job-client.ts';
import { prepareJob, reconstructOutputs } from '../daemon/client/job-request.ts';

async function dockerUnavailable(): Promise<string | null> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    const client = await getContainerRuntimeClient();
    await client.info;
    return null;
  } catch (e) {
    return `no Docker engine found (${(e as Error).message.split('\n')[0]})`;
  }
}

const reason = await dockerUnavailable();

t.test('three parties from the Dockerfile run a job', { skip: reason ?? false, timeout: 900_000 }, async (t) => {
  const { GenericContainer, Network, Wait } = await import('testcontainers');
  const root = new URL('..', import.meta.url).pathname;
  const dir = mkdtempSync(join(tmpdir(), 'qmpc-docker-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const layout = await clusterInit({ dir });
  const committee = layout.committee.map((m) => ({ ...m, addrs: [`/dns4/party-${m.index}/tcp/7400`] }));
  for (const m of committee) {
    const cfg = parse(readFileSync(layout.configs[m.index], 'utf8'));
    Object.assign(cfg, {
      committee,
      network: { listen: ['/ip4/0.0.0.0/tcp/7400'], mdns: { enabled: false } },
      storage: { state_dir: '/var/lib/qmpc', runtime_dir: '/run/qmpc' },
      metrics: { enabled: false },
    });
    writeFileSync(join(dir, `party-${m.index}`, 'qmpcd.yaml'), stringify(cfg));
  }
  const image = await GenericContainer.fromDockerfile(root).build('qmpc-test:latest', { deleteOnExit: true });
  const network = await new Network().start();
  t.teardown(() => network.stop());
  const parties = await Promise.all(committee.map((m) =>
    image
      .withNetwork(network)
      .withNetworkAliases(`party-${m.index}`)
      .withUser('root') // the copied key file is root's; the image's default user is qmpc
      .withCopyFilesToContainer([
        { source: join(dir, `party-${m.index}`, 'qmpcd.yaml'), target: '/etc/qmpc/qmpcd.yaml' },
        { source: join(dir, `party-${m.index}`, 'state', 'identity.key'), target: '/var/lib/qmpc/identity.key', mode: 0o600 },
      ])
      .withExposedPorts(7400)
      .withWaitStrategy(Wait.forLogMessage(/party node running/))
      .start()));
  t.teardown(() => Promise.all(parties.map((c) => c.stop())));
  // The client runs on the host and reaches each party through its mapped port.
  const fromHost = committee.map((m, i) => ({ ...m, addrs: [`/ip4/${parties[i].getHost() === 'localhost' ? '127.0.0.1' : parties[i].getHost()}/tcp/${parties[i].getMappedPort(7400)}`] }));
  const client = await JobClient.create(fromHost, { timeoutMs: 120_000 });
  t.teardown(() => client.close());
  const x = [1, 2, 3, 4, 5, 6];
  const job = prepareJob('mean-variance', [{ name: 'x', shape: [2, 3], values: x }]);
  const [mean, variance] = reconstructOutputs(await client.run(job), job.header.frac_bits);
  t.ok(Math.abs(mean.values[0] - 2) < 1e-3 && Math.abs(mean.values[1] - 5) < 1e-3, `means ${[...mean.values]}`);
  t.ok(Math.abs(variance.values[0] - 2 / 3) < 1e-2, `variance ${[...variance.values]}`);
});

t.test('the Dockerfile runs the daemon as an unprivileged user on the pinned Node major', async (t) => {
  const df = readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8');
  t.match(df, /^FROM node:24-/m);
  t.match(df, /^USER qmpc$/m);
  // Its Node options are checked with the other launchers' (test/node-options.test.ts).
  t.match(df, /^ENTRYPOINT \["node", (".*", )*"\/usr\/lib\/qmpc\/daemon\/cli\.ts"\]$/m);
});
