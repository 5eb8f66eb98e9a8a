/**
 * The daemon's configuration: YAML keys in snake_case (as in the deployment
 * guide), validated by one schema. Every key has a default here, so an empty
 * file plus a committee is a working configuration; `config/defaults.yaml`
 * documents the same values for operators.
 */
import { z } from 'zod';
import { defaultMetricsOptions } from '../metrics/options.ts';

const seconds = (def: number) => z.number().positive().max(86_400).default(def);
const multiaddr = z.string().regex(/^\/(ip4|ip6|dns|dns4|dns6)\/[^/]+\/tcp\/\d+(\/p2p\/\w+)?$/, 'a TCP multiaddr such as /ip4/0.0.0.0/tcp/7400');
const peerId = z.string().regex(/^(12D3Koo[1-9A-HJ-NP-Za-km-z]{40,50}|Qm[1-9A-HJ-NP-Za-km-z]{44})$/, 'a libp2p peer id (12D3Koo…)');
const partyIndex = z.union([z.literal(0), z.literal(1), z.literal(2)]);

export const committeeMemberSchema = z.strictObject({
  index: partyIndex,
  peer_id: peerId,
  /** Addresses to dial (bootstrap); empty means "find by mDNS". */
  addrs: z.array(multiaddr).default([]),
  name: z.string().max(64).optional(),
});

export const configSchema = z.strictObject({
  party: z.strictObject({
    /** This daemon's index in the committee (0, 1 or 2). */
    index: partyIndex,
    name: z.string().min(1).max(64).optional(),
  }),
  identity: z.strictObject({
    /** Ed25519 private key (libp2p protobuf), 0600; relative paths are inside storage.state_dir. */
    key_file: z.string().min(1).default('identity.key'),
  }).prefault({}),
  committee: z.array(committeeMemberSchema).length(3, 'exactly 3 members (one per party index)'),
  network: z.strictObject({
    listen: z.array(multiaddr).min(1).default(['/ip4/0.0.0.0/tcp/7400']),
    bootstrap: z.array(multiaddr).default([]),
    mdns: z.strictObject({ enabled: z.boolean().default(true), service_tag: z.string().min(1).default('qmpc') }).prefault({}),
    connection_timeout: seconds(30),
    max_connections: z.number().int().positive().default(1000),
    /** Largest MPC frame accepted from a peer. */
    max_frame_bytes: z.number().int().min(1024).max(1 << 30).default(64 * 1024 * 1024 + 64),
    redial_min: seconds(1),
    redial_max: seconds(30),
  }).prefault({}),
  mpc: z.strictObject({
    protocol: z.literal('aby3').default('aby3'),
    parties: z.literal(3).default(3),
    /** Statistical/computational security parameter of the deployment (informational; AES-128 keys). */
    security_level: z.literal(128).default(128),
    frac_bits: z.number().int().min(0).max(30).default(16),
    backend: z.enum(['ort', 'js']).default('ort'),
    execution_provider: z.enum(['cpu', 'cuda']).default('cpu'),
    fallback_to_cpu: z.boolean().default(true),
    /** Seconds a party waits for one protocol message before the job fails. */
    round_timeout: seconds(30),
  }).prefault({}),
  scheduler: z.strictObject({
    max_concurrent_tasks: z.number().int().min(1).max(1024).default(8),
    /** Seconds a whole job may run. */
    task_timeout: seconds(300),
    /** Seconds the parties wait for each other to hold a submitted job. */
    admission_timeout: seconds(30),
    max_queued_tasks: z.number().int().min(0).default(256),
  }).prefault({}),
  limits: z.strictObject({
    /** Largest job request (header + share pair) accepted from a client. */
    max_request_bytes: z.number().int().min(1024).max(1 << 30).default(64 * 1024 * 1024),
    max_tensor_elements: z.number().int().positive().default(16 * 1024 * 1024),
  }).prefault({}),
  storage: z.strictObject({
    /** Durable state: database, identity key. systemd: /var/lib/qmpc ($STATE_DIRECTORY). */
    state_dir: z.string().min(1).default('/var/lib/qmpc'),
    /** Sockets. systemd: /run/qmpc ($RUNTIME_DIRECTORY). */
    runtime_dir: z.string().min(1).default('/run/qmpc'),
    /** Hours an unfetched job result is kept. */
    result_ttl_hours: z.number().positive().default(24),
  }).prefault({}),
  caching: z.strictObject({
    optimization_cache: z.strictObject({
      max_entries: z.number().int().min(0).default(1000),
      ttl_hours: z.number().positive().default(24),
    }).prefault({}),
    persistent_cache: z.strictObject({ enabled: z.boolean().default(true) }).prefault({}),
  }).prefault({}),
  admin: z.strictObject({
    /** Default: <runtime_dir>/admin.sock. */
    socket: z.string().min(1).optional(),
    mode: z.string().regex(/^0?[0-7]{3}$/, 'an octal file mode such as "0660"').default('0660'),
  }).prefault({}),
  metrics: z.strictObject({
    enabled: z.boolean().default(defaultMetricsOptions.enabled),
    host: z.string().min(1).default(defaultMetricsOptions.host),
    port: z.number().int().min(0).max(65_535).default(defaultMetricsOptions.port),
  }).prefault({}),
  logging: z.strictObject({
    level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
    format: z.enum(['auto', 'json', 'pretty']).default('auto'),
  }).prefault({}),
});

export type QmpcConfig = z.output<typeof configSchema>;
export type CommitteeMember = z.output<typeof committeeMemberSchema>;
