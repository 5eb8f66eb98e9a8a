/**
 * Boots a real systemd in a container (`systemd-nspawn -b` over the Debian
 * tree that scripts/build-nspawn-tree.sh caches) and drives it from outside
 * with `nsenter -t <container PID 1> -a …`: systemctl, journalctl, the qmpc
 * CLI. Every container boots with `--volatile=overlay` (the cached tree stays
 * read-only; each container writes into its own tmpfs), so several share one
 * tree and nothing survives a run.
 *
 * Everything is bounded: boots, commands (killed with SIGKILL past their
 * timeout) and shutdowns (SIGTERM to systemd-nspawn, which powers the
 * container off; then SIGKILL to the container's PID 1 and to nspawn).
 * Containers still running when the process exits are killed synchronously.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
export { waitFor } from '../../scripts/wait-for.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');
export const DEFAULT_TREE = process.env.QMPC_NSPAWN_TREE || '/var/cache/qmpc-test/bookworm';
const BUILD_SCRIPT = `${REPO_ROOT}/scripts/build-nspawn-tree.sh`;
const CONTAINER_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore', timeout: 5_000 }).status === 0;
}

function tail(s: string, lines = 8): string {
  return s.trim().split('\n').slice(-lines).join(' | ');
}

/**
 * Why containers cannot run here (a skip reason), or null once the tools are
 * there and the tree is built: needs root, systemd-nspawn, debootstrap,
 * nsenter and ip; missing packages are installed with apt-get when possible.
 */
export function nspawnPrerequisites(opts: { tree?: string; installTimeoutMs?: number; buildTimeoutMs?: number } = {}): { skip: string } | { tree: string; built: boolean; buildMs: number } {
  if (process.platform !== 'linux') return { skip: `systemd-nspawn is Linux-only (this is ${process.platform})` };
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return { skip: 'booting systemd containers needs root (run the tests as root to include this file)' };
  for (const tool of ['nsenter', 'ip', 'flock']) if (!have(tool)) return { skip: `\`${tool}\` is not installed` };
  if (!have('systemd-nspawn') || !have('debootstrap')) {
    if (!have('apt-get')) return { skip: 'systemd-nspawn or debootstrap is missing and there is no apt-get to install them (install systemd-container and debootstrap)' };
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const budget = opts.installTimeoutMs ?? 150_000;
    const t0 = Date.now();
    const install = () => spawnSync('apt-get', ['install', '-y', '-q', 'systemd-container', 'debootstrap'], { env, encoding: 'utf8', timeout: Math.max(1_000, budget - (Date.now() - t0)), killSignal: 'SIGKILL' });
    let r = install();
    if (r.status !== 0) {
      spawnSync('apt-get', ['update', '-q'], { env, stdio: 'ignore', timeout: Math.max(1_000, budget / 2 - (Date.now() - t0)), killSignal: 'SIGKILL' });
      r = install();
    }
    if (!have('systemd-nspawn') || !have('debootstrap')) {
      return { skip: `systemd-nspawn/debootstrap are missing and \`apt-get install systemd-container debootstrap\` failed: ${tail(`${r.stderr ?? ''}${r.error?.message ?? ''}`, 3)}` };
    }
  }
  const tree = opts.tree ?? DEFAULT_TREE;
  const t0 = Date.now();
  const r = spawnSync(BUILD_SCRIPT, [tree], { encoding: 'utf8', timeout: opts.buildTimeoutMs ?? 300_000, killSignal: 'SIGKILL' });
  if (r.status !== 0) {
    const why = r.error ? r.error.message : r.signal ? `killed by ${r.signal} (timeout)` : `exit ${r.status}`;
    return { skip: `cannot build the Debian tree at ${tree} (${BUILD_SCRIPT}: ${why}): ${tail(r.stderr ?? '', 4)}` };
  }
  // The script leaves a complete tree alone; a stamp younger than this call means it built one.
  let built = false;
  try {
    built = statSync(`${tree}/.qmpc-tree-complete`).mtimeMs >= t0 - 1_000;
  } catch {
    /* no stamp: treated as not built now */
  }
  if (!existsSync(`${tree}/sbin/init`) && !existsSync(`${tree}/usr/lib/systemd/systemd`)) return { skip: `${BUILD_SCRIPT} succeeded but ${tree} holds no systemd` };
  return { tree, built, buildMs: Date.now() - t0 };
}

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  input?: string;
  timeoutMs?: number;
  /** Resolve with a non-zero exit instead of rejecting. */
  allowFail?: boolean;
}

export interface JournalEntry {
  /** journald's receive time, µs since the epoch. */
  realtimeUs: number;
  pid: number | null;
  identifier: string | null;
  message: string;
  /** The daemon's own JSON log record (pino), when the message is one. */
  record: Record<string, unknown> | null;
}

export interface BootOptions {
  tree: string;
  /** Machine (and host) name. */
  name: string;
  netnsPath: string;
  /** host path → container path, read-only. */
  bindsRo: Record<string, string>;
  /** Where nspawn's console output goes. */
  logFile: string;
  timeoutMs?: number;
}

const live = new Set<NspawnContainer>();
const emergency = new Set<() => void>();
let exitHookInstalled = false;

function runEmergency(): void {
  for (const c of live) c.killNow();
  for (const fn of emergency) {
    try {
      fn();
    } catch {
      /* best effort */
    }
  }
  emergency.clear();
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', runEmergency);
  // A signal (tap's timeout) would skip 'exit' handlers: clean up, then die of the same signal.
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(sig, () => {
      runEmergency();
      process.kill(process.pid, sig);
    });
  }
}

/**
 * Registers a synchronous clean-up (e.g. deleting network namespaces) that runs
 * if the process exits or is killed by a signal before the normal teardown;
 * containers are killed first. Returns a function that unregisters it.
 */
export function onEmergencyCleanup(fn: () => void): () => void {
  installExitHook();
  emergency.add(fn);
  return () => emergency.delete(fn);
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function pidNs(pid: number | 'self'): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return null;
  }
}

export class NspawnContainer {
  readonly name: string;
  readonly logFile: string;
  private readonly proc: ChildProcess;
  private exited: Promise<void>;
  private hasExited = false;
  pid1 = 0;

  private constructor(name: string, logFile: string, proc: ChildProcess) {
    this.name = name;
    this.logFile = logFile;
    this.proc = proc;
    this.exited = new Promise((r) => proc.once('exit', () => {
      this.hasExited = true;
      live.delete(this);
      r();
    }));
  }

  /** Starts `systemd-nspawn -b` and waits (bounded) until the container's systemd reports the boot finished. */
  static async boot(o: BootOptions): Promise<NspawnContainer> {
    installExitHook();
    const args = [
      '-D', o.tree, '--register=no', '--keep-unit', '-b', '--volatile=overlay', `--machine=${o.name}`,
      `--network-namespace-path=${o.netnsPath}`, '--console=read-only',
      ...Object.entries(o.bindsRo).map(([h, c]) => `--bind-ro=${h}:${c}`),
    ];
    const log = openSync(o.logFile, 'a');
    // Several containers share the (read-only) tree: nspawn's image lock would admit only one.
    const proc = spawn('systemd-nspawn', args, { stdio: ['ignore', log, log], env: { ...process.env, SYSTEMD_NSPAWN_LOCK: '0' } });
    closeSync(log);
    const c = new NspawnContainer(o.name, o.logFile, proc);
    live.add(c);
    const deadline = Date.now() + (o.timeoutMs ?? 60_000);
    try {
      // PID 1 of the container: nspawn's child once it has exec'ed systemd in a new PID namespace.
      const ours = pidNs('self');
      while (!c.pid1) {
        if (c.hasExited) throw new Error(`systemd-nspawn exited during boot (code ${proc.exitCode}); see ${o.logFile}: ${tail(readFileSync(o.logFile, 'utf8'), 5)}`);
        if (Date.now() > deadline) throw new Error(`container ${o.name}: no systemd PID 1 within the boot timeout; see ${o.logFile}`);
        for (const pid of childrenOf(proc.pid!)) {
          try {
            if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'systemd' && pidNs(pid) !== ours) c.pid1 = pid;
          } catch {
            /* gone */
          }
        }
        if (!c.pid1) await sleep(50);
      }
      // The manager's private socket appears a moment after exec; is-system-running --wait then waits for the boot.
      for (;;) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`container ${o.name}: boot did not finish in time; see ${o.logFile}`);
        const r = await c.exec(['systemctl', 'is-system-running', '--wait'], { allowFail: true, timeoutMs: left });
        const state = r.stdout.trim();
        if (state === 'running' || state === 'degraded') break;
        if (c.hasExited) throw new Error(`container ${o.name} exited during boot; see ${o.logFile}`);
        await sleep(100);
      }
      return c;
    } catch (e) {
      await c.shutdown(5_000);
      throw e;
    }
  }

  /** Runs argv inside the container (all its namespaces, a clean environment). Rejects on a non-zero exit unless allowFail. */
  exec(argv: string[], o: ExecOptions = {}): Promise<ExecResult> {
    const full = ['-t', String(this.pid1), '-a', '--', 'env', '-i', `PATH=${CONTAINER_PATH}`, 'LANG=C.UTF-8', 'HOME=/root', ...argv];
    return new Promise((resolve, reject) => {
      const child = execFile('nsenter', full, { encoding: 'utf8', timeout: o.timeoutMs ?? 30_000, killSignal: 'SIGKILL', maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
        const e = err as (Error & { code?: number | string; signal?: string; killed?: boolean }) | null;
        const res: ExecResult = { code: e ? (typeof e.code === 'number' ? e.code : null) : 0, signal: e?.signal ?? null, stdout, stderr };
        if (e && e.killed) return reject(new Error(`${this.name}: \`${argv.join(' ')}\` did not finish within ${o.timeoutMs ?? 30_000} ms`));
        if (e && (!o.allowFail || res.code === null)) {
          return reject(new Error(`${this.name}: \`${argv.join(' ')}\` failed (${res.code ?? res.signal ?? e.message}): ${tail(stderr || stdout, 6)}`));
        }
        resolve(res);
      });
      if (o.input !== undefined) child.stdin!.end(o.input);
      else child.stdin!.end();
    });
  }

  /** `sh -c SCRIPT` inside; stdout. */
  async sh(script: string, o: ExecOptions = {}): Promise<string> {
    return (await this.exec(['sh', '-c', script], o)).stdout;
  }

  /** Writes a file inside the container (keeps owner and mode of an existing one). */
  async writeFile(path: string, content: string): Promise<void> {
    await this.exec(['sh', '-c', 'cat > "$1"', 'sh', path], { input: content });
  }

  /** `systemctl show UNIT -p …` as an object (timestamps with µs, UTC). */
  async show(unit: string, props: string[]): Promise<Record<string, string>> {
    const out = (await this.exec(['systemctl', 'show', unit, '--timestamp=us+utc', '-p', props.join(',')])).stdout;
    const o: Record<string, string> = {};
    for (const line of out.split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) o[line.slice(0, eq)] = line.slice(eq + 1);
    }
    return o;
  }

  /** The unit's journal, oldest first; `sinceUs` drops older entries. */
  async journal(unit: string, sinceUs = 0): Promise<JournalEntry[]> {
    const out = (await this.exec(['journalctl', '-u', unit, '-o', 'json', '--no-pager', '--output-fields=MESSAGE,_PID,SYSLOG_IDENTIFIER'], { timeoutMs: 20_000 })).stdout;
    const entries: JournalEntry[] = [];
    for (const line of out.split('\n')) {
      if (!line.trim()) continue;
      let j: Record<string, unknown>;
      try {
        j = JSON.parse(line);
      } catch {
        continue;
      }
      const realtimeUs = Number(j.__REALTIME_TIMESTAMP);
      if (realtimeUs < sinceUs) continue;
      const m = j.MESSAGE;
      const message = typeof m === 'string' ? m : Array.isArray(m) ? Buffer.from(m as number[]).toString('utf8') : '';
      let record: Record<string, unknown> | null = null;
      if (message.startsWith('{')) {
        try {
          record = JSON.parse(message);
        } catch {
          /* not JSON */
        }
      }
      entries.push({ realtimeUs, pid: j._PID ? Number(j._PID) : null, identifier: typeof j.SYSLOG_IDENTIFIER === 'string' ? j.SYSLOG_IDENTIFIER : null, message, record });
    }
    return entries;
  }

  /** Powers the container off (SIGTERM to nspawn), then kills what is left after timeoutMs. */
  async shutdown(timeoutMs = 15_000): Promise<void> {
    if (this.hasExited) return;
    try {
      this.proc.kill('SIGTERM');
    } catch {
      /* gone */
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([this.exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs)))]);
    clearTimeout(timer);
    if (timedOut) {
      this.killNow();
      await Promise.race([this.exited, sleep(5_000)]);
    }
  }

  /** SIGKILL to the container's PID 1 (which takes its whole PID namespace) and to nspawn. Synchronous. */
  killNow(): void {
    for (const pid of [this.pid1, this.proc.pid]) {
      if (!pid) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    live.delete(this);
  }
}

/** Parses systemd's "Thu 2026-12-03 15:28:55.491070 UTC" (from --timestamp=us+utc) into µs since the epoch; NaN if unset. */
export function parseSystemdTimestampUs(s: string | undefined): number {
  const m = /(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})\.(\d{6}) UTC$/.exec(s ?? '');
  if (!m) return NaN;
  return Date.parse(`${m[1]}T${m[2]}Z`) * 1000 + Number(m[3]);
}

