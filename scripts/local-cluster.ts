/**
 * Three qmpcd daemons on loopback as child processes, from a fresh
 * `qmpc cluster init`: used by `npm run demo` and the integration tests.
 * Every wait is bounded; `stop()` sends SIGTERM and escalates to SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { DAEMON_NODE_OPTIONS } from '../daemon/node-options.ts';
import { mkdtempSync, rmSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusterInit, type ClusterLayout } from '../daemon/cluster-init.ts';
import { adminRequest } from '../daemon/admin/client.ts';
import { waitFor } from './wait-for.ts';

const CLI = new URL('../daemon/cli.ts', import.meta.url).pathname;

export interface LocalCluster {
  layout: ClusterLayout;
  dir: string;
  /** Party i's process, or null while it is stopped. */
  procs: (ChildProcess | null)[];
  /** Starts party i (again) and waits until its admin socket answers. */
  start(i: number, opts?: { env?: NodeJS.ProcessEnv }): Promise<void>;
  /** Waits until every running party reports both peers connected. */
  waitConnected(timeoutMs?: number): Promise<void>;
  admin(i: number, cmd: string, args?: Record<string, unknown>): Promise<unknown>;
  /** SIGTERM (or the given signal), then waits for exit; returns the exit code or signal. */
  stop(i: number, signal?: NodeJS.Signals): Promise<number | string | null>;
  close(): Promise<void>;
  logFile(i: number): string;
}

export interface LocalClusterOptions {
  basePort?: number;
  metricsBasePort?: number;
  dir?: string;
  /** Extra `--set key=value` for every daemon. */
  sets?: string[];
  keep?: boolean;
}


export async function startLocalCluster(opts: LocalClusterOptions = {}): Promise<LocalCluster> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'qmpc-cluster-'));
  const basePort = opts.basePort ?? 20_000 + Math.floor(Math.random() * 20_000);
  const layout = await clusterInit({ dir, basePort, metricsBasePort: opts.metricsBasePort ?? basePort + 100, force: true });
  const procs: (ChildProcess | null)[] = [null, null, null];
  const logFile = (i: number) => join(dir, `party-${i}`, 'daemon.log');
  const cluster: LocalCluster = {
    layout, dir, procs, logFile,
    async start(i, o = {}) {
      const args = [...DAEMON_NODE_OPTIONS, CLI, 'daemon', '--config', layout.configs[i], ...(opts.sets ?? []).flatMap((s) => ['--set', s])];
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
      const log = createWriteStream(logFile(i), { flags: 'a' });
      child.stdout!.pipe(log);
      child.stderr!.pipe(log);
      procs[i] = child;
      child.once('exit', () => {
        if (procs[i] === child) procs[i] = null;
      });
      await waitFor(`party ${i} admin socket`, 30_000, async () => {
        if (procs[i] !== child) throw new Error(`party ${i} exited during start-up; see ${logFile(i)}`);
        return adminRequest(layout.sockets[i], 'version', {}, { timeoutMs: 1000 });
      });
    },
    async waitConnected(timeoutMs = 30_000) {
      await Promise.all(procs.map((p, i) => p && waitFor(`party ${i} connected to both peers`, timeoutMs, async () => {
        const s = (await adminRequest(layout.sockets[i], 'status', {}, { timeoutMs: 1000 })) as { peersConnected: number[] };
        return s.peersConnected.length === 2 ? true : null;
      })));
    },
    admin: (i, cmd, args) => adminRequest(layout.sockets[i], cmd, args, { timeoutMs: 10_000 }),
    async stop(i, signal = 'SIGTERM') {
      const child = procs[i];
      if (!child) return null;
      const exited = new Promise<number | string | null>((r) => child.once('exit', (code, sig) => r(code ?? sig)));
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const how = await exited;
      clearTimeout(timer);
      return how;
    },
    async close() {
      await Promise.all([0, 1, 2].map((i) => cluster.stop(i)));
      if (!opts.keep && !opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all([0, 1, 2].map((i) => cluster.start(i)));
  } catch (e) {
    await cluster.close();
    throw e;
  }
  return cluster;
}
