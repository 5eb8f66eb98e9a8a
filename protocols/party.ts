/**
 * One party's view of a three-party session: its index, transport, compute
 * backend, fixed-point precision, correlated randomness and cost counters.
 *
 * Replicated sharing (ABY3): x = x0 + x1 + x2 and party i holds (x_i, x_{i+1}).
 * Key k_j is known to parties j−1 and j (exactly the two holders of component j),
 * so component j can be drawn without communication by both of them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { AbortedError, ProtocolError } from './errors.ts';
import { DEFAULT_FRAC_BITS, checkFracBits } from './fixed.ts';
import { PrfStream } from './prf.ts';
import { subInto } from './ring.ts';
import { checkPartyIndex, type PartyIndex, type Transport } from './transport.ts';
import type { ComputeBackend } from './backend.ts';
import { JsBackend } from './backend-js.ts';

export interface PartyOptions {
  fracBits?: number;
  backend?: ComputeBackend;
  /** Receive timeout for every protocol step (default: the transport's). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface CostCounters {
  /** Communication rounds this party has taken part in (identical across parties). */
  rounds: number;
}

/** The correlated randomness of one party, from the keys agreed in setup. */
export class Randomness {
  /** Stream of k_i (shared with party i−1). */
  readonly own: PrfStream;
  /** Stream of k_{i+1} (shared with party i+1). */
  readonly next: PrfStream;
  /** Stream known to all three parties (public coins). */
  readonly common: PrfStream;

  constructor(own: Uint8Array, next: Uint8Array, common: Uint8Array) {
    this.own = new PrfStream(own, 'pair');
    this.next = new PrfStream(next, 'pair');
    this.common = new PrfStream(common, 'common');
  }

  /** α_i of an arithmetic zero-sharing: α_0 + α_1 + α_2 = 0. */
  zeroRing(n: number): BigInt64Array {
    const a = this.own.ring(n);
    return subInto(a, a, this.next.ring(n));
  }

  /** α_i of an XOR zero-sharing over `n` 32-bit words. */
  zeroWords(n: number): Uint32Array {
    const a = this.own.words(n), b = this.next.words(n);
    for (let i = 0; i < n; i++) a[i] ^= b[i];
    return a;
  }
}

export class Party {
  readonly index: PartyIndex;
  readonly transport: Transport;
  readonly backend: ComputeBackend;
  readonly fracBits: number;
  readonly rand: Randomness;
  readonly cost: CostCounters = { rounds: 0 };
  readonly timeoutMs: number | undefined;
  readonly signal: AbortSignal | undefined;

  private constructor(transport: Transport, rand: Randomness, opts: PartyOptions) {
    this.index = transport.party;
    this.transport = transport;
    this.rand = rand;
    this.backend = opts.backend ?? new JsBackend();
    this.fracBits = checkFracBits(opts.fracBits ?? DEFAULT_FRAC_BITS);
    this.timeoutMs = opts.timeoutMs;
    this.signal = opts.signal;
  }

  /** Party i+1 (mod 3). */
  get next(): PartyIndex {
    return ((this.index + 1) % 3) as PartyIndex;
  }

  /** Party i−1 (mod 3). */
  get prev(): PartyIndex {
    return ((this.index + 2) % 3) as PartyIndex;
  }

  /**
   * Session setup (one round): party i samples k_i and sends it to party i−1,
   * and a contribution to the common key to both others. Over the daemon's
   * Noise channels these keys never travel in clear.
   */
  static async setup(transport: Transport, opts: PartyOptions = {}): Promise<Party> {
    const i = checkPartyIndex(transport.party);
    checkFracBits(opts.fracBits ?? DEFAULT_FRAC_BITS); // before any key leaves: a bad option must not burn the peers' setup
    const prev = ((i + 2) % 3) as PartyIndex, next = ((i + 1) % 3) as PartyIndex;
    const own = randomBytes(16), mine = randomBytes(16);
    transport.send(prev, concatBytes(own, mine));
    transport.send(next, mine.slice());
    const wait = { timeoutMs: opts.timeoutMs, signal: opts.signal };
    const [fromNext, fromPrev] = await Promise.all([transport.recv(next, wait), transport.recv(prev, wait)]);
    if (fromNext.length !== 32 || fromPrev.length !== 16) {
      throw new ProtocolError(`setup: expected 32 bytes from party ${next} and 16 from party ${prev}, got ${fromNext.length} and ${fromPrev.length}`);
    }
    const contributions: Uint8Array[] = [];
    contributions[i] = mine;
    contributions[next] = fromNext.subarray(16);
    contributions[prev] = fromPrev;
    const common = createHash('sha256').update(concatBytes(...contributions)).digest().subarray(0, 16);
    const party = new Party(transport, new Randomness(own, fromNext.subarray(0, 16), common), opts);
    party.cost.rounds++;
    return party;
  }

  private waitOptions() {
    return { timeoutMs: this.timeoutMs, signal: this.signal };
  }

  /**
   * One communication round: sends `out` to each listed party, then receives
   * from each listed source. Every party calls this once per round (possibly
   * with nothing to send or receive) so round counts agree.
   */
  async round(out: readonly (readonly [PartyIndex, ArrayBufferView])[], from: readonly PartyIndex[]): Promise<Uint8Array[]> {
    if (this.signal?.aborted) throw new AbortedError('protocol aborted', this.signal.reason);
    for (const [to, view] of out) this.transport.send(to, new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
    this.cost.rounds++;
    return Promise.all(from.map((j) => this.transport.recv(j, this.waitOptions())));
  }
}

/** Reinterprets received bytes as `n` ring elements, refusing a message of the wrong size. */
export function asRing(bytes: Uint8Array, n: number, what: string): BigInt64Array {
  if (bytes.byteLength !== n * 8) throw new ProtocolError(`${what}: expected ${n * 8} bytes (${n} ring elements), got ${bytes.byteLength}`);
  if (bytes.byteOffset % 8 === 0) return new BigInt64Array(bytes.buffer, bytes.byteOffset, n);
  return new BigInt64Array(copyBytes(bytes).buffer);
}

/** Reinterprets received bytes as `n` 32-bit words, refusing a message of the wrong size. */
export function asWords(bytes: Uint8Array, n: number, what: string): Uint32Array {
  if (bytes.byteLength !== n * 4) throw new ProtocolError(`${what}: expected ${n * 4} bytes (${n} words), got ${bytes.byteLength}`);
  if (bytes.byteOffset % 4 === 0) return new Uint32Array(bytes.buffer, bytes.byteOffset, n);
  return new Uint32Array(copyBytes(bytes).buffer);
}

/**
 * A copy in a buffer of its own. Not `bytes.slice()`: on a Node Buffer (what
 * sockets deliver) slice() is a view into a shared pool, not a copy.
 */
function copyBytes(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}

function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
