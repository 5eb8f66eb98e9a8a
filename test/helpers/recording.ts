/**
 * A Transport wrapper that logs every message a party sends and receives,
 * tagged with the protocol round it belongs to, and three-party sessions built
 * on it. Used to check communication costs and to capture a party's view.
 */
import { Party, type PartyOptions } from '../../protocols/party.ts';
import { createMemoryTransports } from '../../protocols/memory-transport.ts';
import type { PartyIndex, RecvOptions, Transport, TransportStats } from '../../protocols/transport.ts';

export interface Sent {
  from: PartyIndex;
  to: PartyIndex;
  bytes: number;
  /** The party's round counter when the message was sent (Party.round sends, then counts); -1 during setup. */
  round: number;
}

export interface Received {
  from: PartyIndex;
  to: PartyIndex;
  /** A copy of the payload, taken when the receive resolved. */
  data: Uint8Array;
  /** Index of the round the receive belongs to (Party.round counts, then receives); -1 during setup. */
  round: number;
}

export class RecordingTransport implements Transport {
  readonly inner: Transport;
  readonly sent: Sent[] = [];
  readonly received: Received[] = [];
  /** Set once the Party exists, so messages can be tagged with its round counter. */
  owner: Party | null = null;

  constructor(inner: Transport) {
    this.inner = inner;
  }

  get party(): PartyIndex {
    return this.inner.party;
  }

  get stats(): TransportStats {
    return this.inner.stats;
  }

  send(to: PartyIndex, payload: Uint8Array): void {
    const round = this.owner ? this.owner.cost.rounds : -1;
    this.inner.send(to, payload);
    this.sent.push({ from: this.party, to, bytes: payload.byteLength, round });
  }

  async recv(from: PartyIndex, options?: RecvOptions): Promise<Uint8Array> {
    const round = this.owner ? this.owner.cost.rounds - 1 : -1;
    const m = await this.inner.recv(from, options);
    this.received.push({ from, to: this.party, data: m.slice(), round });
    return m;
  }

  close(reason?: string): void {
    this.inner.close(reason);
  }
}

export interface RecordedSession {
  parties: [Party, Party, Party];
  transports: [RecordingTransport, RecordingTransport, RecordingTransport];
  close(): void;
}

/** Three parties over recording transports (setup included in the logs with round −1). */
export async function recordedSession(opts: PartyOptions & { timeoutMs?: number } = {}): Promise<RecordedSession> {
  const transports = createMemoryTransports({ timeoutMs: opts.timeoutMs ?? 10_000 }).map((x) => new RecordingTransport(x)) as RecordedSession['transports'];
  const parties = (await Promise.all(transports.map((x) => Party.setup(x, opts)))) as RecordedSession['parties'];
  parties.forEach((p, i) => (transports[i].owner = p));
  return { parties, transports, close: () => transports.forEach((x) => x.close('session done')) };
}
