/**
 * GELU (erf and tanh forms), sigmoid and tanh.
 *
 * GELU: GELU(x) − x/2 is even, so on |x| ≤ 4 it is a degree-6 polynomial in
 * t = (x/4)² ∈ [0, 1] (minimax fit by scripts/fit-polynomials.py: max error
 * 7.2e-4 erf form, 7.5e-4 tanh form), and outside it GELU is x (x > 4) or 0
 * (x < −4), off by at most 1.3e-4. This is PUMA's piecewise approach with the
 * even/odd split made explicit, which needs 2 comparisons instead of 3 and a
 * better-conditioned polynomial. Max abs error ≤ 1e-2 on any input at f = 16
 * (≈ 3e-3 measured); cost: 2 comparisons, 8 products.
 *
 * Sigmoid: σ(x) = s for x ≥ 0 and 1 − s for x < 0, where s = 1/(1 + e^−|x|):
 * e^−|x| ∈ (0, 1] keeps the reciprocal on [1, 2] where a linear guess and two
 * Newton steps suffice. Max abs error ≤ 1e-3 on any input. tanh(x) = 2σ(2x) − 1
 * (max abs error ≤ 2e-3).
 */
import { AShare, add, addPublic, mul, mulPublicScalar, publicSub, sub } from '../arith.ts';
import { encodeScalar } from '../fixed.ts';
import { mulFx, mulPublicFx } from '../truncation.ts';
import type { Party } from '../party.ts';
import { batchPairs, concatFlat, splitFlat } from './batch.ts';
import { horner } from './polynomial.ts';
import { isNegative } from './sign.ts';
import { exp } from './exp.ts';
import { reciprocalOneToTwo } from './reciprocal.ts';

const GELU_T = 4;
/** Coefficients of (GELU(x) − x/2) in t = (x/4)², lowest degree first. */
export const GELU_ERF_COEFFS = [0.00071938265821, 6.3007732541, -15.4658520472, 29.3877047168, -34.2368782791, 21.7226926797, -5.71000577457];
export const GELU_TANH_COEFFS = [0.000753384578729, 6.29584465953, -15.437417276, 29.3673860003, -34.313493017, 21.8506527804, -5.76455016223];

export type GeluForm = 'erf' | 'tanh';

export async function gelu(p: Party, x: AShare, form: GeluForm = 'erf'): Promise<AShare> {
  const f = p.fracBits;
  const k = encodeScalar(GELU_T, f);
  // above = [x > T] = [T − x < 0]; below = [x < −T] = [x + T < 0]; one comparison call for both.
  const probes = [publicSub(p, k, x), addPublic(p, x, k)];
  const [above, below] = splitFlat(await isNegative(p, concatFlat(probes)), [x.shape, x.shape]);
  const inside = publicSub(p, 1n, add(above, below));
  const s = await mulPublicFx(p, x, 1 / GELU_T);
  const t = await mulFx(p, s, s);
  const even = await horner(p, t, form === 'erf' ? GELU_ERF_COEFFS : GELU_TANH_COEFFS);
  const half = await mulPublicFx(p, x, 0.5);
  // The polynomial is garbage far outside |x| ≤ T but is multiplied by an exact 0 there.
  const [hi, mid] = await batchPairs(p, mul, [above, inside], [x, add(half, even)]);
  return add(hi, mid);
}

export async function sigmoid(p: Party, x: AShare): Promise<AShare> {
  const f = p.fracBits;
  const neg = await isNegative(p, x);
  // |x| = x − 2·[x<0]·x
  const abs = sub(x, mulPublicScalar(await mul(p, neg, x), 2n));
  const e = await exp(p, publicSub(p, 0n, abs));
  const s = await reciprocalOneToTwo(p, addPublic(p, e, encodeScalar(1, f)));
  // σ = s + [x<0]·(1 − 2s)
  const flip = publicSub(p, encodeScalar(1, f), mulPublicScalar(s, 2n));
  return add(s, await mul(p, neg, flip));
}

export async function tanh(p: Party, x: AShare): Promise<AShare> {
  const s = await sigmoid(p, mulPublicScalar(x, 2n));
  return addPublic(p, mulPublicScalar(s, 2n), -encodeScalar(1, p.fracBits));
}
