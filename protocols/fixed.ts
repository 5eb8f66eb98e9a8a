/**
 * Fixed-point encoding of reals into Z_2^64: x ↦ round(x · 2^f) in two's complement.
 * f = 16 fractional bits by default; the product of two encodings carries 2f
 * fractional bits and must be truncated by f (see truncation.ts).
 */
import { RangeError64 } from './errors.ts';
import { RingTensor, limbs, sizeOf, type Shape } from './ring.ts';

export const DEFAULT_FRAC_BITS = 16;
const TWO32 = 4294967296;

export interface FixedPointOptions {
  /** Fractional bits f; 0 ≤ f ≤ 30 so that products of encodings stay far from 2^63. */
  fracBits: number;
}

export function checkFracBits(f: number): number {
  if (!Number.isInteger(f) || f < 0 || f > 30) throw new RangeError64(`fracBits must be an integer in [0, 30], got ${f}`);
  return f;
}

/** Encodes reals at scale 2^f; NaN, ±Infinity and magnitudes ≥ 2^(63−f) are refused with the offending index. */
export function encode(values: ArrayLike<number>, shape: Shape = [values.length], fracBits = DEFAULT_FRAC_BITS): RingTensor {
  checkFracBits(fracBits);
  const n = sizeOf(shape);
  if (values.length !== n) throw new RangeError64(`encode: ${values.length} values do not fill shape [${shape.join(', ')}]`);
  const out = new BigInt64Array(n);
  const o = limbs(out);
  const scale = 2 ** fracBits;
  const limit = 2 ** 63;
  for (let i = 0; i < n; i++) {
    const v = Math.round(values[i] * scale);
    if (!Number.isFinite(v) || Math.abs(v) >= limit) {
      throw new RangeError64(`encode: value ${values[i]} at index ${i} is not representable with ${fracBits} fractional bits in 64 bits`);
    }
    if (Math.abs(v) <= Number.MAX_SAFE_INTEGER) {
      const hi = Math.floor(v / TWO32);
      o[2 * i] = v - hi * TWO32;
      o[2 * i + 1] = hi;
    } else {
      out[i] = BigInt(v);
    }
  }
  return new RingTensor(out, shape);
}

/** Decodes ring elements read as signed fixed point with f fractional bits. */
export function decode(t: RingTensor | BigInt64Array, fracBits = DEFAULT_FRAC_BITS): Float64Array {
  checkFracBits(fracBits);
  const data = t instanceof RingTensor ? t.data : t;
  const x = limbs(data);
  const out = new Float64Array(data.length);
  const inv = 2 ** -fracBits;
  for (let i = 0; i < data.length; i++) out[i] = ((x[2 * i + 1] | 0) * TWO32 + x[2 * i]) * inv;
  return out;
}

/** The encoding of one public real, as a bigint (for public constants in protocols). */
export function encodeScalar(x: number, fracBits = DEFAULT_FRAC_BITS): bigint {
  return encode([x], [1], fracBits).data[0];
}
