/** Deals a tensor once and hands each party its own pair, so all three hold the same sharing. */
import { AShare, dealShares, fromPair, reveal } from '../../protocols/arith.ts';
import { decode, encode } from '../../protocols/fixed.ts';
import type { Party } from '../../protocols/party.ts';
import type { RingTensor, Shape } from '../../protocols/ring.ts';
import { runParties } from './three-parties.ts';

const dealt = new WeakMap<RingTensor, ReturnType<typeof dealShares>>();

export function shareOf(p: Party, x: RingTensor): AShare {
  let pairs = dealt.get(x);
  if (!pairs) dealt.set(x, (pairs = dealShares(x)));
  return fromPair(pairs[p.index]);
}

/** Runs `fn` on dealt fixed-point shares of `values` and returns the decoded opened result. */
export async function evalFx(values: ArrayLike<number>, shape: Shape, fn: (p: Party, x: AShare) => Promise<AShare>): Promise<{ out: Float64Array; shape: Shape }> {
  const x = encode(values, shape);
  const [r] = await runParties(async (p) => reveal(p, await fn(p, shareOf(p, x))));
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
