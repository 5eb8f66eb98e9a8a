/** Evaluating a secure function on dealt fixed-point inputs and measuring its error against float64. */
import { reveal, type AShare } from '../../protocols/arith.ts';
import { decode, encode } from '../../protocols/fixed.ts';
import type { Party } from '../../protocols/party.ts';
import type { Shape } from '../../protocols/ring.ts';
import { share } from './deal.ts';
import { runParties } from './three-parties.ts';

/** Runs `fn` on dealt fixed-point shares of `values` and returns the decoded opened result. */
export async function evalFx(values: ArrayLike<number>, shape: Shape, fn: (p: Party, x: AShare) => Promise<AShare>): Promise<{ out: Float64Array; shape: Shape }> {
  const x = encode(values, shape);
  const [r] = await runParties(async (p) => reveal(p, await fn(p, share(p, x))));
  return { out: decode(r), shape: r.shape };
}

export interface ErrorStats {
  maxAbs: number;
  maxRel: number;
  worstInput: number;
}

/** Max absolute and relative error of `got` against `want(x)` (relative only where |want| ≥ relFloor). */
export function errors(xs: ArrayLike<number>, got: ArrayLike<number>, want: (x: number, i: number) => number, relFloor = 0): ErrorStats {
  let maxAbs = 0, maxRel = 0, worstInput = NaN;
  for (let i = 0; i < got.length; i++) {
    const w = want(xs[i], i);
    const e = Math.abs(got[i] - w);
    if (e > maxAbs) {
      maxAbs = e;
      worstInput = xs[i];
    }
    if (Math.abs(w) >= relFloor && Math.abs(w) > 0) maxRel = Math.max(maxRel, e / Math.abs(w));
  }
  return { maxAbs, maxRel, worstInput };
}
