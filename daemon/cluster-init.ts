/**
 * `qmpc cluster init`: keys and configurations for three parties on one host
 * (loopback), for trying qmpc out, the demo and the integration tests.
 *
 *   DIR/cluster.yaml            the committee, for clients (`qmpc run --cluster`)
 *   DIR/party-I/config.yaml     party I's daemon configuration
 *   DIR/party-I/state/          its state directory (identity.key, db/)
 *   DIR/party-I/run/            its runtime directory (admin.sock)
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { UsageError } from './errors.ts';
import { generateIdentityFile } from './identity.ts';

export interface ClusterInitOptions {
  dir: string;
  parties?: number;
  host?: string;
  /** Party i listens on basePort + i (default 7400). */
  basePort?: number;
  /** Party i serves metrics on metricsBasePort + i (default 9464); 0 disables metrics. */
  metricsBasePort?: number;
  force?: boolean;
}

export interface ClusterMember {
  index: 0 | 1 | 2;
  peer_id: string;
  addrs: string[];
  name: string;
}

export interface ClusterLayout {
  dir: string;
  committee: ClusterMember[];
  configs: string[];
  sockets: string[];
}

export async function clusterInit(opts: ClusterInitOptions): Promise<ClusterLayout> {
  const parties = opts.parties ?? 3;
  if (parties !== 3) throw new UsageError(`--parties must be 3 (qmpc runs three-party replicated sharing), got ${parties}`);
  const host = opts.host ?? '127.0.0.1';
  const basePort = opts.basePort ?? 7400, metricsBase = opts.metricsBasePort ?? 9464;
  for (const p of [basePort, metricsBase]) {
    if (!Number.isInteger(p) || p < 0 || p + 2 > 65_535) throw new UsageError(`port ${p} is out of range`);
  }
  if (!opts.force && existsSync(join(opts.dir, 'cluster.yaml'))) {
    throw new UsageError(`${opts.dir} already holds a cluster (cluster.yaml exists); use --force to replace its keys and configs`);
  }
  mkdirSync(opts.dir, { recursive: true });
  const committee: ClusterMember[] = [];
  for (const index of [0, 1, 2] as const) {
    const state = join(opts.dir, `party-${index}`, 'state');
    mkdirSync(state, { recursive: true, mode: 0o700 });
    mkdirSync(join(opts.dir, `party-${index}`, 'run'), { recursive: true, mode: 0o750 });
    const id = await generateIdentityFile(join(state, 'identity.key'), { force: true });
    committee.push({ index, peer_id: id.peerId, addrs: [`/ip4/${host}/tcp/${basePort + index}`], name: `party-${index}` });
  }
  const configs: string[] = [], sockets: string[] = [];
  for (const m of committee) {
    const cfg = {
      party: { index: m.index, name: m.name },
      committee,
      network: { listen: m.addrs, mdns: { enabled: false } },
      storage: { state_dir: 'state', runtime_dir: 'run' },
      metrics: metricsBase === 0 ? { enabled: false } : { enabled: true, port: metricsBase + m.index },
    };
    const file = join(opts.dir, `party-${m.index}`, 'config.yaml');
    writeFileSync(file, `# qmpcd configuration for ${m.name} (written by qmpc cluster init)\n` + stringify(cfg));
    configs.push(file);
    sockets.push(join(opts.dir, `party-${m.index}`, 'run', 'admin.sock'));
  }
  writeFileSync(join(opts.dir, 'cluster.yaml'), '# the committee, for clients: qmpc run --cluster FILE\n' + stringify({ committee }));
  return { dir: opts.dir, committee, configs, sockets };
}
