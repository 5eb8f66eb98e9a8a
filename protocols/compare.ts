/**
 * Comparisons and the operators built on them: sign, less-than, ReLU,
 * selection and max. All are the sign bit of a difference (ABY3 §5.3: MSB via
 * A2B), so each is exact when the difference does not wrap, i.e. |x − y| < 2^63
 * (for fixed-point values with f fractional bits: |x − y| < 2^(63−f)).
 *
 * Costs for n elements (bytes summed over the three parties, W = ⌈n/32⌉):
 *   ltz           8 rounds   2428·W
 *   lessThan     10 rounds   2428·W + 24·n      (msb, then bit injection)
 *   relu         10 rounds   2428·W + 56·n      (msb, then the fused x·bit)
 *   maxPairwise  10 rounds   2428·W + 56·n
 *   select        1 round    24·n
 *   maxLastAxis  10·⌈log2 cols⌉ rounds; each level is one maxPairwise on
 *                rows·⌊m/2⌋ pairs (m = the row length at that level).
 */
import { AShare, add, mul, sub, transposeShare } from './arith.ts';
import { BShare, not } from './boolean.ts';
import { bitToArith, msb, mulBit } from './conversions.ts';
import { ShapeError } from './errors.ts';
import type { Party } from './party.ts';
import { limbs, normalizeAxis, sameShape } from './ring.ts';

/** [x < 0] as a 1-bit boolean share (the sign bit). */
export async function ltz(p: Party, x: AShare): Promise<BShare> {
  return msb(p, x);
}

/** [x < y] as an arithmetic 0/1 (integer, not fixed-point scaled). Needs |x − y| < 2^63. */
export async function lessThan(p: Party, x: AShare, y: AShare): Promise<AShare> {
  return bitToArith(p, await msb(p, sub(x, y)));
}

/** max(x, 0) = x · ¬[x < 0]: the bit multiplies the ring value, so no truncation is needed. */
export async function relu(p: Party, x: AShare): Promise<AShare> {
  return mulBit(p, x, not(p, await msb(p, x)));
}

/** c ? a : b for an arithmetic 0/1 c, as b + c·(a − b): one ring product, 1 round. */
export async function select(p: Party, c: AShare, a: AShare, b: AShare): Promise<AShare> {
  return add(b, await mul(p, c, sub(a, b)));
}

/** Elementwise max(x, y) = x + [x < y]·(y − x). Needs |x − y| < 2^63. */
export async function maxPairwise(p: Party, x: AShare, y: AShare): Promise<AShare> {
  if (!sameShape(x.shape, y.shape)) throw new ShapeError(`maxPairwise: shapes [${x.shape.join(', ')}] and [${y.shape.join(', ')}] differ`);
  const d = sub(y, x);
  return add(x, await mulBit(p, d, await msb(p, sub(x, y))));
}

/** Columns [from, from + 2·count) step 2 of a [rows, cols] limb array, as [rows, count]. */
function everyOther(src: BigInt64Array, rows: number, cols: number, from: number, count: number): BigInt64Array {
  const out = new BigInt64Array(rows * count);
  const o = limbs(out), x = limbs(src);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < count; j++) {
      const s = 2 * (r * cols + from + 2 * j), d = 2 * (r * count + j);
      o[d] = x[s];
      o[d + 1] = x[s + 1];
    }
  }
  return out;
}

/** [rows, h] pair maxima followed by the odd row tail [rows, 1] (if any) → [rows, h + tail]. */
function joinTail(max: BigInt64Array, src: BigInt64Array, rows: number, cols: number, h: number): BigInt64Array {
  if ((cols & 1) === 0) return max;
  const m = h + 1, out = new BigInt64Array(rows * m);
  const o = limbs(out), x = limbs(max), s = limbs(src);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < h; j++) {
      o[2 * (r * m + j)] = x[2 * (r * h + j)];
      o[2 * (r * m + j) + 1] = x[2 * (r * h + j) + 1];
    }
    o[2 * (r * m + h)] = s[2 * (r * cols + cols - 1)];
    o[2 * (r * m + h) + 1] = s[2 * (r * cols + cols - 1) + 1];
  }
  return out;
}

/**
 * Max over the last axis by a pairwise tournament: each level compares
 * columns (0,1), (2,3), … of every row at once (one maxPairwise call per
 * level, so ⌈log2 cols⌉ levels of 10 rounds); an odd last column is carried
 * to the next level unchanged.
 */
export async function maxLastAxis(p: Party, x: AShare): Promise<AShare> {
  if (x.shape.length === 0) throw new ShapeError('maxLastAxis on a scalar share');
  const cols = x.shape[x.shape.length - 1];
  if (cols === 0) throw new ShapeError(`maxLastAxis over an empty last axis (shape [${x.shape.join(', ')}])`);
  const outShape = x.shape.slice(0, -1);
  const rows = x.size / cols;
  let a = x.a, b = x.b, m = cols;
  while (m > 1) {
    const h = m >> 1;
    const lo = new AShare(everyOther(a, rows, m, 0, h), everyOther(b, rows, m, 0, h), [rows * h]);
    const hi = new AShare(everyOther(a, rows, m, 1, h), everyOther(b, rows, m, 1, h), [rows * h]);
    const best = await maxPairwise(p, lo, hi);
    a = joinTail(best.a, a, rows, m, h);
    b = joinTail(best.b, b, rows, m, h);
    m = h + (m & 1);
  }
  return new AShare(a, b, outShape);
}

/** Max over any axis (ONNX ReduceMax with keepdims = 0): the axis is moved last, then reduced. */
export async function maxAlongAxis(p: Party, x: AShare, axis: number): Promise<AShare> {
  const rank = x.shape.length;
  const ax = normalizeAxis(axis, rank);
  if (ax === rank - 1) return maxLastAxis(p, x);
  const perm = [...Array(rank).keys()].filter((i) => i !== ax).concat(ax);
  return maxLastAxis(p, transposeShare(x, perm));
}
