/**
 * Options of the party network (libp2p node and MPC transport). The YAML
 * loader and the CLI take their defaults from here (`network.*` keys);
 * `resolveNetworkOptions` fills in defaults and names the key path of any
 * value it refuses.
 */
import { multiaddr } from '@multiformats/multiaddr';
import { peerIdFromString } from '@libp2p/peer-id';
import { ConfigError } from '../errors.ts';
import type { PartyIndex } from '../../protocols/transport.ts';
import { FRAME_HEADER_BYTES, MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES } from './constants.ts';

export interface CommitteeMemberOptions {
  index: PartyIndex;
  /** libp2p peer id (12D3Koo…). */
  peerId: string;
  /** Multiaddrs to dial; empty or absent: found through mDNS, bootstrap or identify. */
  addrs?: string[];
}

export interface MdnsOptions {
  enabled: boolean;
  /** Only daemons announcing the same tag discover each other. */
  serviceTag: string;
  /** Milliseconds between mDNS queries. */
  intervalMs: number;
}

/**
 * Yamux knobs that decide bulk throughput (see scripts/bench-net.ts). Only the
 * window *maximum* is raised: the initial window is fixed by the Yamux spec
 * and peers that are not ours (clients) rely on it.
 */
export interface MuxerOptions {
  /** Largest receive window a stream may grow to (bytes in flight per stream). */
  maxStreamWindowSize: number;
  /**
   * Bytes a stream may hold while nobody reads it (before our handler attaches
   * its listener): must exceed the window, or a fast sender gets the stream reset.
   */
  maxReadBufferLength: number;
}

export interface NetworkOptions {
  /** Multiaddrs to listen on. */
  listen: string[];
  /** Extra peers (multiaddrs with /p2p/<id>) to dial at start for discovery. */
  bootstrap: string[];
  mdns: MdnsOptions;
  /** The three parties (this node among them, found by its peer id). */
  committee: CommitteeMemberOptions[];
  /**
   * Refuse connections from peers outside the committee at the connection
   * level. Off by default: clients connect to submit jobs on /qmpc/job/1; the
   * MPC protocol is committee-only either way.
   */
  refuseNonCommittee: boolean;
  /** A dial or stream open that takes longer fails. */
  dialTimeoutMs: number;
  /** Default receive timeout of an MPC session (the engine may pass its own per wait). */
  recvTimeoutMs: number;
  /** Redial backoff towards committee peers: first delay, doubled per failure up to the max. */
  redialMinMs: number;
  redialMaxMs: number;
  /** Largest frame (header included) sent or accepted on /qmpc/mpc/1. */
  maxFrameBytes: number;
  /** Messages that arrive for a session not opened here yet are held up to these bounds, then refused. */
  maxEarlyBytes: number;
  maxEarlySessions: number;
  /** Held messages of a session nobody opens are dropped after this long. */
  earlySessionTtlMs: number;
  /** A peer that accepts none of our queued bytes for this long has its MPC stream aborted. */
  writeStallTimeoutMs: number;
  muxer: MuxerOptions;
}

export const defaultNetworkOptions: Readonly<NetworkOptions> = Object.freeze({
  listen: ['/ip4/0.0.0.0/tcp/7400'],
  bootstrap: [],
  mdns: Object.freeze({ enabled: true, serviceTag: 'qmpc', intervalMs: 10_000 }),
  committee: [],
  refuseNonCommittee: false,
  dialTimeoutMs: 10_000,
  recvTimeoutMs: 30_000,
  redialMinMs: 1_000,
  redialMaxMs: 30_000,
  maxFrameBytes: MAX_FRAME_BYTES,
  maxEarlyBytes: 256 * 1024 * 1024,
  maxEarlySessions: 1024,
  earlySessionTtlMs: 60_000,
  writeStallTimeoutMs: 60_000,
  muxer: Object.freeze({
    maxStreamWindowSize: 16 * 1024 * 1024,
    maxReadBufferLength: 2 * (MAX_FRAME_BYTES + 16 * 1024 * 1024),
  }),
}) as Readonly<NetworkOptions>;

export type NetworkOptionsInput = Partial<Omit<NetworkOptions, 'mdns' | 'muxer'>> & {
  mdns?: Partial<MdnsOptions>;
  muxer?: Partial<MuxerOptions>;
};

/** Defaults filled in and every value checked; errors name the key path (`network.committee[1].peerId`). */
export function resolveNetworkOptions(input: NetworkOptionsInput = {}): NetworkOptions {
  const d = defaultNetworkOptions;
  const o: NetworkOptions = {
    ...d,
    ...stripUndefined(input),
    mdns: { ...d.mdns, ...stripUndefined(input.mdns ?? {}) },
    muxer: { ...d.muxer, ...stripUndefined(input.muxer ?? {}) },
    listen: [...(input.listen ?? d.listen)],
    bootstrap: [...(input.bootstrap ?? d.bootstrap)],
    committee: (input.committee ?? d.committee).map((m) => ({ ...m, addrs: m.addrs ? [...m.addrs] : [] })),
  };
  checkAddrs('network.listen', o.listen, false);
  checkAddrs('network.bootstrap', o.bootstrap, true);
  checkCommittee(o.committee);
  if (typeof o.mdns.enabled !== 'boolean') fail('network.mdns.enabled', 'a boolean', o.mdns.enabled);
  if (typeof o.mdns.serviceTag !== 'string' || !/^[A-Za-z0-9_.-]{1,255}$/.test(o.mdns.serviceTag)) fail('network.mdns.serviceTag', 'a DNS name of letters, digits, ".", "-" or "_"', o.mdns.serviceTag);
  positiveInt('network.mdns.intervalMs', o.mdns.intervalMs);
  if (typeof o.refuseNonCommittee !== 'boolean') fail('network.refuseNonCommittee', 'a boolean', o.refuseNonCommittee);
  for (const k of ['dialTimeoutMs', 'recvTimeoutMs', 'redialMinMs', 'redialMaxMs', 'maxEarlySessions', 'earlySessionTtlMs', 'writeStallTimeoutMs'] as const) positiveInt(`network.${k}`, o[k]);
  if (o.redialMaxMs < o.redialMinMs) fail('network.redialMaxMs', `at least redialMinMs (${o.redialMinMs})`, o.redialMaxMs);
  positiveInt('network.maxFrameBytes', o.maxFrameBytes);
  if (o.maxFrameBytes < MIN_MAX_FRAME_BYTES || o.maxFrameBytes > 2 ** 32) fail('network.maxFrameBytes', `an integer in [${MIN_MAX_FRAME_BYTES}, 2^32]`, o.maxFrameBytes);
  if (!Number.isInteger(o.maxEarlyBytes) || o.maxEarlyBytes < 0) fail('network.maxEarlyBytes', 'a non-negative integer', o.maxEarlyBytes);
  positiveInt('network.muxer.maxStreamWindowSize', o.muxer.maxStreamWindowSize);
  if (o.muxer.maxStreamWindowSize < 256 * 1024 || o.muxer.maxStreamWindowSize > 2 ** 32 - 1) fail('network.muxer.maxStreamWindowSize', 'an integer in [256 KiB, 2^32 - 1] (Yamux starts every stream at 256 KiB)', o.muxer.maxStreamWindowSize);
  positiveInt('network.muxer.maxReadBufferLength', o.muxer.maxReadBufferLength);
  if (o.muxer.maxReadBufferLength < o.muxer.maxStreamWindowSize + FRAME_HEADER_BYTES) fail('network.muxer.maxReadBufferLength', `at least maxStreamWindowSize (${o.muxer.maxStreamWindowSize})`, o.muxer.maxReadBufferLength);
  return o;
}

function stripUndefined<T extends object>(x: T): Partial<T> {
  return Object.fromEntries(Object.entries(x).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function fail(key: string, expected: string, found: unknown): never {
  let shown: string;
  try {
    shown = JSON.stringify(found) ?? String(found);
  } catch {
    shown = String(found);
  }
  throw new ConfigError(`${key}: expected ${expected}, found ${shown}`);
}

function positiveInt(key: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(key, 'a positive integer', v);
}

function checkAddrs(key: string, addrs: unknown, needPeerId: boolean): void {
  if (!Array.isArray(addrs)) fail(key, 'an array of multiaddrs', addrs);
  addrs.forEach((a, i) => {
    if (typeof a !== 'string') fail(`${key}[${i}]`, 'a multiaddr string', a);
    try {
      const ma = multiaddr(a);
      if (needPeerId && ma.getComponents().every((c) => c.name !== 'p2p')) fail(`${key}[${i}]`, 'a multiaddr ending in /p2p/<peer id>', a);
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      fail(`${key}[${i}]`, 'a multiaddr such as /ip4/10.0.0.1/tcp/7400', a);
    }
  });
}

function checkCommittee(committee: CommitteeMemberOptions[]): void {
  if (!Array.isArray(committee)) fail('network.committee', 'an array of {index, peerId, addrs?}', committee);
  if (committee.length !== 3) fail('network.committee', 'exactly 3 members (one per party index)', `${committee.length} members`);
  const seenIndex = new Set<number>(), seenPeer = new Set<string>();
  committee.forEach((m, i) => {
    const key = `network.committee[${i}]`;
    if (m.index !== 0 && m.index !== 1 && m.index !== 2) fail(`${key}.index`, '0, 1 or 2', m.index);
    if (seenIndex.has(m.index)) fail(`${key}.index`, 'an index no other member has', m.index);
    seenIndex.add(m.index);
    try {
      peerIdFromString(m.peerId);
    } catch {
      fail(`${key}.peerId`, 'a libp2p peer id (12D3Koo…)', m.peerId);
    }
    if (seenPeer.has(m.peerId)) fail(`${key}.peerId`, 'a peer id no other member has', m.peerId);
    seenPeer.add(m.peerId);
    checkAddrs(`${key}.addrs`, m.addrs ?? [], false);
  });
}

/**
 * The metrics the network reports, as a structural subset of the daemon's
 * metrics object (daemon/metrics) so this module does not depend on it.
 */
export interface NetworkMetrics {
  /** Committee members with a live connection (0–2). */
  peersConnected?: { set(value: number): void };
  peersRefused?: { inc(labels: { reason: 'not_in_committee' }, value?: number): void };
  securityThreats?: { inc(labels: { kind: 'malformed_frame' | 'oversize_frame' | 'unknown_session' }, value?: number): void };
  mpcBytesSent?: { inc(labels: { peer: string }, value?: number): void };
  mpcBytesReceived?: { inc(labels: { peer: string }, value?: number): void };
}
