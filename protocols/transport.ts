/**
 * The engine's only view of the network: one Transport per session and party.
 * Messages between a pair of parties arrive in order; every wait can time out
 * or be aborted. The daemon supplies a libp2p implementation; tests and
 * benchmarks use the in-memory one (memory-transport.ts).
 */
import { PartyError, SessionClosedError } from './errors.ts';

export type PartyIndex = 0 | 1 | 2;
export const PARTIES = 3;

export interface RecvOptions {
  /** Overrides the transport's default receive timeout for this wait. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface TransportStats {
  bytesSent: number;
  messagesSent: number;
  bytesReceived: number;
  messagesReceived: number;
}

export interface Transport {
  /** This party's index in the session. */
  readonly party: PartyIndex;
  /**
   * Queues `payload` for party `to`. Never blocks; the transport owns the bytes
   * from here on (callers may not reuse the buffer). Throws SessionClosedError
   * after close.
   */
  send(to: PartyIndex, payload: Uint8Array): void;
  /** The next message from party `from`, in send order. Rejects with TimeoutError, AbortedError or SessionClosedError. */
  recv(from: PartyIndex, options?: RecvOptions): Promise<Uint8Array>;
  /** Ends the session for this party: pending and later receives fail, peers see the close. Idempotent. */
  close(reason?: string): void;
  readonly stats: TransportStats;
}

export function checkPartyIndex(i: number, what = 'party index'): PartyIndex {
  if (i !== 0 && i !== 1 && i !== 2) throw new PartyError(`${what} must be 0, 1 or 2 (a session has exactly ${PARTIES} parties), got ${i}`);
  return i;
}

/**
 * Checks a send or receive before it starts: the other side is a party index,
 * not this party's own, and the session is open (`closed`: why it is not).
 */
export function checkPeer(self: PartyIndex, other: number, role: 'send target' | 'receive source', closed: string | null): PartyIndex {
  const p = checkPartyIndex(other, role);
  const send = role === 'send target';
  if (p === self) throw new PartyError(`party ${self} cannot ${send ? 'send to' : 'receive from'} itself`);
  if (closed !== null) throw new SessionClosedError(`${send ? 'send' : 'receive'} on closed session (party ${self}: ${closed})`);
  return p;
}

export function newStats(): TransportStats {
  return { bytesSent: 0, messagesSent: 0, bytesReceived: 0, messagesReceived: 0 };
}
