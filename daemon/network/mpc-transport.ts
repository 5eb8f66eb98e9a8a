/**
 * The engine's Transport (protocols/transport.ts) over libp2p.
 *
 * Each party keeps ONE long-lived outbound `/qmpc/mpc/1` stream per peer and
 * only writes to it; the peer only reads it. Ordered pairs rather than one
 * shared stream per pair: no race over who opens it, and one writer per stream
 * is what makes per-pair ordering hold. A new stream costs ~13 ms, so sessions
 * share the stream and frames carry the session id; all messages queued in
 * one tick go out as one write.
 *
 * Sessions bind to the stream that carried their first frame in each
 * direction. When a stream breaks, exactly the sessions bound to it fail for
 * that peer (later sessions open a fresh stream); when the peer disconnects,
 * every open session with it fails. Semantics otherwise follow the in-memory
 * transport: send never blocks, receives are in order and time out, a close
 * reaches the peer's receives after what was sent before it.
 */
import { Uint8ArrayList } from 'uint8arraylist';
import type { Stream } from '@libp2p/interface';
import { PartyError, TimeoutError } from '../../protocols/errors.ts';
import { Inbox } from '../../protocols/inbox.ts';
import { checkPartyIndex, checkPeer, newStats, type PartyIndex, type RecvOptions, type Transport, type TransportStats } from '../../protocols/transport.ts';
import { QmpcError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { FRAME_HEADER_BYTES, FRAME_KIND, MPC_PROTOCOL } from './constants.ts';
import { FrameDecoder, FrameError, decodeCloseReason, encodeCloseReason, encodeHeader, sessionKey, type Frame, type FrameErrorCode } from './frames.ts';
import type { CommitteePeer, PartyNode } from './node.ts';
import type { NetworkMetrics, NetworkOptions } from './options.ts';
import { capFrameBytes } from './yamux-frames.ts';

/** A session id that is malformed, already open, or recently used. */
export class SessionIdError extends QmpcError {
  constructor(message: string) {
    super('ERR_SESSION_ID', message);
  }
}

/** The MPC network was closed: no new sessions. */
export class NetworkClosedError extends QmpcError {
  constructor(message: string) {
    super('ERR_NETWORK_CLOSED', message);
  }
}

export interface MpcNetworkDeps {
  logger: Logger;
  signal?: AbortSignal;
  metrics?: NetworkMetrics;
}

export interface OpenSessionOptions {
  /** Default receive timeout of this session (default: network.recvTimeoutMs). */
  timeoutMs?: number;
}

export interface MpcNetworkStats {
  sessionsOpen: number;
  /** Frames and bytes on the wire (headers included), all sessions. */
  framesSent: number;
  framesReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** Rejected frames by error code. */
  frameErrors: Partial<Record<FrameErrorCode, number>>;
  dropped: {
    /** Frames for a session closed here (late messages, normal after a close). */
    closedSession: number;
    /** Frames for sessions not opened here that exceeded the early bounds. */
    earlyRefused: number;
    /** Held sessions nobody opened within earlySessionTtlMs. */
    earlyExpired: number;
  };
  early: { sessions: number; bytes: number };
  streams: { inbound: number; outbound: number; aborted: number };
  /** Bytes queued locally, not yet handed to a stream. */
  queuedBytes: number;
}

export interface MpcNetwork {
  /**
   * This party's Transport of session `sessionId` (16 bytes, chosen by the job
   * layer and the same at all three parties). Messages that arrived before the
   * open are delivered.
   */
  openSession(sessionId: Uint8Array, myIndex: PartyIndex, options?: OpenSessionOptions): Transport;
  stats(): MpcNetworkStats;
  /** Closes every session (peers see the close), flushes and closes the streams. */
  close(reason?: string): Promise<void>;
}

/** Identity of one stream (or, outbound, of one attempt to have one). */
interface StreamRef {
  readonly id: number;
  broken: boolean;
}

/** Messages from one peer within one session, with the sequence and stream they arrive on. */
class PeerInbox extends Inbox {
  nextSeq = 0;
  stream: StreamRef | null = null;
}

/** What this party sends to one peer within one session. */
interface Outbox {
  seq: number;
  stream: StreamRef | null;
  /** Set once sends to this peer are dropped (stream broke, peer gone). */
  failed: string | null;
}

class MpcSession implements Transport {
  readonly party: PartyIndex;
  readonly stats: TransportStats = newStats();
  readonly key: string;
  readonly timeoutMs: number;
  readonly inbox: PeerInbox[] = [new PeerInbox(), new PeerInbox(), new PeerInbox()];
  readonly outbox: Outbox[] = [0, 1, 2].map(() => ({ seq: 0, stream: null, failed: null }));
  closed: string | null = null;
  private readonly net: MpcNetworkImpl;

  constructor(net: MpcNetworkImpl, key: string, party: PartyIndex, timeoutMs: number) {
    this.net = net;
    this.key = key;
    this.party = party;
    this.timeoutMs = timeoutMs;
  }

  send(to: PartyIndex, payload: Uint8Array): void {
    checkPeer(this.party, to, 'send target', this.closed);
    if (FRAME_HEADER_BYTES + payload.byteLength > this.net.options.maxFrameBytes) {
      throw new FrameError('ERR_FRAME_TOO_LARGE', `a ${payload.byteLength}-byte message exceeds the frame limit of ${this.net.options.maxFrameBytes} bytes (network.maxFrameBytes) including the ${FRAME_HEADER_BYTES}-byte header`);
    }
    this.stats.bytesSent += payload.byteLength;
    this.stats.messagesSent++;
    const out = this.outbox[to];
    if (out.failed !== null) return; // like a socket to a peer that has gone: the bytes are dropped
    // A copy, as the in-memory transport makes: the engine may reuse its arrays
    // before a queued frame reaches the socket (≈ 5 ms per 64 MiB, against ≈ 300 ms on the wire).
    this.net.enqueue(to, this, out, FRAME_KIND.data, out.seq++, Uint8Array.prototype.slice.call(payload));
  }

  recv(from: PartyIndex, options: RecvOptions = {}): Promise<Uint8Array> {
    try {
      checkPeer(this.party, from, 'receive source', this.closed);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.inbox[from].take(this.party, from, options.timeoutMs ?? this.timeoutMs, options.signal).then((m) => this.count(from, m));
  }

  private count(from: PartyIndex, m: Uint8Array): Uint8Array {
    this.stats.bytesReceived += m.byteLength;
    this.stats.messagesReceived++;
    this.net.metrics?.mpcBytesReceived?.inc({ peer: String(from) }, m.byteLength);
    return m;
  }

  close(reason = 'closed'): void {
    if (this.closed !== null) return;
    this.closed = reason;
    for (const p of this.peers()) {
      // Our own pending receives fail now; the peer's once it has drained what we sent.
      this.inbox[p].end(`session closed by party ${this.party}: ${reason}`, true);
      const out = this.outbox[p];
      if (out.failed === null) this.net.enqueue(p, this, out, FRAME_KIND.close, out.seq, encodeCloseReason(reason));
      out.failed ??= 'session closed';
    }
    this.net.forget(this);
  }

  /** Sessions fail towards one peer at a time: the other pair may still finish its step. */
  failPeer(p: PartyIndex, reason: string): void {
    this.inbox[p].end(reason, true);
    this.outbox[p].failed ??= reason;
  }

  peers(): PartyIndex[] {
    return ([0, 1, 2] as PartyIndex[]).filter((p) => p !== this.party);
  }
}

/** Frames for a session not opened here yet. */
interface EarlySession {
  created: number;
  bytes: number;
  frames: { from: PartyIndex; frame: Frame; ref: StreamRef }[];
  /** Per peer: why its frames were refused (later ones are dropped too). */
  refused: Map<PartyIndex, string>;
  /** Per peer: the stream that carried its frames broke. */
  broken: Map<PartyIndex, string>;
}

/** The write side towards one peer: a queue in front of one long-lived stream. */
class PeerLink {
  readonly peer: CommitteePeer;
  stream: Stream | null = null;
  /** The stream (or attempt) the queued frames are bound to. */
  ref: StreamRef | null = null;
  private queue: Uint8Array[] = [];
  queuedBytes = 0;
  private flushScheduled = false;
  private opening = false;
  private stallTimer: NodeJS.Timeout | null = null;
  private lastProgress = 0;
  private readonly net: MpcNetworkImpl;

  constructor(net: MpcNetworkImpl, peer: CommitteePeer) {
    this.net = net;
    this.peer = peer;
  }

  /** The ref new frames bind to; a new one after the previous stream broke. */
  current(): StreamRef {
    if (this.ref === null || this.ref.broken) this.ref = this.net.newRef();
    return this.ref;
  }

  push(header: Uint8Array, payload: Uint8Array): void {
    this.queue.push(header);
    if (payload.byteLength > 0) this.queue.push(payload);
    this.queuedBytes += header.byteLength + payload.byteLength;
    if (!this.flushScheduled) {
      // Everything sent within this tick leaves as one write (one Yamux frame, few Noise messages).
      this.flushScheduled = true;
      queueMicrotask(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  flush(): void {
    if (this.queue.length === 0) return;
    const s = this.stream;
    if (s === null) {
      this.open();
      return;
    }
    if (s.writableNeedsDrain) {
      this.watchStall(s); // 'drain' calls us again, unless the peer has stopped reading
      return;
    }
    const list = new Uint8ArrayList(...this.queue);
    this.queue = [];
    this.queuedBytes = 0;
    try {
      s.send(list);
    } catch (e) {
      this.broken(`write failed: ${errorText(e)}`, e);
      return;
    }
    this.watchStall(s);
  }

  /**
   * While bytes wait (in our queue or the stream's), the peer must make
   * progress — a 'drain' (window update) at least every writeStallTimeoutMs —
   * or the stream is aborted and the sessions bound to it fail.
   */
  private watchStall(s: Stream): void {
    if (this.stallTimer !== null) return;
    if (s.writeBufferLength === 0 && this.queue.length === 0) return;
    const ms = this.net.options.writeStallTimeoutMs;
    this.lastProgress = Date.now();
    const check = () => {
      this.stallTimer = null;
      if (this.stream !== s) return;
      if (s.writeBufferLength === 0 && this.queue.length === 0) return;
      const idle = Date.now() - this.lastProgress;
      if (idle >= ms) {
        s.abort(new TimeoutError(`party ${this.peer.index} accepted no MPC bytes for ${idle} ms (network.writeStallTimeoutMs)`));
        return;
      }
      this.stallTimer = setTimeout(check, ms - idle);
      this.stallTimer.unref();
    };
    this.stallTimer = setTimeout(check, ms);
    this.stallTimer.unref();
  }

  private clearStall(): void {
    if (this.stallTimer !== null) clearTimeout(this.stallTimer);
    this.stallTimer = null;
  }

  private open(): void {
    if (this.opening || this.net.closing) return;
    this.opening = true;
    const ref = this.current();
    const { dialTimeoutMs } = this.net.options;
    const signal = AbortSignal.any([AbortSignal.timeout(dialTimeoutMs), this.net.closeSignal]);
    this.net.node.libp2p
      .dialProtocol(this.peer.peerId, MPC_PROTOCOL, { signal })
      .then((s) => {
        this.opening = false;
        if (ref.broken || this.net.closing) {
          s.abort(new Error('MPC stream no longer needed'));
          return;
        }
        this.attach(s, ref);
        this.flush();
      })
      .catch((e) => {
        this.opening = false;
        if (ref === this.ref) this.broken(`could not open an MPC stream to party ${this.peer.index} (dial timeout ${dialTimeoutMs} ms): ${errorText(e)}`, e);
      });
  }

  private attach(s: Stream, ref: StreamRef): void {
    this.stream = s;
    capFrameBytes(s, this.net.node.options.muxer.maxStreamWindowSize / FRAMES_PER_WINDOW);
    this.net.counters.streamsOutbound++;
    s.addEventListener('drain', () => {
      this.lastProgress = Date.now();
      this.flush();
    });
    s.addEventListener('message', () => {
      // The peer only reads this stream; bytes from it are a protocol violation we drop.
      this.net.frameError(this.peer, new FrameError('ERR_FRAME_UNEXPECTED', 'data on an MPC stream the peer must only read'));
    });
    s.addEventListener('close', (evt) => {
      this.clearStall();
      if (this.stream === s) this.stream = null;
      if (evt.error) this.net.counters.streamsAborted++;
      if (ref === this.ref && !ref.broken) this.broken(evt.error ? `MPC stream to party ${this.peer.index} failed: ${errorText(evt.error)}` : `MPC stream to party ${this.peer.index} closed`, evt.error);
    });
  }

  /** The stream (or the attempt to open one) is gone: frames bound to it are lost. */
  private broken(reason: string, cause?: unknown): void {
    const ref = this.ref;
    const s = this.stream;
    this.stream = null;
    if (s !== null && s.status === 'open') s.abort(cause instanceof Error ? cause : new Error(reason));
    this.clearStall();
    this.queue = [];
    this.queuedBytes = 0;
    if (ref === null || ref.broken) return;
    ref.broken = true;
    if (!this.net.closing) this.net.log.warn({ party: this.peer.index, peer: this.peer.id, err: cause === undefined ? undefined : errorText(cause) }, reason);
    this.net.streamBroken(this.peer.index, ref, 'out', reason);
  }

  async close(timeoutMs: number): Promise<void> {
    this.clearStall();
    const s = this.stream;
    if (s === null) return;
    try {
      await s.close({ signal: AbortSignal.timeout(timeoutMs) });
    } catch (e) {
      s.abort(e instanceof Error ? e : new Error(String(e)));
    }
  }
}

const RECENTLY_CLOSED_CAP = 8192;
/** Yamux frames per stream window on MPC streams (yamux-frames.ts): enough in flight that credit returns while sending goes on. */
const FRAMES_PER_WINDOW = 4;

class MpcNetworkImpl implements MpcNetwork {
  readonly node: PartyNode;
  readonly options: NetworkOptions;
  readonly log: Logger;
  readonly metrics: NetworkMetrics | undefined;
  readonly counters = {
    framesSent: 0, framesReceived: 0, bytesSent: 0, bytesReceived: 0,
    closedSession: 0, earlyRefused: 0, earlyExpired: 0,
    streamsInbound: 0, streamsOutbound: 0, streamsAborted: 0,
  };
  readonly frameErrors: Partial<Record<FrameErrorCode, number>> = {};
  closing = false;
  private readonly closeCtl = new AbortController();
  private readonly sessions = new Map<string, MpcSession>();
  private readonly recentlyClosed = new Set<string>();
  /** Sessions whose early frames were refused outright (too many sessions held). */
  private readonly refusedEarly = new Set<string>();
  private readonly early = new Map<string, EarlySession>();
  private earlyBytes = 0;
  private readonly links = new Map<PartyIndex, PeerLink>();
  private readonly inbound = new Set<Stream>();
  private readonly sweeper: NodeJS.Timeout;
  private refSeq = 0;
  private readonly lastWarn = new Map<string, number>();

  constructor(node: PartyNode, deps: MpcNetworkDeps) {
    this.node = node;
    this.options = node.options;
    this.log = deps.logger;
    this.metrics = deps.metrics;
    for (const p of node.committee) if (p.index !== node.index) this.links.set(p.index, new PeerLink(this, p));
    this.sweeper = setInterval(() => this.sweepEarly(), Math.max(100, Math.floor(this.options.earlySessionTtlMs / 4)));
    this.sweeper.unref();
    node.addEventListener('party:disconnect', this.onDisconnect);
  }

  private readonly onDisconnect = (e: CustomEvent<{ index: PartyIndex; peerId: string }>): void => {
    this.peerGone(e.detail.index, `party ${e.detail.index} (${e.detail.peerId}) disconnected`);
  };

  get closeSignal(): AbortSignal {
    return this.closeCtl.signal;
  }

  newRef(): StreamRef {
    return { id: ++this.refSeq, broken: false };
  }

  openSession(sessionId: Uint8Array, myIndex: PartyIndex, options: OpenSessionOptions = {}): Transport {
    if (this.closing) throw new NetworkClosedError('the MPC network is closed');
    checkPartyIndex(myIndex, 'session party index');
    if (myIndex !== this.node.index) throw new PartyError(`this node is party ${this.node.index} of the committee, not party ${myIndex}`);
    let key: string;
    try {
      key = sessionKey(sessionId);
    } catch (e) {
      throw new SessionIdError((e as Error).message);
    }
    if (this.sessions.has(key)) throw new SessionIdError(`session ${key} is already open`);
    if (this.recentlyClosed.has(key)) throw new SessionIdError(`session ${key} was used recently; session ids must be fresh`);
    const timeoutMs = options.timeoutMs ?? this.options.recvTimeoutMs;
    if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs must be positive, got ${timeoutMs}`);
    const s = new MpcSession(this, key, myIndex, timeoutMs);
    this.sessions.set(key, s);
    const held = this.early.get(key);
    if (held) {
      this.early.delete(key);
      this.earlyBytes -= held.bytes;
      for (const { from, frame, ref } of held.frames) this.deliver(s, from, frame, ref);
      for (const [p, why] of held.broken) s.failPeer(p, why);
      for (const [p, why] of held.refused) s.failPeer(p, why);
    }
    if (this.refusedEarly.delete(key)) {
      for (const p of s.peers()) s.failPeer(p, `messages of this session arrived before it was opened here while network.maxEarlySessions (${this.options.maxEarlySessions}) sessions were already held; they were refused`);
    }
    return s;
  }

  enqueue(to: PartyIndex, s: MpcSession, out: Outbox, kind: typeof FRAME_KIND.data | typeof FRAME_KIND.close, seq: number, payload: Uint8Array): void {
    const link = this.links.get(to)!;
    const ref = link.current();
    if (kind === FRAME_KIND.data) {
      if (out.stream === null) out.stream = ref;
      else if (out.stream !== ref) {
        // Our earlier frames of this session went down with a broken stream: the peer cannot get them in order.
        s.failPeer(to, `MPC stream to party ${to} broke during the session`);
        return;
      }
    }
    const header = encodeHeader(kind, s.key, seq, payload.byteLength, this.options.maxFrameBytes);
    this.counters.framesSent++;
    this.counters.bytesSent += header.byteLength + payload.byteLength;
    if (kind === FRAME_KIND.data) this.metrics?.mpcBytesSent?.inc({ peer: String(to) }, payload.byteLength);
    link.push(header, payload);
  }

  forget(s: MpcSession): void {
    if (this.sessions.get(s.key) === s) this.sessions.delete(s.key);
    this.rememberClosed(s.key);
  }

  private rememberClosed(key: string): void {
    this.recentlyClosed.add(key);
    if (this.recentlyClosed.size > RECENTLY_CLOSED_CAP) this.recentlyClosed.delete(this.recentlyClosed.values().next().value!);
  }

  /** An inbound /qmpc/mpc/1 stream from a committee peer (node.ts has refused everyone else). */
  acceptInbound(stream: Stream, peer: CommitteePeer): void {
    if (this.closing) {
      stream.abort(new NetworkClosedError('the MPC network is closed'));
      return;
    }
    this.counters.streamsInbound++;
    this.inbound.add(stream);
    const ref = this.newRef();
    const decoder = new FrameDecoder(this.options.maxFrameBytes);
    // We never write here: close our half now so the stream ends when the peer's half does.
    void stream.close().catch(() => {});
    const fail = (e: FrameError) => {
      this.frameError(peer, e);
      if (e.fatal && stream.status === 'open') stream.abort(e);
    };
    stream.addEventListener('message', (evt) => {
      const items = decoder.push(evt.data);
      for (const it of items) {
        if (it instanceof FrameError) fail(it);
        else this.dispatch(peer.index, it, ref);
      }
    });
    const ended = (reason: string) => {
      if (ref.broken) return;
      ref.broken = true;
      this.inbound.delete(stream);
      const e = decoder.end();
      if (e) this.frameError(peer, e);
      this.streamBroken(peer.index, ref, 'in', reason);
    };
    stream.addEventListener('remoteCloseWrite', () => ended(`party ${peer.index} closed its MPC stream`));
    stream.addEventListener('close', (evt) => {
      if (evt.error) this.counters.streamsAborted++;
      ended(evt.error ? `MPC stream from party ${peer.index} failed: ${errorText(evt.error)}` : `MPC stream from party ${peer.index} closed`);
    });
  }

  frameError(peer: CommitteePeer, e: FrameError): void {
    this.frameErrors[e.code] = (this.frameErrors[e.code] ?? 0) + 1;
    this.metrics?.securityThreats?.inc({ kind: e.code === 'ERR_FRAME_TOO_LARGE' ? 'oversize_frame' : 'malformed_frame' });
    this.warnThrottled(e.code, { party: peer.index, peer: peer.id, code: e.code, fatal: e.fatal, err: e.message }, 'rejected MPC frame');
  }

  /** Routes one frame from `from` to its session, or holds it until the session opens. */
  dispatch(from: PartyIndex, frame: Frame, ref: StreamRef): void {
    this.counters.framesReceived++;
    this.counters.bytesReceived += FRAME_HEADER_BYTES + frame.payload.byteLength;
    const s = this.sessions.get(frame.session);
    if (s) return this.deliver(s, from, frame, ref);
    if (this.recentlyClosed.has(frame.session)) {
      this.counters.closedSession++;
      this.log.debug({ party: from, session: frame.session, kind: frame.kind }, 'dropped frame for a closed session');
      return;
    }
    this.hold(from, frame, ref);
  }

  private deliver(s: MpcSession, from: PartyIndex, frame: Frame, ref: StreamRef): void {
    const box = s.inbox[from];
    if (box.ended !== null || s.closed !== null) return;
    if (box.stream === null) box.stream = ref;
    else if (box.stream !== ref) {
      // A session's frames from one peer come over one stream; a switch means the first one broke.
      s.failPeer(from, `MPC stream from party ${from} changed during the session`);
      return;
    }
    if (frame.kind === FRAME_KIND.close) {
      const reason = decodeCloseReason(frame.payload) as string; // validated by the decoder
      const lost = frame.seq !== box.nextSeq ? ` (it sent ${frame.seq} messages, ${box.nextSeq} arrived)` : '';
      box.end(`party ${from} closed the session: ${reason}${lost}`, false);
      return;
    }
    if (frame.seq !== box.nextSeq) {
      const e = new FrameError('ERR_FRAME_SEQUENCE', `session ${s.key}: message ${frame.seq} from party ${from} where ${box.nextSeq} was due`);
      this.frameError(this.node.party(from), e);
      s.failPeer(from, e.message);
      return;
    }
    box.nextSeq++;
    box.push(frame.payload);
  }

  private hold(from: PartyIndex, frame: Frame, ref: StreamRef): void {
    const { maxEarlyBytes, maxEarlySessions } = this.options;
    let e = this.early.get(frame.session);
    if (!e) {
      if (this.early.size >= maxEarlySessions) {
        this.counters.earlyRefused++;
        this.refusedEarly.add(frame.session);
        if (this.refusedEarly.size > RECENTLY_CLOSED_CAP) this.refusedEarly.delete(this.refusedEarly.values().next().value!);
        this.metrics?.securityThreats?.inc({ kind: 'unknown_session' });
        this.warnThrottled('early-sessions', { party: from, session: frame.session, limit: maxEarlySessions }, 'refused frame for an unknown session: too many sessions not opened here');
        return;
      }
      e = { created: Date.now(), bytes: 0, frames: [], refused: new Map(), broken: new Map() };
      this.early.set(frame.session, e);
    }
    if (e.refused.has(from) || e.broken.has(from)) {
      this.counters.earlyRefused++;
      return;
    }
    const size = FRAME_HEADER_BYTES + frame.payload.byteLength;
    if (this.earlyBytes + size > maxEarlyBytes) {
      // Drop what we held from this peer too: the session could not use a gapped sequence.
      let freed = 0;
      e.frames = e.frames.filter((f) => (f.from === from ? ((freed += FRAME_HEADER_BYTES + f.frame.payload.byteLength), false) : true));
      e.bytes -= freed;
      this.earlyBytes -= freed;
      e.refused.set(from, `messages from party ${from} arrived before the session was opened here and exceeded network.maxEarlyBytes (${maxEarlyBytes} bytes); they were refused`);
      this.counters.earlyRefused++;
      this.metrics?.securityThreats?.inc({ kind: 'unknown_session' });
      this.warnThrottled('early-bytes', { party: from, session: frame.session, limit: maxEarlyBytes }, 'refused frames for a session not opened here: early buffer full');
      return;
    }
    e.frames.push({ from, frame, ref });
    e.bytes += size;
    this.earlyBytes += size;
  }

  private sweepEarly(): void {
    const cutoff = Date.now() - this.options.earlySessionTtlMs;
    for (const [key, e] of this.early) {
      if (e.created > cutoff) continue;
      this.early.delete(key);
      this.earlyBytes -= e.bytes;
      this.rememberClosed(key);
      this.counters.earlyExpired++;
      this.metrics?.securityThreats?.inc({ kind: 'unknown_session' });
      this.warnThrottled('early-expired', { session: key, frames: e.frames.length, bytes: e.bytes }, 'dropped messages of a session never opened here');
    }
  }

  /** A stream to or from `p` ended: the sessions bound to it fail towards `p`. */
  streamBroken(p: PartyIndex, ref: StreamRef, dir: 'in' | 'out', reason: string): void {
    for (const s of this.sessions.values()) {
      const bound = dir === 'in' ? s.inbox[p].stream === ref : s.outbox[p].stream === ref;
      if (bound) s.failPeer(p, reason);
    }
    if (dir === 'in') {
      for (const e of this.early.values()) if (e.frames.some((f) => f.from === p && f.ref === ref)) e.broken.set(p, reason);
    }
  }

  /** The peer has no connection left: every open session with it fails. */
  private peerGone(p: PartyIndex, reason: string): void {
    for (const s of this.sessions.values()) s.failPeer(p, reason);
    for (const e of this.early.values()) if (e.frames.some((f) => f.from === p)) e.broken.set(p, reason);
  }

  private warnThrottled(kind: string, fields: object, msg: string): void {
    const now = Date.now();
    const last = this.lastWarn.get(kind) ?? 0;
    if (now - last >= 10_000) {
      this.lastWarn.set(kind, now);
      this.log.warn(fields, msg);
    } else this.log.debug(fields, msg);
  }

  stats(): MpcNetworkStats {
    const c = this.counters;
    let queuedBytes = 0;
    for (const l of this.links.values()) queuedBytes += l.queuedBytes;
    return {
      sessionsOpen: this.sessions.size,
      framesSent: c.framesSent,
      framesReceived: c.framesReceived,
      bytesSent: c.bytesSent,
      bytesReceived: c.bytesReceived,
      frameErrors: { ...this.frameErrors },
      dropped: { closedSession: c.closedSession, earlyRefused: c.earlyRefused, earlyExpired: c.earlyExpired },
      early: { sessions: this.early.size, bytes: this.earlyBytes },
      streams: { inbound: c.streamsInbound, outbound: c.streamsOutbound, aborted: c.streamsAborted },
      queuedBytes,
    };
  }

  async close(reason = 'network closing'): Promise<void> {
    if (this.closing) return;
    for (const s of [...this.sessions.values()]) s.close(reason);
    this.closing = true;
    clearInterval(this.sweeper);
    await this.node.libp2p.unhandle(MPC_PROTOCOL).catch(() => {});
    // Let the close frames queued above reach the streams before closing them.
    await new Promise((r) => setImmediate(r));
    await Promise.allSettled([...this.links.values()].map((l) => l.close(this.options.dialTimeoutMs)));
    this.closeCtl.abort();
    this.node.removeEventListener('party:disconnect', this.onDisconnect);
    for (const s of this.inbound) s.abort(new NetworkClosedError(reason));
    this.inbound.clear();
    this.early.clear();
    this.earlyBytes = 0;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** Starts serving /qmpc/mpc/1 on `node` (committee peers only) and returns the session factory. */
export async function createMpcNetwork(node: PartyNode, deps: MpcNetworkDeps): Promise<MpcNetwork> {
  const net = new MpcNetworkImpl(node, deps);
  // Inbound streams: one per peer in steady state; a few more cover reconnects before the old one is noticed.
  await node.handleCommittee(MPC_PROTOCOL, (stream, peer) => net.acceptInbound(stream, peer), { maxInboundStreams: 8, maxOutboundStreams: 8 });
  if (deps.signal) {
    if (deps.signal.aborted) await net.close('aborted');
    else deps.signal.addEventListener('abort', () => void net.close('aborted'), { once: true });
  }
  return net;
}
