/**
 * Softmax along an axis: exp(x − max) / Σ exp(x − max).
 *
 * The row maximum comes from a comparison tournament (log2(n) levels, each one
 * vectorised comparison over all rows); x − max ≤ 0 is clipped at −64 so exp
 * stays in its domain whatever the input (e^-64 is 0 at any useful precision),
 * and the row sums lie in [1, n], inside the reciprocal's domain for n ≤ 256.
 * Everything after the maximum runs on all rows at once.
 * Max abs error ≤ 1e-2 for rows with values in [−20, 20] (n ≤ 256, f = 16).
 */
import { AShare, broadcastShare, sub, sumLastAxis, transposeShare } from '../arith.ts';
import { maxLastAxis } from '../compare.ts';
import { normalizeAxis } from '../ring.ts';
import { mulFx } from '../truncation.ts';
import type { Party } from '../party.ts';
import { RangeError64 } from '../errors.ts';
import { clipBelow, exp } from './exp.ts';
import { reciprocal } from './reciprocal.ts';

export const SOFTMAX_CLIP = -64;

export async function softmax(p: Party, x: AShare, axis = -1): Promise<AShare> {
  const rank = x.shape.length;
  const ax = normalizeAxis(axis, rank);
  if (ax !== rank - 1) {
    const perm = [...Array(rank).keys()];
    perm[ax] = rank - 1;
    perm[rank - 1] = ax;
    return transposeShare(await softmax(p, transposeShare(x, perm), -1), perm);
  }
  const n = x.shape[rank - 1];
  if (n > 256) throw new RangeError64(`softmax over ${n} > 256 elements: row sums would leave the reciprocal's domain`);
  const keep = [...x.shape.slice(0, -1), 1];
  const m = (await maxLastAxis(p, x)).reshape(keep);
  const d = await clipBelow(p, sub(x, broadcastShare(m, x.shape)), SOFTMAX_CLIP);
  const e = await exp(p, d, { clipBelow: null });
  const r = (await reciprocal(p, sumLastAxis(e))).reshape(keep);
  return mulFx(p, e, broadcastShare(r, x.shape));
}
