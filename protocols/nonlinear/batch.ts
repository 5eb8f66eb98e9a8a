/**
 * Running several independent products as one protocol call: the shares are
 * flattened and concatenated, so k products cost the rounds of one and one
 * message per round instead of k.
 */
import { AShare, broadcastShare } from '../arith.ts';
import { broadcastShape, sameShape, sizeOf, type Shape } from '../ring.ts';
import type { Party } from '../party.ts';

export function concatFlat(xs: readonly AShare[]): AShare {
  const n = xs.reduce((s, x) => s + x.size, 0);
  const a = new BigInt64Array(n), b = new BigInt64Array(n);
  let off = 0;
  for (const x of xs) {
    a.set(x.a, off);
    b.set(x.b, off);
    off += x.size;
  }
  return new AShare(a, b, [n]);
}

export function splitFlat(x: AShare, shapes: readonly Shape[]): AShare[] {
  let off = 0;
  return shapes.map((shape) => {
    const n = sizeOf(shape);
    const part = new AShare(x.a.subarray(off, off + n), x.b.subarray(off, off + n), shape);
    off += n;
    return part;
  });
}

type BinaryProtocol = (p: Party, x: AShare, y: AShare) => Promise<AShare>;

/** Applies `op` to every pair (xs[k], ys[k]) in one call of `op`. */
export async function batchPairs(p: Party, op: BinaryProtocol, xs: readonly AShare[], ys: readonly AShare[]): Promise<AShare[]> {
  const shapes: Shape[] = [];
  const left: AShare[] = [], right: AShare[] = [];
  xs.forEach((x, k) => {
    let y = ys[k];
    if (!sameShape(x.shape, y.shape)) {
      const shape = broadcastShape(x.shape, y.shape, 'batched product');
      x = broadcastShare(x, shape);
      y = broadcastShare(y, shape);
    }
    shapes.push(x.shape);
    left.push(x);
    right.push(y);
  });
  return splitFlat(await op(p, concatFlat(left), concatFlat(right)), shapes);
}
