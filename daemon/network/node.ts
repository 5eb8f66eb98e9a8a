/**
 * The party's libp2p node: TCP + Noise + Yamux, identify and ping, plus
 * bootstrap and mDNS discovery when configured. It keeps the committee
 * connected (redial with exponential backoff) and lets only committee peers
 * use committee protocols (`handleCommittee`).
 *
 * Non-committee peers may still connect (clients speak /qmpc/job/1) unless
 * `refuseNonCommittee` gates them at the connection level.
 */
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify, type Identify } from '@libp2p/identify';
import { ping, type Ping } from '@libp2p/ping';
import { bootstrap } from '@libp2p/bootstrap';
import { mdns } from '@libp2p/mdns';
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id';
import { TypedEventEmitter, type Connection, type PeerId, type PrivateKey, type Stream, type StreamHandlerOptions, type ConnectionGater } from '@libp2p/interface';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { AbortedError, TimeoutError } from '../../protocols/errors.ts';
import type { PartyIndex } from '../../protocols/transport.ts';
import { ConfigError, QmpcError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { fastNoise, noiseCipher } from './fast-noise.ts';
import { resolveNetworkOptions, type NetworkMetrics, type NetworkOptions, type NetworkOptionsInput } from './options.ts';

export interface CommitteePeer {
  index: PartyIndex;
  peerId: PeerId;
  /** The peer id as a string (map keys, logs). */
  id: string;
  addrs: Multiaddr[];
}

export type RefusalReason = 'not_in_committee';

export interface PartyNodeDeps {
  logger: Logger;
  /** This party's identity key (daemon/identity.ts). */
  privateKey: PrivateKey;
  signal?: AbortSignal;
  metrics?: NetworkMetrics;
  /** Called for every refused stream or connection (after counting). */
  onRefused?: (peerId: string, reason: RefusalReason, protocol: string | null) => void;
  /** libp2p's own metrics (e.g. @libp2p/prometheus-metrics on the daemon's registry). */
  libp2pMetrics?: Libp2pOptions['metrics'];
}

export interface PartyEventDetail {
  index: PartyIndex;
  peerId: string;
}

export interface RefusedEventDetail {
  peerId: string;
  reason: RefusalReason;
  /** The protocol the peer tried to open, or null when refused at connection level. */
  protocol: string | null;
}

export interface PartyNodeEvents {
  'party:connect': CustomEvent<PartyEventDetail>;
  'party:disconnect': CustomEvent<PartyEventDetail>;
  refused: CustomEvent<RefusedEventDetail>;
}

export type PartyNodeStatus = 'running' | 'stopping' | 'stopped';

/** A committee protocol handler: only ever called for streams from committee peers. */
export type CommitteeStreamHandler = (stream: Stream, party: CommitteePeer, connection: Connection) => void;

export interface PartyNode extends TypedEventEmitter<PartyNodeEvents> {
  readonly libp2p: Libp2p<{ identify: Identify; ping: Ping }>;
  readonly peerId: PeerId;
  readonly index: PartyIndex;
  readonly options: NetworkOptions;
  readonly committee: readonly CommitteePeer[];
  readonly status: PartyNodeStatus;
  /** The committee member behind a peer id, or null. */
  partyOf(peer: PeerId | string): CommitteePeer | null;
  party(index: PartyIndex): CommitteePeer;
  /** Other committee members with at least one open connection, ascending. */
  connectedParties(): PartyIndex[];
  /** Resolves once both other members are connected; TimeoutError naming who is missing. */
  waitForCommittee(options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<void>;
  /** Registers a protocol that only committee peers may open; others get their stream reset. */
  handleCommittee(protocol: string, handler: CommitteeStreamHandler, options?: StreamHandlerOptions): Promise<void>;
  getMultiaddrs(): Multiaddr[];
  stats(): { refused: number };
  stop(): Promise<void>;
}

/** A peer outside the committee tried a committee-only protocol. */
export class PeerRefusedError extends QmpcError {
  constructor(message: string) {
    super('ERR_PEER_REFUSED', message);
  }
}

class PartyNodeImpl extends TypedEventEmitter<PartyNodeEvents> implements PartyNode {
  readonly libp2p: Libp2p<{ identify: Identify; ping: Ping }>;
  readonly peerId: PeerId;
  readonly index: PartyIndex;
  readonly options: NetworkOptions;
  readonly committee: readonly CommitteePeer[];
  status: PartyNodeStatus = 'running';
  private readonly byId: Map<string, CommitteePeer>;
  private readonly log: Logger;
  private readonly deps: PartyNodeDeps;
  private readonly stopCtl = new AbortController();
  private readonly loops: Promise<void>[] = [];
  /** Per peer: cuts a redial backoff short when the peer is discovered (mDNS, bootstrap). */
  private readonly wake = new Map<PartyIndex, () => void>();
  private refusedCount = 0;
  private lastRefusalWarn = 0;

  constructor(libp2p: Libp2p<{ identify: Identify; ping: Ping }>, self: CommitteePeer, committee: CommitteePeer[], options: NetworkOptions, deps: PartyNodeDeps) {
    super();
    this.libp2p = libp2p;
    this.peerId = self.peerId;
    this.index = self.index;
    this.options = options;
    this.committee = committee;
    this.byId = new Map(committee.map((p) => [p.id, p]));
    this.deps = deps;
    this.log = deps.logger;
  }

  partyOf(peer: PeerId | string): CommitteePeer | null {
    return this.byId.get(typeof peer === 'string' ? peer : peer.toString()) ?? null;
  }

  party(index: PartyIndex): CommitteePeer {
    return this.committee.find((p) => p.index === index)!;
  }

  private others(): CommitteePeer[] {
    return this.committee.filter((p) => p.index !== this.index);
  }

  private isConnected(p: CommitteePeer): boolean {
    return this.libp2p.getConnections(p.peerId).some((c) => c.status === 'open');
  }

  connectedParties(): PartyIndex[] {
    return this.others().filter((p) => this.isConnected(p)).map((p) => p.index).sort();
  }

  waitForCommittee({ timeoutMs = 30_000, signal }: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    const missing = () => this.others().filter((p) => !this.isConnected(p));
    if (missing().length === 0) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(new AbortedError('waiting for the committee aborted', signal.reason));
    return new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.removeEventListener('party:connect', onConnect);
        signal?.removeEventListener('abort', onAbort);
        this.stopCtl.signal.removeEventListener('abort', onStop);
      };
      const onConnect = () => {
        if (missing().length > 0) return;
        cleanup();
        resolve();
      };
      const onAbort = () => {
        cleanup();
        reject(new AbortedError('waiting for the committee aborted', signal?.reason));
      };
      const onStop = () => {
        cleanup();
        reject(new AbortedError('node stopped while waiting for the committee'));
      };
      const timer = setTimeout(() => {
        cleanup();
        const names = missing().map((p) => `party ${p.index} (${p.id})`).join(', ');
        reject(new TimeoutError(`party ${this.index}: committee incomplete after ${timeoutMs} ms: ${names} not connected`));
      }, timeoutMs);
      this.addEventListener('party:connect', onConnect);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.stopCtl.signal.addEventListener('abort', onStop, { once: true });
    });
  }

  async handleCommittee(protocol: string, handler: CommitteeStreamHandler, options?: StreamHandlerOptions): Promise<void> {
    // A handler-level check rather than libp2p middleware: in libp2p 3.3 a
    // middleware that does not call next() leaves the negotiation pending forever.
    await this.libp2p.handle(protocol, (stream, connection) => {
      const party = this.partyOf(connection.remotePeer);
      if (party === null || party.index === this.index) {
        stream.abort(new PeerRefusedError(`peer ${connection.remotePeer} is not in the committee; ${protocol} is committee-only`));
        this.refused(connection.remotePeer.toString(), 'not_in_committee', protocol);
        return;
      }
      handler(stream, party, connection);
    }, options);
  }

  refused(peerId: string, reason: RefusalReason, protocol: string | null): void {
    this.refusedCount++;
    this.deps.metrics?.peersRefused?.inc({ reason });
    // An outsider can retry at will: one warning per 10 s, the rest at debug.
    const now = Date.now();
    if (now - this.lastRefusalWarn >= 10_000) {
      this.lastRefusalWarn = now;
      this.log.warn({ peer: peerId, reason, protocol, refusedSoFar: this.refusedCount }, 'refused peer');
    } else this.log.debug({ peer: peerId, reason, protocol }, 'refused peer');
    try {
      this.deps.onRefused?.(peerId, reason, protocol);
    } catch (e) {
      this.log.error({ err: String(e) }, 'onRefused callback threw');
    }
    this.safeDispatchEvent('refused', { detail: { peerId, reason, protocol } });
  }

  getMultiaddrs(): Multiaddr[] {
    return this.libp2p.getMultiaddrs();
  }

  stats(): { refused: number } {
    return { refused: this.refusedCount };
  }

  /** Starts watching connections and the redial loops. */
  begin(): void {
    const onPeer = (evt: CustomEvent<PeerId>, kind: 'party:connect' | 'party:disconnect') => {
      const p = this.partyOf(evt.detail);
      if (p === null || p.index === this.index) return;
      this.deps.metrics?.peersConnected?.set(this.connectedParties().length);
      this.log.info({ party: p.index, peer: p.id }, kind === 'party:connect' ? 'committee peer connected' : 'committee peer disconnected');
      this.safeDispatchEvent(kind, { detail: { index: p.index, peerId: p.id } });
    };
    this.libp2p.addEventListener('peer:connect', (e) => onPeer(e, 'party:connect'));
    this.libp2p.addEventListener('peer:disconnect', (e) => onPeer(e, 'party:disconnect'));
    this.libp2p.addEventListener('peer:discovery', (e) => {
      const p = this.partyOf(e.detail.id);
      if (p !== null) this.wake.get(p.index)?.();
    });
    for (const p of this.others()) this.loops.push(this.keepConnected(p));
  }

  /**
   * Dials `p` whenever it is not connected, backing off exponentially while
   * dials fail. The higher index waits one minimum delay before dialling a
   * lower one, so that a pair rarely dials each other at the same moment (which
   * leaves two connections per pair).
   */
  private async keepConnected(p: CommitteePeer): Promise<void> {
    const { redialMinMs, redialMaxMs, dialTimeoutMs } = this.options;
    const stop = this.stopCtl.signal;
    let delay = redialMinMs;
    let firstAttempt = true;
    while (!stop.aborted) {
      if (this.isConnected(p)) {
        delay = redialMinMs;
        firstAttempt = true;
        await this.untilDisconnected(p);
        continue;
      }
      if (firstAttempt && this.index > p.index) {
        firstAttempt = false;
        await sleep(jitter(redialMinMs), stop);
        continue;
      }
      firstAttempt = false;
      try {
        await this.libp2p.dial(p.peerId, { signal: AbortSignal.any([stop, AbortSignal.timeout(dialTimeoutMs)]) });
        delay = redialMinMs;
      } catch (e) {
        if (stop.aborted) return;
        this.log.debug({ party: p.index, peer: p.id, err: errorText(e), retryMs: delay }, 'dial to committee peer failed');
        // New addresses (mDNS, bootstrap) end the wait early: no reason to sit out a 30 s backoff.
        const woken = new AbortController();
        this.wake.set(p.index, () => woken.abort());
        await sleep(jitter(delay), AbortSignal.any([stop, woken.signal]));
        this.wake.delete(p.index);
        delay = woken.signal.aborted ? redialMinMs : Math.min(delay * 2, redialMaxMs);
      }
    }
  }

  private untilDisconnected(p: CommitteePeer): Promise<void> {
    return new Promise<void>((resolve) => {
      const stop = this.stopCtl.signal;
      const done = () => {
        this.removeEventListener('party:disconnect', onDisc);
        stop.removeEventListener('abort', done);
        resolve();
      };
      const onDisc = (e: CustomEvent<PartyEventDetail>) => {
        if (e.detail.index === p.index) done();
      };
      this.addEventListener('party:disconnect', onDisc);
      stop.addEventListener('abort', done, { once: true });
      if (!this.isConnected(p)) done(); // lost between the check and the listener
    });
  }

  async stop(): Promise<void> {
    if (this.status !== 'running') return;
    this.status = 'stopping';
    this.stopCtl.abort();
    await Promise.allSettled(this.loops);
    await this.libp2p.stop();
    this.status = 'stopped';
  }
}

const COMMITTEE_TAG = 'qmpc-committee';
function jitter(ms: number): number {
  return Math.round(ms * (0.75 + Math.random() * 0.5));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** The transport part of an address: the peer store keeps addresses without their /p2p suffix. */
function withoutPeer(ma: Multiaddr): Multiaddr {
  const parts = ma.getComponents().filter((c) => c.name !== 'p2p');
  return multiaddr('/' + parts.map((c) => (c.value === undefined ? c.name : `${c.name}/${c.value}`)).join('/'));
}

export async function createPartyNode(opts: NetworkOptionsInput, deps: PartyNodeDeps): Promise<PartyNode> {
  const options = resolveNetworkOptions(opts);
  const log = deps.logger;
  const selfId = peerIdFromPrivateKey(deps.privateKey);
  const committee: CommitteePeer[] = options.committee
    .map((m) => ({ index: m.index, peerId: peerIdFromString(m.peerId), id: m.peerId, addrs: (m.addrs ?? []).map((a) => multiaddr(a)) }))
    .sort((a, b) => a.index - b.index);
  const self = committee.find((p) => p.peerId.equals(selfId));
  if (!self) throw new ConfigError(`network.committee: this node's peer id ${selfId} is not a committee member (members: ${committee.map((p) => p.id).join(', ')})`);
  const isMember = (p: PeerId) => committee.some((c) => c.peerId.equals(p));

  let node: PartyNodeImpl | null = null;
  const gater: ConnectionGater = {};
  if (options.refuseNonCommittee) {
    gater.denyDialPeer = (p) => !isMember(p);
    gater.denyOutboundEncryptedConnection = (p) => !isMember(p);
    gater.denyInboundEncryptedConnection = (p) => {
      if (isMember(p)) return false;
      node?.refused(p.toString(), 'not_in_committee', null);
      return true;
    };
  }

  const peerDiscovery: NonNullable<Libp2pOptions['peerDiscovery']> = [];
  if (options.bootstrap.length > 0) peerDiscovery.push(bootstrap({ list: options.bootstrap }));
  if (options.mdns.enabled) peerDiscovery.push(mdns({ serviceTag: options.mdns.serviceTag, interval: options.mdns.intervalMs }));

  const libp2p = await createLibp2p({
    privateKey: deps.privateKey,
    addresses: { listen: options.listen },
    transports: [tcp()],
    connectionEncrypters: [fastNoise()],
    streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: options.muxer.maxStreamWindowSize, maxReadBufferLength: options.muxer.maxReadBufferLength } })],
    connectionGater: gater,
    connectionManager: { dialTimeout: options.dialTimeoutMs },
    peerDiscovery,
    services: { identify: identify(), ping: ping() },
    ...(deps.libp2pMetrics ? { metrics: deps.libp2pMetrics } : {}),
    start: false,
  });
  node = new PartyNodeImpl(libp2p, self, committee, options, { ...deps, logger: log });
  // Known addresses go into the peer store, so every dial is by peer id and
  // addresses found later (mDNS, identify) are used as well. The tag keeps the
  // connection manager from pruning committee connections when clients crowd in.
  for (const p of committee) {
    if (p.index === self.index) continue;
    await libp2p.peerStore.merge(p.peerId, { multiaddrs: p.addrs.map(withoutPeer), tags: { [COMMITTEE_TAG]: { value: 100 } } });
  }
  await libp2p.start();
  node.begin();
  log.info({ peer: selfId.toString(), party: self.index, addrs: libp2p.getMultiaddrs().map(String), noiseCipher: noiseCipher.impl }, 'party node listening');
  if (noiseCipher.reason !== null) log.warn({ reason: noiseCipher.reason }, 'Noise uses node:crypto rather than libsodium (same wire format, more CPU per byte)');
  if (deps.signal) {
    const n = node;
    if (deps.signal.aborted) await n.stop();
    else deps.signal.addEventListener('abort', () => void n.stop().catch((e) => log.error({ err: errorText(e) }, 'node stop failed')), { once: true });
  }
  return node;
}
