/**
 * 1/x for x > 0 by Newton–Raphson, y ← y·(2 − x·y), from CrypTen's initial
 * guess y0 = 3·exp(0.5 − x) + 0.003.
 *
 * Why: the guess satisfies 0 < x·y0 < 2 for every 0 < x < 660 (the largest
 * x·y0 is 1.82 at x = 1), which is exactly Newton's convergence condition, so
 * no comparison or bit decomposition is needed. The error e = 1 − x·y squares
 * every step; it starts at most 0.968 (x ≈ 10, where the guess is 30× too
 * small and the first steps merely double y), so 9 steps reach 6e-8 before
 * rounding (CrypTen uses 10). Domain: (0, 600]; relative error ≤ 1e-2 on
 * [0.05, 100] at f = 16, limited by the output's resolution 2^-16 / (1/x).
 * Cost: exp + 9 × 2 products.
 */
import { AShare, addPublic, mulPublicScalar, publicSub } from '../arith.ts';
import { encodeScalar } from '../fixed.ts';
import { mulFx, mulPublicFx } from '../truncation.ts';
import type { Party } from '../party.ts';
import { exp } from './exp.ts';

export interface NewtonOptions {
  iterations?: number;
}

export const RECIPROCAL_ITERATIONS = 9;

export async function reciprocal(p: Party, x: AShare, opts: NewtonOptions = {}): Promise<AShare> {
  const f = p.fracBits;
  const e = await exp(p, publicSub(p, encodeScalar(0.5, f), x));
  const y0 = addPublic(p, mulPublicScalar(e, 3n), encodeScalar(0.003, f));
  return newtonReciprocal(p, x, y0, opts.iterations ?? RECIPROCAL_ITERATIONS);
}

/** Newton steps for 1/x from a starting guess with 0 < x·y0 < 2. */
export async function newtonReciprocal(p: Party, x: AShare, y: AShare, iterations: number): Promise<AShare> {
  const two = encodeScalar(2, p.fracBits);
  for (let i = 0; i < iterations; i++) {
    const xy = await mulFx(p, x, y);
    y = await mulFx(p, y, publicSub(p, two, xy));
  }
  return y;
}

/**
 * 1/x for x ∈ [1, 2] (e.g. 1 + e^-|x| in the sigmoid): the linear guess
 * 24/17 − 8/17·x has |1 − x·y0| ≤ 1/17, so 2 Newton steps reach 1.2e-5.
 */
export async function reciprocalOneToTwo(p: Party, x: AShare): Promise<AShare> {
  const y0 = publicSub(p, encodeScalar(24 / 17, p.fracBits), await mulPublicFx(p, x, 8 / 17));
  return newtonReciprocal(p, x, y0, 2);
}
