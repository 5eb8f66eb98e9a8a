/**
 * Building the effective configuration: defaults (in the schema) < systemd's
 * directory variables < YAML file < environment (QMPC_SECTION__KEY and the
 * deployment guide's names) < command-line `--set section.key=value`.
 * Every error names the key path, what was expected and what was found.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { configSchema, type QmpcConfig } from './schema.ts';

export interface LoadOptions {
  /** YAML file; relative paths inside it resolve against its directory. */
  file?: string;
  /** Environment to read overrides from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** `section.key=value` overrides, value parsed as a YAML scalar. */
  sets?: readonly string[];
  /** Values placed over everything (for tests and the CLI's own flags). */
  overrides?: Record<string, unknown>;
}

/** The deployment guide's environment variables that mean something here. */
export const ENV_ALIASES: Record<string, string> = {
  MAX_CONCURRENT_TASKS: 'scheduler.max_concurrent_tasks',
  SECURITY_LEVEL: 'mpc.security_level',
  METRICS_ENABLED: 'metrics.enabled',
  CACHE_DIR: 'storage.state_dir',
  PERSISTENT_CACHE_ENABLED: 'caching.persistent_cache.enabled',
  GPU_ACCELERATION: 'mpc.execution_provider',
};

type Tree = Record<string, unknown>;

function isTree(v: unknown): v is Tree {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function setPath(tree: Tree, path: string, value: unknown, source: string): void {
  const keys = path.split('.');
  if (keys.some((k) => !/^[a-z][a-z0-9_]*$/.test(k))) throw new ConfigError(`${source}: "${path}" is not a key path like section.key`);
  let node = tree;
  for (const k of keys.slice(0, -1)) {
    if (!isTree(node[k])) node[k] = {};
    node = node[k] as Tree;
  }
  node[keys[keys.length - 1]] = value;
}

function scalar(text: string, source: string): unknown {
  try {
    return parseYaml(text);
  } catch (e) {
    throw new ConfigError(`${source}: cannot parse value ${JSON.stringify(text)}: ${(e as Error).message}`);
  }
}

function readYaml(file: string): Tree {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true });
  } catch (e) {
    const where = e instanceof YAMLParseError && e.linePos ? ` (line ${e.linePos[0].line}, column ${e.linePos[0].col})` : '';
    throw new ConfigError(`config file ${file} is not valid YAML${where}: ${(e as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (!isTree(doc)) throw new ConfigError(`config file ${file}: expected a mapping of sections at the top level, found ${describe(doc)}`);
  return doc;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 60 ? v.slice(0, 57) + '…' : v)}`;
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${String(v)}`;
}

function formatIssue(issue: z.core.$ZodIssue, input: unknown): string {
  const path = issue.path.map(String).join('.') || '(top level)';
  let found: unknown = input;
  for (const k of issue.path) found = isTree(found) || Array.isArray(found) ? (found as Tree)[k as string] : undefined;
  switch (issue.code) {
    case 'unrecognized_keys':
      return `${path === '(top level)' ? '' : path + '.'}${issue.keys.join(', ')}: unknown key${issue.keys.length > 1 ? 's' : ''} (check the spelling against config/defaults.yaml)`;
    case 'invalid_type':
      return found === undefined ? `${path}: required (${issue.expected}) but missing` : `${path}: expected ${issue.expected}, found ${describe(found)}`;
    default:
      return `${path}: ${issue.message.replace(/^Invalid input: /, '')}; found ${describe(found)}`;
  }
}

/** Validates a raw tree; throws ConfigError listing every problem. */
export function validateConfig(raw: unknown, source = 'config'): QmpcConfig {
  const r = configSchema.safeParse(raw);
  if (!r.success) {
    const lines = r.error.issues.map((i) => '  ' + formatIssue(i, raw));
    throw new ConfigError(`invalid ${source}:\n${lines.join('\n')}`);
  }
  const c = r.data;
  const indices = c.committee.map((m) => m.index).sort();
  if (indices.join() !== '0,1,2') throw new ConfigError(`invalid ${source}: committee: expected one member for each index 0, 1, 2, found indices ${indices.join(', ')}`);
  const ids = new Set(c.committee.map((m) => m.peer_id));
  if (ids.size !== 3) throw new ConfigError(`invalid ${source}: committee: peer ids must be distinct`);
  if (c.network.redial_min > c.network.redial_max) {
    throw new ConfigError(`invalid ${source}: network.redial_min (${c.network.redial_min}) must not exceed network.redial_max (${c.network.redial_max})`);
  }
  return c;
}

export function loadConfig(opts: LoadOptions = {}): QmpcConfig {
  const env = opts.env ?? process.env;
  const tree: Tree = {};
  // systemd's directories are defaults the file may still override.
  if (env.STATE_DIRECTORY) setPath(tree, 'storage.state_dir', env.STATE_DIRECTORY.split(':')[0], 'STATE_DIRECTORY');
  if (env.RUNTIME_DIRECTORY) setPath(tree, 'storage.runtime_dir', env.RUNTIME_DIRECTORY.split(':')[0], 'RUNTIME_DIRECTORY');
  if (opts.file) {
    const doc = readYaml(opts.file);
    mergeInto(tree, doc);
    resolvePaths(tree, dirname(resolve(opts.file)));
  }
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue;
    if (name.startsWith('QMPC_') && name.includes('__')) {
      const path = name.slice(5).toLowerCase().split('__').join('.');
      setPath(tree, path, scalar(value, `environment ${name}`), `environment ${name}`);
    } else if (name in ENV_ALIASES) {
      let v = scalar(value, `environment ${name}`);
      if (name === 'GPU_ACCELERATION') v = v === true ? 'cuda' : v === false ? 'cpu' : v;
      setPath(tree, ENV_ALIASES[name], v, `environment ${name}`);
    }
  }
  for (const s of opts.sets ?? []) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--set ${JSON.stringify(s)}: expected section.key=value`);
    setPath(tree, s.slice(0, eq), scalar(s.slice(eq + 1), `--set ${s}`), `--set ${s}`);
  }
  if (opts.overrides) mergeInto(tree, opts.overrides);
  return validateConfig(tree, opts.file ? `config (${opts.file} with overrides)` : 'config');
}

function mergeInto(target: Tree, src: Tree): void {
  for (const [k, v] of Object.entries(src)) {
    if (isTree(v) && isTree(target[k])) mergeInto(target[k] as Tree, v);
    else target[k] = v;
  }
}

/** Paths in the file are relative to the file, so a cluster directory can be moved as a whole. */
function resolvePaths(tree: Tree, base: string): void {
  const storage = tree.storage;
  if (isTree(storage)) {
    for (const k of ['state_dir', 'runtime_dir']) {
      if (typeof storage[k] === 'string' && !isAbsolute(storage[k] as string)) storage[k] = resolve(base, storage[k] as string);
    }
  }
  const admin = tree.admin;
  if (isTree(admin) && typeof admin.socket === 'string' && !isAbsolute(admin.socket)) admin.socket = resolve(base, admin.socket);
}

const SECRET_KEY = /(secret|password|token|private)/i;

/** The configuration as the `config` admin command shows it: values under secret-looking keys masked. */
export function redactConfig(c: QmpcConfig): unknown {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (isTree(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, SECRET_KEY.test(k) ? '[redacted]' : walk(x)]));
    return v;
  };
  return walk(c);
}
