/**
 * Helpers for test/daemon.test.ts: free ports, the CLI as a child process with
 * a deadline, bounded polling, HTTP scrapes and plaintext references for the
 * job kinds. Nothing here waits without a limit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { DAEMON_NODE_OPTIONS } from '../../daemon/node-options.ts';
import { createServer } from 'node:net';
import { softmaxRows } from './float-reference.ts';
import { uniform } from './three-parties.ts';
export { waitFor } from '../../scripts/wait-for.ts';

export const CLI = new URL('../../daemon/cli.ts', import.meta.url).pathname;

/** Resolves true when 127.0.0.1:port can be bound right now. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** A random base port whose cluster ports (base+0..2) and metrics ports (base+100..102) are all free. */
export async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 25_000);
    const ports = [0, 1, 2, 100, 101, 102].map((d) => base + d);
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
  throw new Error('no free base port found in 50 attempts');
}

/** A port the kernel calls free now (bound to 0, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Children started by runCli that have not exited yet (killed by killStrays). */
const live = new Set<ChildProcess>();

/** Runs `node daemon/cli.ts ARGS…`; SIGKILLs it after timeoutMs (the result then has signal SIGKILL). */
export function runCli(args: string[], timeoutMs = 30_000): Promise<CliResult> {
  const started = performance.now();
  const child = spawn(process.execPath, [...DAEMON_NODE_OPTIONS, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let stdout = '', stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve, reject) => {
    child.once('error', (e) => {
      clearTimeout(timer);
      live.delete(child);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started });
    });
  });
}

/** SIGKILLs every runCli child still running (teardown, and process exit as a last resort). */
export function killStrays(): void {
  for (const c of live) c.kill('SIGKILL');
  live.clear();
}


export interface HttpReply {
  status: number;
  contentType: string;
  body: string;
}

export async function httpGet(url: string, timeoutMs = 5_000): Promise<HttpReply> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', body: await res.text() };
}

/**
 * The samples of one metric in a Prometheus text exposition, as
 * [labels, value] pairs ({} for an unlabelled sample).
 */
export function samples(text: string, name: string): [Record<string, string>, number][] {
  const out: [Record<string, string>, number][] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push([labels, Number(m[4])]);
  }
  return out;
}

/** The sum of all samples of a metric (0 when it has none). */
export function metricSum(text: string, name: string, match: Record<string, string> = {}): number {
  return samples(text, name)
    .filter(([l]) => Object.entries(match).every(([k, v]) => l[k] === v))
    .reduce((s, [, v]) => s + v, 0);
}

export interface MatmulSoftmaxCase {
  m: number;
  k: number;
  n: number;
  x: Float64Array;
  w: Float64Array;
  /** softmax(x @ w) in float64, row-major [m, n]. */
  want: Float64Array;
}

export function matmulSoftmaxCase(m: number, k: number, n: number, seed: number): MatmulSoftmaxCase {
  const x = uniform(m * k, -2, 2, seed);
  const w = uniform(k * n, -1, 1, seed + 1000);
  const prod = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let q = 0; q < k; q++) prod[i * n + j] += x[i * k + q] * w[q * n + j];
  return { m, k, n, x, w, want: softmaxRows(prod, n) };
}

/** Row means and population variances of a row-major [rows, cols] array. */
export function meanVariance(x: Float64Array, cols: number): { mean: Float64Array; variance: Float64Array } {
  const rows = x.length / cols;
  const mean = new Float64Array(rows), variance = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * cols, (r + 1) * cols);
    mean[r] = row.reduce((a, b) => a + b, 0) / cols;
    variance[r] = row.reduce((a, b) => a + (b - mean[r]) ** 2, 0) / cols;
  }
  return { mean, variance };
}

/** The largest |got - want| (Infinity when the lengths differ or a value is not finite). */
export function maxAbsDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!Number.isFinite(d)) return Infinity;
    worst = Math.max(worst, d);
  }
  return worst;
}
