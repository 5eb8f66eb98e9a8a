/**
 * 1/√x and √x for x > 0 by Newton's iteration y ← y·(3 − x·y²)/2 from a
 * piecewise-constant initial guess.
 *
 * Why: Newton for 1/√x converges only while x·y0² < 3 and crawls (×1.5 per
 * step) when x·y0² ≪ 1, and no single smooth guess works across the five
 * decades LayerNorm variances span. Comparing x against the powers of four
 * 4^k in the declared range (one batched comparison round-trip) locates
 * x ∈ [4^k, 4^(k+1)); the guess 2^-k/√2 then puts x·y0² in [0.5, 2), from
 * where 5 steps reach a relative error of 1e-5 before rounding.
 * (Sigma and PUMA normalise by the exact leading-one position instead; the
 * comparisons here cost a few hundred bytes per element more but reuse the
 * comparison protocol.)
 *
 * Domain: [min, max] from the options (default [2^-8, 2^12]); relative error
 * ≤ 1e-2 on [0.01, 1000] at f = 16. Cost: ⌈log4(max/min)⌉ comparisons + 15 products.
 */
import { AShare, add, addPublic, mulPublicScalar, publicSub } from '../arith.ts';
import { encodeScalar } from '../fixed.ts';
import { RangeError64 } from '../errors.ts';
import { mulFx, mulTrunc } from '../truncation.ts';
import type { Party } from '../party.ts';
import { isNegative } from './sign.ts';
import { concatFlat, splitFlat } from './batch.ts';

export interface RsqrtOptions {
  /** Smallest input the guess is tuned for (default 2^-8). */
  min?: number;
  /** Largest input (default 2^12). */
  max?: number;
  /** Newton steps (default 5). */
  iterations?: number;
}

export const RSQRT_ITERATIONS = 5;

/** Piecewise-constant guess: y0 = g(k0) + Σ_k [x ≥ 4^k]·(g(k) − g(k−1)), g(k) = 2^-k/√2. */
async function initialGuess(p: Party, x: AShare, min: number, max: number): Promise<AShare> {
  const kLo = Math.floor(Math.log(min) / Math.log(4));
  const kHi = Math.ceil(Math.log(max) / Math.log(4)) - 1;
  const g = (k: number) => 2 ** -k / Math.SQRT2;
  const ks: number[] = [];
  for (let k = kLo + 1; k <= kHi; k++) ks.push(k);
  const f = p.fracBits;
  let y0 = addPublic(p, AShare.zeros(x.shape), encodeScalar(g(kLo), f));
  if (ks.length === 0) return y0;
  // All thresholds in one comparison call: [x − 4^k < 0] for every k.
  const shifted = ks.map((k) => addPublic(p, x, -encodeScalar(4 ** k, f)));
  const below = splitFlat(await isNegative(p, concatFlat(shifted)), shifted.map((s) => s.shape));
  // Each bit is an integer and each Δ an encoding, so the products need no truncation.
  ks.forEach((k, j) => {
    y0 = add(y0, mulPublicScalar(publicSub(p, 1n, below[j]), encodeScalar(g(k) - g(k - 1), f)));
  });
  return y0;
}

export async function rsqrt(p: Party, x: AShare, opts: RsqrtOptions = {}): Promise<AShare> {
  const min = opts.min ?? 2 ** -8, max = opts.max ?? 2 ** 12;
  if (!(min > 0 && max > min)) throw new RangeError64(`rsqrt range must satisfy 0 < min < max, got [${min}, ${max}]`);
  if (min < 2 ** -p.fracBits) throw new RangeError64(`rsqrt min ${min} is below the fixed-point resolution 2^-${p.fracBits}`);
  let y = await initialGuess(p, x, min, max);
  const three = encodeScalar(3, p.fracBits);
  for (let i = 0; i < (opts.iterations ?? RSQRT_ITERATIONS); i++) {
    const q = await mulFx(p, x, await mulFx(p, y, y));
    y = await mulTrunc(p, y, publicSub(p, three, q), p.fracBits + 1);
  }
  return y;
}

/** √x = x · (1/√x); same domain and relative accuracy as rsqrt, and √0 = 0. */
export async function sqrt(p: Party, x: AShare, opts: RsqrtOptions = {}): Promise<AShare> {
  return mulFx(p, x, await rsqrt(p, x, opts));
}

