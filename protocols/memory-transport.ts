/**
 * Three transports wired together in one process. Delivery is asynchronous
 * (a microtask later), so three parties driven by `Promise.all` interleave as
 * they would over sockets, and byte counts equal what a socket would carry as
 * payload.
 */
import { Inbox } from './inbox.ts';
import { checkPeer, newStats, type PartyIndex, type RecvOptions, type Transport, type TransportStats } from './transport.ts';

export interface MemoryTransportOptions {
  /** Default receive timeout in milliseconds (default 30 000). */
  timeoutMs?: number;
}

class MemoryTransport implements Transport {
  readonly party: PartyIndex;
  readonly stats: TransportStats = newStats();
  private readonly hub: Hub;
  private closed: string | null = null;

  constructor(hub: Hub, party: PartyIndex) {
    this.hub = hub;
    this.party = party;
  }

  send(to: PartyIndex, payload: Uint8Array): void {
    checkPeer(this.party, to, 'send target', this.closed);
    this.stats.bytesSent += payload.byteLength;
    this.stats.messagesSent++;
    const ch = this.hub.channel(this.party, to);
    if (ch.ended !== null) return; // the receiver has gone; like a socket, the bytes are dropped
    const copy = new Uint8Array(payload); // a real copy (Buffer#slice is a view): later writes to the caller's buffer must not leak through
    queueMicrotask(() => ch.push(copy));
  }

  recv(from: PartyIndex, options: RecvOptions = {}): Promise<Uint8Array> {
    try {
      checkPeer(this.party, from, 'receive source', this.closed);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.count(this.hub.channel(from, this.party).take(this.party, from, options.timeoutMs ?? this.hub.timeoutMs, options.signal));
  }

  private async count(p: Promise<Uint8Array>): Promise<Uint8Array> {
    const m = await p;
    this.stats.bytesReceived += m.byteLength;
    this.stats.messagesReceived++;
    return m;
  }

  close(reason = 'closed'): void {
    if (this.closed !== null) return;
    this.closed = reason;
    for (const other of [0, 1, 2] as PartyIndex[]) {
      if (other === this.party) continue;
      // Our own pending receives fail now; peers fail once they have drained what we sent.
      this.hub.channel(other, this.party).end(`session closed by party ${this.party}: ${reason}`);
      const out = this.hub.channel(this.party, other);
      queueMicrotask(() => out.end(`party ${this.party} closed the session: ${reason}`));
    }
  }
}

class Hub {
  readonly timeoutMs: number;
  private readonly channels = new Map<number, Inbox>();

  constructor(timeoutMs: number) {
    this.timeoutMs = timeoutMs;
  }

  channel(from: PartyIndex, to: PartyIndex): Inbox {
    const key = from * 3 + to;
    let ch = this.channels.get(key);
    if (!ch) this.channels.set(key, (ch = new Inbox()));
    return ch;
  }
}

/** Creates the three connected transports of one in-memory session. */
export function createMemoryTransports(options: MemoryTransportOptions = {}): [Transport, Transport, Transport] {
  const timeoutMs = options.timeoutMs ?? 30_000;
  if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs must be positive, got ${timeoutMs}`);
  const hub = new Hub(timeoutMs);
  return [new MemoryTransport(hub, 0), new MemoryTransport(hub, 1), new MemoryTransport(hub, 2)];
}
