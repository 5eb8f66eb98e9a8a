/** Test-side dealer: shares a public tensor once so all three parties get pairs of the same sharing. */
import { AShare, dealShares, fromPair, type SharePair } from '../../protocols/arith.ts';
import type { RingTensor } from '../../protocols/ring.ts';
import type { Party } from '../../protocols/party.ts';

type Pairs = [SharePair, SharePair, SharePair];

/** A memoising dealer: `share(p, x)` deals `x` on first use and hands party p its pair of that one sharing. */
export function dealer(): (p: Party, x: RingTensor) => AShare {
  const dealt = new WeakMap<RingTensor, Pairs>();
  return (p, x) => {
    let pairs = dealt.get(x);
    if (!pairs) dealt.set(x, (pairs = dealShares(x)));
    return fromPair(pairs[p.index]);
  };
}

/** A module-wide memoising dealer (each RingTensor object is dealt at most once). */
export const share = dealer();
