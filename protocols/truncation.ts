/**
 * Fixed-point truncation of replicated shares, and the fixed-point products
 * that use it.
 *
 * Method (ABY3 Π_trunc1 in spirit, SecureML's two-party share truncation at
 * its core): turn the sharing of z into a two-party additive sharing
 * z = u0 + u1 with u0 held by party 0 and u1 by party 1; party 0 takes
 * ⌊u0 / 2^d⌋ and party 1 takes −⌊−u1 / 2^d⌋, which add up to ⌊z / 2^d⌋ or
 * ⌊z / 2^d⌋ + 1 unless u0 + u1 overflowed as signed 64-bit integers. The two
 * truncated halves are then re-randomised into a replicated sharing with keys
 * party 2 does not hold and sent to party 2.
 *
 * Error: at most one unit in the last place (2^-f after a fixed-point product),
 * except with probability (|z| + 1) / 2^64 per element, where the result is off
 * by about ±2^(64−d) (a wrong answer). For f = 16 and |x·y| < 2^8 that is below
 * 2^-24 per product; `scripts/bench-engine.ts` measures both rates.
 *
 * Costs (ring elements of 8 bytes, summed over parties):
 *   truncate(x)         1 round, 2 elements  (party 1 already knows x1 + x2)
 *   mulFx / matmulFx    2 rounds, 3 elements per output: party 2 sends its
 *                       3-out-of-3 product share to party 1 (giving the
 *                       two-party sharing directly), then 2 elements to party 2.
 *                       A plain product followed by truncate costs 5.
 */
import { AShare, broadcastShare, matmulLocal, mulLocal, mulPublicScalar } from './arith.ts';
import { asRing, type Party } from './party.ts';
import { addInto, negInto, sarInto, sameShape, broadcastShape, subInto, type Shape } from './ring.ts';
import { encodeScalar } from './fixed.ts';
import { RangeError64 } from './errors.ts';

/**
 * Re-shares the two-party truncation: u is party 0's u0 or party 1's u1 (null at party 2).
 * Party 0 sends y0 = t0 − s + m, party 1 sends y2 = t1 − m, both to party 2, where
 * (s, m) come from k1 (parties 0 and 1 only). Result: (y0, y1 = s, y2).
 */
async function truncateTwoParty(p: Party, u: BigInt64Array | null, n: number, d: number, shape: Shape): Promise<AShare> {
  if (p.index === 2) {
    const [y2, y0] = await p.round([], [1, 0]);
    return new AShare(asRing(y2, n, 'truncation from party 1'), asRing(y0, n, 'truncation from party 0'), shape);
  }
  const t = new BigInt64Array(n);
  if (p.index === 0) sarInto(t, u!, d);
  else negInto(t, sarInto(t, negInto(t, u!), d));
  const k1 = p.index === 0 ? p.rand.next : p.rand.own;
  const s = k1.ring(n), m = k1.ring(n);
  if (p.index === 0) {
    const y0 = addInto(t, subInto(t, t, s), m);
    await p.round([[2, y0]], []);
    return new AShare(y0, s, shape);
  }
  const y2 = subInto(t, t, m);
  await p.round([[2, y2]], []);
  return new AShare(s, y2, shape);
}

/** Every party checks d before any message moves, so a bad d fails everywhere instead of stalling party 2. */
function checkShift(d: number): void {
  if (!Number.isInteger(d) || d < 0 || d > 62) throw new RangeError64(`truncation shift must be an integer in [0, 62], got ${d}`);
}

/** ⌊x / 2^d⌋ (± 1 unit, see the error bound above): 1 round. */
export async function truncate(p: Party, x: AShare, d: number = p.fracBits): Promise<AShare> {
  checkShift(d);
  if (d === 0) return x;
  const u = p.index === 0 ? x.a : p.index === 1 ? addInto(new BigInt64Array(x.size), x.a, x.b) : null;
  return truncateTwoParty(p, u, x.size, d, x.shape);
}

/** Truncates a 3-out-of-3 sharing z (party i holds z_i): party 2 hands z2 to party 1, then as above. 2 rounds. */
async function truncate3of3(p: Party, z: BigInt64Array, d: number, shape: Shape): Promise<AShare> {
  const n = z.length;
  let u: BigInt64Array | null = null;
  if (p.index === 2) await p.round([[1, z]], []);
  else if (p.index === 1) {
    const [z2] = await p.round([], [2]);
    u = addInto(z, z, asRing(z2, n, 'product share from party 2'));
  } else {
    await p.round([], []);
    u = z;
  }
  return truncateTwoParty(p, u, n, d, shape);
}

/** ⌊x·y / 2^d⌋ (± 1 unit): a product and its truncation in 2 rounds. */
export async function mulTrunc(p: Party, x: AShare, y: AShare, d: number): Promise<AShare> {
  checkShift(d);
  if (!sameShape(x.shape, y.shape)) {
    const shape = broadcastShape(x.shape, y.shape, 'mul');
    x = broadcastShare(x, shape);
    y = broadcastShare(y, shape);
  }
  return truncate3of3(p, mulLocal(p, x, y), d, x.shape);
}

/** Fixed-point product x·y / 2^f. */
export function mulFx(p: Party, x: AShare, y: AShare): Promise<AShare> {
  return mulTrunc(p, x, y, p.fracBits);
}

/** Fixed-point matrix product (x @ y) / 2^f. */
export async function matmulFx(p: Party, x: AShare, y: AShare): Promise<AShare> {
  const z = await matmulLocal(p, x, y);
  return truncate3of3(p, z.data, p.fracBits, z.shape);
}

/** x · c for a public real c, in fixed point (1 round). */
export async function mulPublicFx(p: Party, x: AShare, c: number): Promise<AShare> {
  return truncate(p, mulPublicScalar(x, encodeScalar(c, p.fracBits)), p.fracBits);
}
