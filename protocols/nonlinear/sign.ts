/** Comparison results as arithmetic 0/1 shares, the form the nonlinear functions combine. */
import type { AShare } from '../arith.ts';
import { bitToArith } from '../conversions.ts';
import { ltz } from '../compare.ts';
import type { Party } from '../party.ts';

/** [x < 0] as an integer 0/1 sharing. */
export async function isNegative(p: Party, x: AShare): Promise<AShare> {
  return bitToArith(p, await ltz(p, x));
}
