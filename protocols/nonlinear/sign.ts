/** Comparison results as arithmetic 0/1 shares, the form the nonlinear functions combine. */
import { AShare, addPublic, publicSub } from '../arith.ts';
import { bitToArith } from '../conversions.ts';
import { ltz } from '../compare.ts';
import { encodeScalar } from '../fixed.ts';
import type { Party } from '../party.ts';

/** [x < 0] as an integer 0/1 sharing. */
export async function isNegative(p: Party, x: AShare): Promise<AShare> {
  return bitToArith(p, await ltz(p, x));
}

/** [x ≥ c] for a public real c, as an integer 0/1 sharing. */
export async function atLeast(p: Party, x: AShare, c: number): Promise<AShare> {
  const below = await isNegative(p, addPublic(p, x, -encodeScalar(c, p.fracBits)));
  return publicSub(p, 1n, below);
}
