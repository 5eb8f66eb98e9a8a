#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * `qmpc`: the command line. This layer owns argument parsing, the process's
 * signals and exit codes; the subsystems are built by PartyNode (node.ts).
 *
 * Exit codes: 0 ok, 1 failure, 64 usage, 65 bad data, 69 a peer or daemon
 * unavailable, 73 cannot create a file or socket, 74 I/O, 75 state in use,
 * 77 key file permissions, 78 configuration (see errors.ts).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXIT, UsageError, exitCodeOf } from './errors.ts';
import { VERSION } from './version.ts';

interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  run(values: Record<string, unknown>, positionals: string[]): Promise<number>;
}

const help = { help: { type: 'boolean', short: 'h' } } as const;

const COMMANDS: Record<string, Command> = {
  daemon: {
    summary: 'run the party daemon (qmpcd) in the foreground',
    usage: `qmpc daemon --config FILE [--set section.key=value]... [--log-level LEVEL]

  Runs until SIGTERM/SIGINT (graceful; a second signal forces exit).
  SIGHUP reloads what can change live (logging level, limits).
  Under systemd (Type=notify) it reports READY=1, STATUS=, WATCHDOG=1, STOPPING=1.`,
    options: { ...help, config: { type: 'string', short: 'c' }, set: { type: 'string', multiple: true }, 'log-level': { type: 'string' } },
    async run(v) {
      if (!v.config) throw new UsageError('qmpc daemon needs --config FILE');
      const { runDaemon } = await import('./run-daemon.ts');
      return runDaemon({ configFile: v.config as string, sets: (v.set as string[]) ?? [], logLevel: v['log-level'] as string | undefined });
    },
  },
  keygen: {
    summary: 'create a party identity key (Ed25519, 0600) and print its peer id',
    usage: 'qmpc keygen --out FILE [--force]',
    options: { ...help, out: { type: 'string', short: 'o' }, force: { type: 'boolean' } },
    async run(v) {
      if (!v.out) throw new UsageError('qmpc keygen needs --out FILE');
      const { generateIdentityFile } = await import('./identity.ts');
      const id = await generateIdentityFile(v.out as string, { force: v.force === true });
      process.stdout.write(`${id.peerId}\n`);
      return EXIT.ok;
    },
  },
  cluster: {
    summary: 'cluster init: keys and configs for three local parties',
    usage: `qmpc cluster init --dir DIR [--parties 3] [--base-port 7400] [--metrics-base-port 9464] [--force]

  Writes DIR/party-{0,1,2}/config.yaml with state and runtime directories, and
  DIR/cluster.yaml (the committee, for clients).`,
    options: { ...help, dir: { type: 'string' }, parties: { type: 'string', default: '3' }, 'base-port': { type: 'string', default: '7400' }, 'metrics-base-port': { type: 'string', default: '9464' }, force: { type: 'boolean' } },
    async run(v, pos) {
      if (pos[0] !== 'init') throw new UsageError(`qmpc cluster: unknown action ${JSON.stringify(pos[0] ?? '')}; expected "init"`);
      if (!v.dir) throw new UsageError('qmpc cluster init needs --dir DIR');
      const { clusterInit } = await import('./cluster-init.ts');
      const layout = await clusterInit({
        dir: v.dir as string, parties: int(v.parties, '--parties'), basePort: int(v['base-port'], '--base-port'),
        metricsBasePort: int(v['metrics-base-port'], '--metrics-base-port'), force: v.force === true,
      });
      for (const m of layout.committee) process.stdout.write(`party ${m.index}  ${m.peer_id}  ${m.addrs.join(' ')}  ${layout.configs[m.index]}\n`);
      return EXIT.ok;
    },
  },
  admin: {
    summary: 'query a running daemon through its admin socket',
    usage: `qmpc admin CMD [NAME=VALUE | NAME:=JSON]... (--socket PATH | --config FILE) [--json] [--timeout MS]

  CMD is any command the daemon lists under "help": help, version, status,
  peers, jobs [state=done] [limit:=10], job id=ID, config, store-stats, …
  NAME=VALUE passes a string, NAME:=JSON a number, boolean or list.`,
    options: { ...help, socket: { type: 'string', short: 's' }, config: { type: 'string', short: 'c' }, json: { type: 'boolean' }, timeout: { type: 'string', default: '10000' } },
    async run(v, pos) {
      const [cmd, ...rest] = pos;
      if (!cmd) throw new UsageError('qmpc admin needs a command; try: qmpc admin help --socket PATH');
      const socket = await adminSocketPath(v);
      const args = Object.fromEntries(rest.map(parseAdminArg));
      const { adminRequest } = await import('./admin/client.ts');
      const result = await adminRequest(socket, cmd, args, { timeoutMs: int(v.timeout, '--timeout') });
      if (v.json) process.stdout.write(JSON.stringify(result) + '\n');
      else {
        const { formatReply } = await import('./admin/format.ts');
        process.stdout.write(formatReply(cmd, result) + '\n');
      }
      return EXIT.ok;
    },
  },
  run: {
    summary: 'submit a job to the three parties as a client and print the reconstructed result',
    usage: `qmpc run --cluster FILE --kind KIND --input NAME=FILE.json... [--json] [--timeout S]

  Each input file holds {"shape": [..], "values": [..]}; values are secret-shared
  here and never sent in plaintext. Kinds: matmul-softmax (x, w), mean-variance (x).`,
    options: { ...help, cluster: { type: 'string' }, kind: { type: 'string' }, input: { type: 'string', multiple: true }, json: { type: 'boolean' }, timeout: { type: 'string', default: '300' } },
    async run(v) {
      if (!v.cluster || !v.kind) throw new UsageError('qmpc run needs --cluster FILE and --kind KIND');
      const inputs = ((v.input as string[]) ?? []).map((spec) => {
        const eq = spec.indexOf('=');
        if (eq <= 0) throw new UsageError(`--input ${JSON.stringify(spec)} is not NAME=FILE`);
        const name = spec.slice(0, eq), file = spec.slice(eq + 1);
        let doc: { shape?: unknown; values?: unknown };
        try {
          doc = JSON.parse(readFileSync(file, 'utf8'));
        } catch (e) {
          throw new UsageError(`--input ${name}: cannot read ${file} as JSON: ${(e as Error).message}`);
        }
        if (!Array.isArray(doc.shape) || !Array.isArray(doc.values) || !doc.values.every((x) => typeof x === 'number' && Number.isFinite(x))) {
          throw new UsageError(`--input ${name}: ${file} must hold {"shape": [..], "values": [finite numbers]}`);
        }
        return { name, shape: doc.shape as number[], values: doc.values as number[] };
      });
      const { runClientJob } = await import('./client/run-job.ts');
      const outputs = await runClientJob({ clusterFile: v.cluster as string, kind: v.kind as string, inputs, timeoutMs: int(v.timeout, '--timeout') * 1000, progress: !v.json });
      if (v.json) process.stdout.write(JSON.stringify(outputs.map((o) => ({ ...o, values: [...o.values] }))) + '\n');
      else for (const o of outputs) process.stdout.write(`${o.name} [${o.shape.join('×')}]: ${[...o.values].map((x) => x.toFixed(4)).join(' ')}\n`);
      return EXIT.ok;
    },
  },
  version: {
    summary: 'print the version',
    usage: 'qmpc version',
    options: help,
    async run() {
      process.stdout.write(`qmpc ${VERSION}\n`);
      return EXIT.ok;
    },
  },
};

/** NAME=VALUE passes a string (a job id stays a string even when it is all digits); NAME:=JSON passes a number, boolean, list… */
function parseAdminArg(kv: string): [string, unknown] {
  const m = /^([a-z][a-z0-9_-]*)(:?)=(.*)$/s.exec(kv);
  if (!m) throw new UsageError(`admin argument ${JSON.stringify(kv)} is not NAME=VALUE or NAME:=JSON`);
  if (!m[2]) return [m[1], m[3]];
  try {
    return [m[1], JSON.parse(m[3])];
  } catch {
    throw new UsageError(`admin argument ${m[1]}: ${JSON.stringify(m[3])} is not JSON`);
  }
}

function int(v: unknown, flag: string): number {
  const n = Number(v);
  if (typeof v !== 'string' || !/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new UsageError(`${flag} expects a whole number, got ${JSON.stringify(v)}`);
  return n;
}

async function adminSocketPath(v: Record<string, unknown>): Promise<string> {
  if (v.socket) return v.socket as string;
  if (v.config) {
    const { loadConfig } = await import('./config/load.ts');
    const c = loadConfig({ file: v.config as string });
    return c.admin.socket ?? join(c.storage.runtime_dir, 'admin.sock');
  }
  if (process.env.RUNTIME_DIRECTORY) return join(process.env.RUNTIME_DIRECTORY, 'admin.sock');
  return '/run/qmpc/admin.sock';
}

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return `qmpc ${VERSION}: three-party secure transformer inference\n\nUsage: qmpc COMMAND [options]   (qmpc COMMAND --help for details)\n\n${Object.entries(COMMANDS)
    .map(([k, c]) => `  ${k.padEnd(width)}  ${c.summary}`)
    .join('\n')}\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? EXIT.ok : EXIT.usage;
  }
  const cmd = COMMANDS[name];
  try {
    if (!cmd) throw new UsageError(`unknown command ${JSON.stringify(name)}; commands: ${Object.keys(COMMANDS).join(', ')}`);
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: cmd.options, allowPositionals: true, strict: true });
    } catch (e) {
      throw new UsageError(`${(e as Error).message.replace(/\. To specify a positional.*$/s, '')}\nusage: ${cmd.usage.split('\n')[0]}`);
    }
    if (parsed.values.help) {
      process.stdout.write(`usage: ${cmd.usage}\n`);
      return EXIT.ok;
    }
    return await cmd.run(parsed.values, parsed.positionals);
  } catch (e) {
    const err = e as Error & { code?: string };
    process.stderr.write(`qmpc ${name}: ${err.message}${err.code && !(e instanceof UsageError) ? ` [${err.code}]` : ''}\n`);
    return exitCodeOf(e);
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
