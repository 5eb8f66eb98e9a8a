/**
 * Tensors over the ring Z_2^64.
 *
 * Values live in a `BigInt64Array` (two's complement, so signed fixed-point
 * values read back naturally), but the elementwise kernels work on a
 * `Uint32Array` view of the same memory, as (lo, hi) 32-bit limbs: V8 keeps
 * those in registers as small integers, whereas every `BigInt` read allocates.
 * That makes the kernels 5–20× faster than `BigInt.asIntN` loops while staying
 * exact mod 2^64 (all intermediate doubles stay below 2^53).
 */
import { ShapeError } from './errors.ts';

export type Shape = readonly number[];

const TWO32 = 4294967296;

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new ShapeError(`invalid dimension ${d} in shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function formatShape(s: Shape): string {
  return `[${s.join(', ')}]`;
}

export function assertSameShape(a: Shape, b: Shape, what: string): void {
  if (!sameShape(a, b)) throw new ShapeError(`${what}: shapes ${formatShape(a)} and ${formatShape(b)} differ`);
}

/** A shaped tensor of ring elements. `data.length === sizeOf(shape)` always holds. */
export class RingTensor {
  readonly shape: Shape;
  readonly data: BigInt64Array;

  constructor(data: BigInt64Array, shape: Shape) {
    const n = sizeOf(shape);
    if (data.length !== n) throw new ShapeError(`tensor data has ${data.length} elements but shape ${formatShape(shape)} needs ${n}`);
    this.shape = [...shape];
    this.data = data;
  }

  static zeros(shape: Shape): RingTensor {
    return new RingTensor(new BigInt64Array(sizeOf(shape)), shape);
  }

  static of(values: readonly (bigint | number)[], shape: Shape = [values.length]): RingTensor {
    return new RingTensor(BigInt64Array.from(values, (v) => BigInt.asIntN(64, BigInt(v))), shape);
  }

  get size(): number {
    return this.data.length;
  }

  reshape(shape: Shape): RingTensor {
    return new RingTensor(this.data, resolveReshape(this.shape, shape));
  }

  clone(): RingTensor {
    return new RingTensor(this.data.slice(), this.shape);
  }
}

/** Resolves one `-1` dimension and checks the element count is unchanged. */
export function resolveReshape(from: Shape, to: Shape): number[] {
  const n = sizeOf(from);
  const out = [...to];
  const free = out.indexOf(-1);
  if (free >= 0) {
    if (out.indexOf(-1, free + 1) >= 0) throw new ShapeError(`reshape to ${formatShape(to)}: at most one -1 allowed`);
    const rest = sizeOf(out.filter((_, i) => i !== free));
    if (rest === 0 || n % rest !== 0) throw new ShapeError(`cannot reshape ${formatShape(from)} to ${formatShape(to)}`);
    out[free] = n / rest;
  }
  if (sizeOf(out) !== n) throw new ShapeError(`cannot reshape ${formatShape(from)} (${n} elements) to ${formatShape(to)}`);
  return out;
}

/** The (lo, hi) limb view of a ring array: element i is `lo = v[2i]`, `hi = v[2i+1]` (little endian). */
export function limbs(a: BigInt64Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length * 2);
}

function checkLen(out: BigInt64Array, a: BigInt64Array, b?: BigInt64Array): void {
  if (a.length !== out.length || (b !== undefined && b.length !== out.length)) {
    throw new ShapeError(`elementwise kernel on arrays of ${a.length}, ${b?.length ?? a.length} and ${out.length} elements`);
  }
}

// ---------------------------------------------------------------- raw kernels
// Each writes `out` (which may alias an input) and returns it.

export function addInto(out: BigInt64Array, a: BigInt64Array, b: BigInt64Array): BigInt64Array {
  checkLen(out, a, b);
  const o = limbs(out), x = limbs(a), y = limbs(b);
  for (let i = 0; i < o.length; i += 2) {
    const lo = x[i] + y[i];
    const carry = lo >= TWO32 ? 1 : 0;
    o[i] = lo;
    o[i + 1] = x[i + 1] + y[i + 1] + carry;
  }
  return out;
}

export function subInto(out: BigInt64Array, a: BigInt64Array, b: BigInt64Array): BigInt64Array {
  checkLen(out, a, b);
  const o = limbs(out), x = limbs(a), y = limbs(b);
  for (let i = 0; i < o.length; i += 2) {
    const lo = x[i] - y[i];
    const borrow = lo < 0 ? 1 : 0;
    o[i] = lo;
    o[i + 1] = x[i + 1] - y[i + 1] - borrow;
  }
  return out;
}

export function negInto(out: BigInt64Array, a: BigInt64Array): BigInt64Array {
  checkLen(out, a);
  const o = limbs(out), x = limbs(a);
  for (let i = 0; i < o.length; i += 2) {
    const lo = -x[i];
    o[i] = lo;
    o[i + 1] = -x[i + 1] - (lo < 0 ? 1 : 0);
  }
  return out;
}

/**
 * Low 64 bits of the product of (alo + 2^32 ahi) and (blo + 2^32 bhi), written at o[i], o[i+1].
 * The 32×32 → 64 product of the low limbs is split into 16-bit halves so every
 * partial product is exact in a double.
 */
function mulLimbs(o: Uint32Array, i: number, alo: number, ahi: number, blo: number, bhi: number): void {
  const a0 = alo & 0xffff, a1 = alo >>> 16, b0 = blo & 0xffff, b1 = blo >>> 16;
  const mid = a0 * b1 + a1 * b0; // < 2^33
  const t = a0 * b0 + (mid % 65536) * 65536; // < 2^33
  const lo = t >>> 0;
  const carry = (t - lo) / TWO32;
  const hiLow = a1 * b1 + Math.floor(mid / 65536) + carry;
  o[i] = lo;
  o[i + 1] = hiLow + Math.imul(ahi, blo) + Math.imul(alo, bhi);
}

export function mulInto(out: BigInt64Array, a: BigInt64Array, b: BigInt64Array): BigInt64Array {
  checkLen(out, a, b);
  const o = limbs(out), x = limbs(a), y = limbs(b);
  for (let i = 0; i < o.length; i += 2) mulLimbs(o, i, x[i], x[i + 1], y[i], y[i + 1]);
  return out;
}

export function mulScalarInto(out: BigInt64Array, a: BigInt64Array, s: bigint): BigInt64Array {
  checkLen(out, a);
  const u = BigInt.asUintN(64, s);
  const slo = Number(u & 0xffffffffn), shi = Number(u >> 32n);
  const o = limbs(out), x = limbs(a);
  for (let i = 0; i < o.length; i += 2) mulLimbs(o, i, x[i], x[i + 1], slo, shi);
  return out;
}

export function addScalarInto(out: BigInt64Array, a: BigInt64Array, s: bigint): BigInt64Array {
  checkLen(out, a);
  const u = BigInt.asUintN(64, s);
  const slo = Number(u & 0xffffffffn), shi = Number(u >> 32n);
  const o = limbs(out), x = limbs(a);
  for (let i = 0; i < o.length; i += 2) {
    const lo = x[i] + slo;
    o[i] = lo;
    o[i + 1] = x[i + 1] + shi + (lo >= TWO32 ? 1 : 0);
  }
  return out;
}

/** Arithmetic (sign-propagating) shift right by d bits, 0 ≤ d < 64: floor(a / 2^d) on signed values. */
export function sarInto(out: BigInt64Array, a: BigInt64Array, d: number): BigInt64Array {
  checkLen(out, a);
  checkShift(d);
  const o = limbs(out), x = limbs(a);
  if (d === 0) {
    if (out !== a) out.set(a);
  } else if (d < 32) {
    for (let i = 0; i < o.length; i += 2) {
      const lo = x[i], hi = x[i + 1];
      o[i] = (lo >>> d) | (hi << (32 - d));
      o[i + 1] = (hi | 0) >> d;
    }
  } else {
    for (let i = 0; i < o.length; i += 2) {
      const hi = x[i + 1] | 0;
      o[i] = hi >> (d - 32);
      o[i + 1] = hi >> 31;
    }
  }
  return out;
}

/** Shift left by d bits (multiplication by 2^d mod 2^64). */
export function shlInto(out: BigInt64Array, a: BigInt64Array, d: number): BigInt64Array {
  checkLen(out, a);
  checkShift(d);
  const o = limbs(out), x = limbs(a);
  if (d === 0) {
    if (out !== a) out.set(a);
  } else if (d < 32) {
    for (let i = 0; i < o.length; i += 2) {
      const lo = x[i], hi = x[i + 1];
      o[i] = lo << d;
      o[i + 1] = (hi << d) | (lo >>> (32 - d));
    }
  } else {
    for (let i = 0; i < o.length; i += 2) {
      o[i + 1] = x[i] << (d - 32);
      o[i] = 0;
    }
  }
  return out;
}

function checkShift(d: number): void {
  if (!Number.isInteger(d) || d < 0 || d > 63) throw new RangeError(`shift amount must be an integer in [0, 63], got ${d}`);
}

/** Sums each row of a [rows, cols] row-major array into `out[rows]` (mod 2^64). */
export function sumRowsInto(out: BigInt64Array, a: BigInt64Array, rows: number, cols: number): BigInt64Array {
  if (a.length !== rows * cols || out.length !== rows) throw new ShapeError(`sumRows: ${a.length} elements is not ${rows}×${cols}`);
  const o = limbs(out), x = limbs(a);
  for (let r = 0; r < rows; r++) {
    // Limb sums stay exact in doubles for up to 2^21 terms; fold the carries every 2^20.
    let lo = 0, hi = 0;
    const base = 2 * r * cols;
    for (let c = 0; c < cols; c++) {
      lo += x[base + 2 * c];
      hi += x[base + 2 * c + 1];
      if ((c & 0xfffff) === 0xfffff) {
        const carry = Math.floor(lo / TWO32);
        lo -= carry * TWO32;
        hi = (hi + carry) % TWO32;
      }
    }
    const carry = Math.floor(lo / TWO32);
    o[2 * r] = lo - carry * TWO32;
    o[2 * r + 1] = (hi + carry) % TWO32;
  }
  return out;
}

// ---------------------------------------------------------------- shaped ops

type Binary = (out: BigInt64Array, a: BigInt64Array, b: BigInt64Array) => BigInt64Array;

function binary(kernel: Binary, what: string, a: RingTensor, b: RingTensor): RingTensor {
  if (sameShape(a.shape, b.shape)) return new RingTensor(kernel(new BigInt64Array(a.size), a.data, b.data), a.shape);
  const shape = broadcastShape(a.shape, b.shape, what);
  const x = broadcastTo(a, shape), y = broadcastTo(b, shape);
  return new RingTensor(kernel(new BigInt64Array(x.size), x.data, y.data), shape);
}

export const add = (a: RingTensor, b: RingTensor): RingTensor => binary(addInto, 'add', a, b);
export const sub = (a: RingTensor, b: RingTensor): RingTensor => binary(subInto, 'sub', a, b);
export const mul = (a: RingTensor, b: RingTensor): RingTensor => binary(mulInto, 'mul', a, b);
export const neg = (a: RingTensor): RingTensor => new RingTensor(negInto(new BigInt64Array(a.size), a.data), a.shape);
export const mulScalar = (a: RingTensor, s: bigint): RingTensor =>
  new RingTensor(mulScalarInto(new BigInt64Array(a.size), a.data, s), a.shape);
export const addScalar = (a: RingTensor, s: bigint): RingTensor =>
  new RingTensor(addScalarInto(new BigInt64Array(a.size), a.data, s), a.shape);
export const sar = (a: RingTensor, d: number): RingTensor => new RingTensor(sarInto(new BigInt64Array(a.size), a.data, d), a.shape);
export const shl = (a: RingTensor, d: number): RingTensor => new RingTensor(shlInto(new BigInt64Array(a.size), a.data, d), a.shape);

/** NumPy/ONNX multidirectional broadcasting of two shapes. */
export function broadcastShape(a: Shape, b: Shape, what = 'broadcast'): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1, db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(`${what}: shapes ${formatShape(a)} and ${formatShape(b)} cannot be broadcast (dimension ${i}: ${da} vs ${db})`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Materialises `t` broadcast to `shape` (ONNX Expand semantics). */
export function broadcastTo(t: RingTensor, shape: Shape): RingTensor {
  if (sameShape(t.shape, shape)) return t;
  const target = broadcastShape(t.shape, shape, 'expand');
  if (!sameShape(target, shape)) throw new ShapeError(`expand: ${formatShape(t.shape)} cannot be broadcast to ${formatShape(shape)}`);
  const rank = shape.length;
  const src = [...new Array(rank - t.shape.length).fill(1), ...t.shape];
  const srcStrides = stridesOf(src).map((s, i) => (src[i] === 1 ? 0 : s));
  return new RingTensor(gather(t.data, shape, srcStrides), shape);
}

export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Copies elements into a new array of `shape`, reading source offset Σ idx[i]·strides[i]. */
function gather(data: BigInt64Array, shape: Shape, strides: readonly number[]): BigInt64Array {
  const n = sizeOf(shape);
  const out = new BigInt64Array(n);
  const o = limbs(out), x = limbs(data);
  const rank = shape.length;
  if (n === 0) return out;
  if (rank === 0) {
    o[0] = x[0];
    o[1] = x[1];
    return out;
  }
  const idx = new Array<number>(rank).fill(0);
  const last = rank - 1, lastDim = shape[last], lastStride = strides[last];
  let src = 0;
  for (let k = 0; k < n; k += lastDim) {
    for (let j = 0, s = src; j < lastDim; j++, s += lastStride) {
      o[2 * (k + j)] = x[2 * s];
      o[2 * (k + j) + 1] = x[2 * s + 1];
    }
    for (let d = last - 1; d >= 0; d--) {
      idx[d]++;
      src += strides[d];
      if (idx[d] < shape[d]) break;
      src -= idx[d] * strides[d];
      idx[d] = 0;
    }
  }
  return out;
}

/** Permutes axes (ONNX Transpose); default reverses them. */
export function transpose(t: RingTensor, perm?: readonly number[]): RingTensor {
  return new RingTensor(transposeData(t.data, t.shape, perm), permuteShape(t.shape, perm));
}

export function permuteShape(shape: Shape, perm?: readonly number[]): number[] {
  const p = checkPerm(shape.length, perm);
  return p.map((i) => shape[i]);
}

export function transposeData(data: BigInt64Array, shape: Shape, perm?: readonly number[]): BigInt64Array {
  const p = checkPerm(shape.length, perm);
  const strides = stridesOf(shape);
  return gather(data, p.map((i) => shape[i]), p.map((i) => strides[i]));
}

function checkPerm(rank: number, perm?: readonly number[]): number[] {
  const p = perm ? [...perm] : [...Array(rank).keys()].reverse();
  const seen = new Set(p);
  if (p.length !== rank || seen.size !== rank || p.some((i) => !Number.isInteger(i) || i < 0 || i >= rank)) {
    throw new ShapeError(`transpose: [${p.join(', ')}] is not a permutation of ${rank} axes`);
  }
  return p;
}

/** Concatenates arrays laid out as [outer, inner_i] blocks along their inner axis. */
export function concatInner(parts: readonly { data: BigInt64Array; inner: number }[], outer: number): BigInt64Array {
  const width = parts.reduce((s, p) => s + p.inner, 0);
  const out = new BigInt64Array(outer * width);
  for (const p of parts) {
    if (p.data.length !== outer * p.inner) throw new ShapeError(`concat: part of ${p.data.length} elements is not ${outer}×${p.inner}`);
  }
  for (let r = 0; r < outer; r++) {
    let off = r * width;
    for (const p of parts) {
      out.set(p.data.subarray(r * p.inner, (r + 1) * p.inner), off);
      off += p.inner;
    }
  }
  return out;
}

/** Concatenates tensors along `axis` (ONNX Concat). */
export function concat(ts: readonly RingTensor[], axis: number): RingTensor {
  if (ts.length === 0) throw new ShapeError('concat: no tensors');
  const rank = ts[0].shape.length;
  const ax = normalizeAxis(axis, rank);
  for (const t of ts) {
    if (t.shape.length !== rank || t.shape.some((d, i) => i !== ax && d !== ts[0].shape[i])) {
      throw new ShapeError(`concat on axis ${axis}: shapes ${ts.map((x) => formatShape(x.shape)).join(', ')} differ off that axis`);
    }
  }
  const outer = sizeOf(ts[0].shape.slice(0, ax));
  const tail = sizeOf(ts[0].shape.slice(ax + 1));
  const data = concatInner(ts.map((t) => ({ data: t.data, inner: t.shape[ax] * tail })), outer);
  const shape = [...ts[0].shape];
  shape[ax] = ts.reduce((s, t) => s + t.shape[ax], 0);
  return new RingTensor(data, shape);
}

export function normalizeAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new ShapeError(`axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/** Reads element i as a bigint (for tests and decoding; not for hot loops). */
export function at(t: RingTensor | BigInt64Array, i: number): bigint {
  return (t instanceof RingTensor ? t.data : t)[i];
}
