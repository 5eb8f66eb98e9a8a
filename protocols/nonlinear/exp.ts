/**
 * exp(x) by the limit method with a Taylor base (CrypTen's
 * exp(x) = (1 + x/2^n)^(2^n), with the base extended to fourth order):
 * b = 1 + u + u²/2 + u³/6 + u⁴/24 for u = x/64, then 6 squarings.
 *
 * Why this method: it needs only products (no bit decomposition). The
 * fourth-order base is positive for every u (an even-degree Taylor polynomial
 * of exp), so no input can make the squarings explode, and its error term
 * u⁵/120 ·64 is 5e-4 relative even at x = −16. Fewer squarings than the
 * classic first-order base (6 instead of 8–10) mean rounding errors are
 * amplified 64× rather than 256×. The linear term is taken exactly from x's
 * encoding (x·2^(f−6) at scale 2^2f), so the base carries a single rounding.
 * By default inputs are first clipped to x ≥ −64 (e^-64 is 0 at any f ≤ 30)
 * so the squarings of a tiny base do not waste the fixed-point range. Upper
 * end: x ≤ 5 keeps the last product below 2^40 (wrap probability < 2^-24 per
 * element, see truncation.ts).
 *
 * Accuracy (f = 16; test/nonlinear.test.ts, scripts/bench-engine.ts): relative
 * error ≤ 2e-2 wherever exp(x) ≥ 2^-9 (x ≥ −6.2) and absolute error ≤ 4e-5
 * below, on x ∈ [−16, 4]; the output cannot resolve values under 2^-16.
 * Cost: 18 rounds and 31 ring elements per input, plus the clip (a comparison).
 */
import { AShare, add, addPublic, mulPublicScalar } from '../arith.ts';
import { encodeScalar } from '../fixed.ts';
import { mulFx, truncate } from '../truncation.ts';
import type { Party } from '../party.ts';
import { relu } from '../compare.ts';
import { batchPairs } from './batch.ts';

export const EXP_SQUARINGS = 6;

export interface ExpOptions {
  /** Inputs below this are treated as this (default −64); null skips the clip when the caller knows x ≥ −64 already. */
  clipBelow?: number | null;
}

/** max(x, c) for a public c: c + relu(x − c). */
export async function clipBelow(p: Party, x: AShare, c: number): Promise<AShare> {
  const k = encodeScalar(c, p.fracBits);
  return addPublic(p, await relu(p, addPublic(p, x, -k)), k);
}

export async function exp(p: Party, x: AShare, opts: ExpOptions = {}): Promise<AShare> {
  const lower = opts.clipBelow === undefined ? -64 : opts.clipBelow;
  if (lower !== null) x = await clipBelow(p, x, lower);
  const f = p.fracBits;
  const u = await truncate(p, x, EXP_SQUARINGS);
  const u2 = await mulFx(p, u, u);
  const [u3, u4] = await batchPairs(p, mulFx, [u2, u2], [u, u2]);
  // Σ c_k·u^k at scale 2^2f, truncated once: u itself enters exactly as x·2^(f−6).
  let acc = mulPublicScalar(x, 1n << BigInt(f - EXP_SQUARINGS));
  acc = add(acc, mulPublicScalar(u2, encodeScalar(1 / 2, f)));
  acc = add(acc, mulPublicScalar(u3, encodeScalar(1 / 6, f)));
  acc = add(acc, mulPublicScalar(u4, encodeScalar(1 / 24, f)));
  let b = addPublic(p, await truncate(p, acc, f), encodeScalar(1, f));
  for (let i = 0; i < EXP_SQUARINGS; i++) b = await mulFx(p, b, b);
  return b;
}
