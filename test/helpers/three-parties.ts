/** Runs one function per party concurrently over an in-memory session. */
import { Party, type PartyOptions } from '../../protocols/party.ts';
import { createMemoryTransports, type MemoryTransportOptions } from '../../protocols/memory-transport.ts';
import type { PartyIndex } from '../../protocols/transport.ts';

export async function runParties<T>(
  fn: (p: Party) => Promise<T>,
  opts: PartyOptions & MemoryTransportOptions = {},
): Promise<[T, T, T]> {
  const ts = createMemoryTransports({ timeoutMs: opts.timeoutMs ?? 10_000 });
  const parties = await Promise.all(ts.map((t) => Party.setup(t, opts)));
  try {
    return (await Promise.all(parties.map((p) => fn(p)))) as [T, T, T];
  } finally {
    for (const t of ts) t.close('test done');
  }
}

/** Sets up a session and returns its parties (caller closes the transports). */
export async function setupParties(opts: PartyOptions & MemoryTransportOptions = {}): Promise<Party[]> {
  const ts = createMemoryTransports({ timeoutMs: opts.timeoutMs ?? 10_000 });
  return Promise.all(ts.map((t) => Party.setup(t, opts)));
}

export const PARTY_INDICES: readonly PartyIndex[] = [0, 1, 2];

/** Deterministic pseudo-random reals in [lo, hi) (mulberry32), so failures reproduce. */
export function uniform(n: number, lo: number, hi: number, seed = 1): Float64Array {
  let s = seed >>> 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * (hi - lo));
  }
  return out;
}

/** Pseudo-random full-range ring elements. */
export function randomRing(n: number, seed = 7): BigInt64Array {
  const u = uniform(2 * n, 0, 4294967296, seed);
  const out = new BigInt64Array(n);
  const v = new Uint32Array(out.buffer);
  for (let i = 0; i < 2 * n; i++) v[i] = u[i];
  return out;
}
