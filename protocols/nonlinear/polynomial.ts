/**
 * Polynomial evaluation on fixed-point shares by Horner's rule.
 *
 * Coefficients are applied to a variable normalised to about [−1, 1]
 * (callers rescale x first), so every intermediate stays O(1): that keeps the
 * truncation wrap probability (|z|/2^64 per product) tiny and lets
 * coefficients far below 2^-f (e.g. 3e-7 for x^12 terms) be folded into
 * representable ones. Each Horner step is one fixed-point product (2 rounds).
 */
import { AShare, addPublic } from '../arith.ts';
import { encodeScalar } from '../fixed.ts';
import { mulFx, mulPublicFx } from '../truncation.ts';
import type { Party } from '../party.ts';
import { RangeError64 } from '../errors.ts';

/** Σ_k coeffs[k]·t^k, highest degree last. */
export async function horner(p: Party, t: AShare, coeffs: readonly number[]): Promise<AShare> {
  if (coeffs.length < 2) throw new RangeError64('horner needs a polynomial of degree ≥ 1');
  const n = coeffs.length - 1;
  let h = addPublic(p, await mulPublicFx(p, t, coeffs[n]), encodeScalar(coeffs[n - 1], p.fracBits));
  for (let k = n - 2; k >= 0; k--) {
    h = addPublic(p, await mulFx(p, h, t), encodeScalar(coeffs[k], p.fracBits));
  }
  return h;
}
