/**
 * The receive side every Transport shares: the messages from one peer in one
 * session, in order, and at most one receive waiting for them, with its
 * timeout and abort. Implementations push what arrives and end the inbox
 * when nothing more will come.
 */
import { AbortedError, PartyError, SessionClosedError, TimeoutError } from './errors.ts';
import type { PartyIndex } from './transport.ts';

interface Waiter {
  resolve: (m: Uint8Array) => void;
  reject: (e: Error) => void;
}

export class Inbox {
  readonly queue: Uint8Array[] = [];
  private waiter: Waiter | null = null;
  /** Why no more messages will come; queued ones are still delivered unless discarded. */
  ended: string | null = null;

  push(m: Uint8Array): void {
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w.resolve(m);
    } else this.queue.push(m);
  }

  /** No more messages; with `discard`, not even the ones already here. A waiting receive fails now. */
  end(reason: string, discard = false): void {
    if (this.ended !== null) return;
    this.ended = reason;
    if (discard) this.queue.length = 0;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(new SessionClosedError(reason));
  }

  /** The next message for party `me` from party `from`: queued, or the next to arrive within `timeoutMs`. */
  take(me: PartyIndex, from: PartyIndex, timeoutMs: number, signal?: AbortSignal): Promise<Uint8Array> {
    const m = this.queue.shift();
    if (m !== undefined) return Promise.resolve(m);
    if (this.ended !== null) return Promise.reject(new SessionClosedError(this.ended));
    if (this.waiter) return Promise.reject(new PartyError(`party ${me} already has a pending receive from party ${from}`));
    if (signal?.aborted) return Promise.reject(new AbortedError(`receive from party ${from} aborted`, signal.reason));
    return new Promise<Uint8Array>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = () => {
        this.waiter = null;
        done();
        reject(new AbortedError(`receive from party ${from} aborted`, signal?.reason));
      };
      const timer = setTimeout(() => {
        this.waiter = null;
        done();
        reject(new TimeoutError(`party ${me}: no message from party ${from} within ${timeoutMs} ms`));
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiter = {
        resolve: (msg) => {
          done();
          resolve(msg);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      };
    });
  }
}
