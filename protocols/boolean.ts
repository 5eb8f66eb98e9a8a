/**
 * Replicated boolean (XOR) sharing, bit-sliced (ABY3, Mohassel–Rindal 2018, §5).
 *
 * x = x0 ⊕ x1 ⊕ x2 and party i holds (x_i, x_{i+1}) as `BShare.a` and `.b`,
 * exactly like the arithmetic sharing but over GF(2). The values are stored
 * bit-sliced: a tensor of n elements of `width` bits is `width` bit planes of
 * W = ⌈n/32⌉ words each, plane-major (plane k at words [k·W, (k+1)·W), element
 * e's bit k at word k·W + (e >> 5), bit e & 31). One 32-bit word op then acts
 * on 32 elements, and a whole adder level is a handful of plane-wide loops;
 * the wire format of an AND round is just the concatenated planes, so many
 * independent ANDs share one message and one round.
 *
 * Invariant: the pad bits of the last word of every plane are zero in every
 * component, so planes can be compared, transposed and revealed without masks.
 *
 * Costs (summed over the three parties): AND of m bits is 1 round and 3·m bits
 * (each party sends its 3-out-of-3 share to party i−1), rounded up to whole
 * words per plane; XOR, NOT and operations with public planes are free.
 */
import { randomFillSync } from 'node:crypto';
import { PartyError, ProtocolError, ShapeError } from './errors.ts';
import { asWords, type Party } from './party.ts';
import { formatShape, limbs, resolveReshape, sizeOf, type Shape } from './ring.ts';
import type { PartyIndex } from './transport.ts';

/** Words per bit plane for n elements. */
export function wordsFor(n: number): number {
  return (n + 31) >>> 5;
}

/** The valid bits of a plane's last word (all ones when 32 divides n). */
export function lastWordMask(n: number): number {
  const r = n & 31;
  return r === 0 ? 0xffffffff : ((1 << r) - 1) >>> 0;
}

/** Zeroes the pad bits of every plane (restores the invariant after PRF output or a complement). */
export function clearPads(planes: Uint32Array, width: number, n: number): Uint32Array {
  const W = wordsFor(n), mask = lastWordMask(n);
  if (mask !== 0xffffffff) for (let k = 0; k < width; k++) planes[k * W + W - 1] &= mask;
  return planes;
}

export class BShare {
  readonly shape: Shape;
  /** Elements. */
  readonly n: number;
  /** Bits per element (planes). */
  readonly width: number;
  /** Words per plane, ⌈n/32⌉. */
  readonly W: number;
  /** x_i, `width` planes. */
  readonly a: Uint32Array;
  /** x_{i+1}. */
  readonly b: Uint32Array;

  constructor(a: Uint32Array, b: Uint32Array, width: number, shape: Shape) {
    if (!Number.isInteger(width) || width < 0) throw new ShapeError(`bit width must be a non-negative integer, got ${width}`);
    const n = sizeOf(shape), W = wordsFor(n);
    if (a.length !== width * W || b.length !== width * W) {
      throw new ShapeError(`boolean share halves of ${a.length} and ${b.length} words do not fit ${width} planes of shape ${formatShape(shape)} (${width * W} words)`);
    }
    this.shape = [...shape];
    this.n = n;
    this.width = width;
    this.W = W;
    this.a = a;
    this.b = b;
  }

  static zeros(shape: Shape, width: number): BShare {
    const m = width * wordsFor(sizeOf(shape));
    return new BShare(new Uint32Array(m), new Uint32Array(m), width, shape);
  }

  /** Same planes viewed with another shape of the same element count (bit-sliced order is element order). */
  reshape(shape: Shape): BShare {
    return new BShare(this.a, this.b, this.width, resolveReshape(this.shape, shape));
  }
}

function checkSame(x: BShare, y: BShare, what: string): void {
  if (x.n !== y.n || x.width !== y.width) {
    throw new ShapeError(`${what}: ${x.width}-bit shares of shape ${formatShape(x.shape)} and ${y.width}-bit shares of shape ${formatShape(y.shape)} differ`);
  }
}

function checkPublic(x: BShare, c: Uint32Array, what: string): void {
  if (c.length !== x.a.length) throw new ShapeError(`${what}: public planes of ${c.length} words for a share of ${x.a.length} words`);
}

// ------------------------------------------------------------ bit-matrix transpose

/**
 * In-place transpose of a 32×32 bit matrix held as 32 words (row r = m[o + r],
 * column c = bit c): afterwards bit c of row r is the old bit r of row c.
 * Recursive block swap (Hacker's Delight §7-3, written for LSB-first columns):
 * 5 levels of 16 masked swaps instead of 1024 single-bit moves.
 */
export function transpose32(m: Uint32Array, o = 0): void {
  let j = 16, mask = 0x0000ffff;
  while (j !== 0) {
    for (let k = 0; k < 32; k = (k + j + 1) & ~j) {
      const t = ((m[o + k] >>> j) ^ m[o + k + j]) & mask;
      m[o + k + j] ^= t;
      m[o + k] ^= t << j;
    }
    j >>>= 1;
    mask ^= mask << j;
  }
}

/**
 * Ring values → bit planes of their low `width` bits (two's complement; width
 * 64 gives every bit). One 32×32 transpose per 32 elements and 32-bit limb.
 */
export function toPlanes(values: BigInt64Array, width = 64): Uint32Array {
  checkWidth(width);
  const n = values.length, W = wordsFor(n);
  const out = new Uint32Array(width * W);
  const x = limbs(values);
  const s = new Uint32Array(32);
  for (let half = 0; half < 2; half++) {
    const k0 = 32 * half, rows = Math.min(32, width - k0);
    if (rows <= 0) break;
    for (let j = 0; j < W; j++) {
      const e0 = j << 5, cnt = Math.min(32, n - e0);
      for (let r = 0; r < cnt; r++) s[r] = x[2 * (e0 + r) + half];
      for (let r = cnt; r < 32; r++) s[r] = 0;
      transpose32(s);
      for (let k = 0; k < rows; k++) out[(k0 + k) * W + j] = s[k];
    }
  }
  return out;
}

/** Bit planes → ring values (bits at and above `width` zero, i.e. zero-extended). */
export function fromPlanes(planes: Uint32Array, n: number, width = 64): BigInt64Array {
  checkWidth(width);
  const W = wordsFor(n);
  if (planes.length !== width * W) throw new ShapeError(`fromPlanes: ${planes.length} words are not ${width} planes of ${n} elements`);
  const out = new BigInt64Array(n);
  const x = limbs(out);
  if (width === 1) {
    // A single plane is one bit per element: no transpose needed.
    for (let e = 0; e < n; e++) x[2 * e] = (planes[e >>> 5] >>> (e & 31)) & 1;
    return out;
  }
  const s = new Uint32Array(32);
  for (let half = 0; half < 2; half++) {
    const k0 = 32 * half, rows = Math.min(32, width - k0);
    if (rows <= 0) break;
    for (let j = 0; j < W; j++) {
      for (let k = 0; k < rows; k++) s[k] = planes[(k0 + k) * W + j];
      for (let k = rows; k < 32; k++) s[k] = 0;
      transpose32(s);
      const e0 = j << 5, cnt = Math.min(32, n - e0);
      for (let r = 0; r < cnt; r++) x[2 * (e0 + r) + half] = s[r];
    }
  }
  return out;
}

function checkWidth(width: number): void {
  if (!Number.isInteger(width) || width < 1 || width > 64) throw new ShapeError(`bit width must be an integer in [1, 64], got ${width}`);
}

// ------------------------------------------------------------ dealer (tests, clients)

/** Splits public planes into three replicated XOR share pairs (uses the OS CSPRNG). */
export function dealBits(planes: Uint32Array, width: number, shape: Shape): [BShare, BShare, BShare] {
  const n = sizeOf(shape);
  if (planes.length !== width * wordsFor(n)) throw new ShapeError(`dealBits: ${planes.length} words are not ${width} planes of shape ${formatShape(shape)}`);
  const c0 = clearPads(randomFillSync(new Uint32Array(planes.length)), width, n);
  const c1 = clearPads(randomFillSync(new Uint32Array(planes.length)), width, n);
  const c2 = new Uint32Array(planes.length);
  for (let i = 0; i < c2.length; i++) c2[i] = planes[i] ^ c0[i] ^ c1[i];
  const c = [c0, c1, c2];
  return [0, 1, 2].map((i) => new BShare(c[i], c[(i + 1) % 3], width, shape)) as [BShare, BShare, BShare];
}

/** Rebuilds the planes from all three parties' shares, checking that the replicated components agree. */
export function reconstructBits(xs: readonly BShare[]): Uint32Array {
  if (xs.length !== 3) throw new PartyError(`reconstructBits needs the shares of all 3 parties, got ${xs.length}`);
  for (let i = 0; i < 3; i++) {
    const p = xs[i], q = xs[(i + 1) % 3];
    checkSame(p, q, 'reconstructBits');
    for (let k = 0; k < p.b.length; k++) {
      if (p.b[k] !== q.a[k]) throw new ProtocolError(`reconstructBits: component ${(i + 1) % 3} differs between parties ${i} and ${(i + 1) % 3} at word ${k}`);
    }
  }
  const out = new Uint32Array(xs[0].a.length);
  for (let k = 0; k < out.length; k++) out[k] = xs[0].a[k] ^ xs[1].a[k] ^ xs[2].a[k];
  return out;
}

// ------------------------------------------------------------ local operations

export function xor(x: BShare, y: BShare): BShare {
  checkSame(x, y, 'xor');
  const m = x.a.length, a = new Uint32Array(m), b = new Uint32Array(m);
  for (let i = 0; i < m; i++) {
    a[i] = x.a[i] ^ y.a[i];
    b[i] = x.b[i] ^ y.b[i];
  }
  return new BShare(a, b, x.width, x.shape);
}

/**
 * x ⊕ c for public planes c. The constant goes into component 0 only, held by
 * party 0 (as a) and party 2 (as b), so the XOR of the components moves by c once.
 */
export function xorPublic(p: Party, x: BShare, c: Uint32Array): BShare {
  checkPublic(x, c, 'xorPublic');
  const a = x.a.slice(), b = x.b.slice();
  const target = p.index === 0 ? a : p.index === 2 ? b : null;
  if (target) {
    for (let i = 0; i < target.length; i++) target[i] ^= c[i];
    clearPads(target, x.width, x.n);
  }
  return new BShare(a, b, x.width, x.shape);
}

/** ¬x: the complement of component 0 (valid bits only, so pads stay zero). */
export function not(p: Party, x: BShare): BShare {
  const ones = clearPads(new Uint32Array(x.a.length).fill(0xffffffff), x.width, x.n);
  return xorPublic(p, x, ones);
}

/** x ∧ c for public planes c: AND distributes over XOR, so each component is masked. */
export function andPublic(x: BShare, c: Uint32Array): BShare {
  checkPublic(x, c, 'andPublic');
  const m = x.a.length, a = new Uint32Array(m), b = new Uint32Array(m);
  for (let i = 0; i < m; i++) {
    a[i] = x.a[i] & c[i];
    b[i] = x.b[i] & c[i];
  }
  return new BShare(a, b, x.width, x.shape);
}

/** Planes [from, to) as views (no copy): plane-major storage makes a contiguous range a subarray. */
export function slicePlanes(x: BShare, from: number, to = x.width): BShare {
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > x.width || from > to) {
    throw new ShapeError(`slicePlanes: [${from}, ${to}) is not a range of the ${x.width} planes`);
  }
  return new BShare(x.a.subarray(from * x.W, to * x.W), x.b.subarray(from * x.W, to * x.W), to - from, x.shape);
}

/**
 * Copies the listed (share, plane) pairs into one share, in order. All sources
 * must have the same elements. This is how independent ANDs are packed into a
 * single `and` call (one message, one round).
 */
export function gatherPlanes(list: readonly (readonly [BShare, number])[], shape?: Shape): BShare {
  if (list.length === 0) {
    if (!shape) throw new ShapeError('gatherPlanes: no planes and no shape');
    return BShare.zeros(shape, 0);
  }
  const first = list[0][0], W = first.W;
  const a = new Uint32Array(list.length * W), b = new Uint32Array(list.length * W);
  list.forEach(([x, k], t) => {
    if (x.n !== first.n) throw new ShapeError(`gatherPlanes: shares of ${x.n} and ${first.n} elements`);
    if (!Number.isInteger(k) || k < 0 || k >= x.width) throw new ShapeError(`gatherPlanes: plane ${k} of a ${x.width}-plane share`);
    a.set(x.a.subarray(k * W, (k + 1) * W), t * W);
    b.set(x.b.subarray(k * W, (k + 1) * W), t * W);
  });
  return new BShare(a, b, list.length, shape ?? first.shape);
}

/** Planes `indices` of x, in that order (repeats allowed). */
export function selectPlanes(x: BShare, indices: readonly number[]): BShare {
  return gatherPlanes(indices.map((k) => [x, k] as const), x.shape);
}

/** Stacks the planes of shares over the same elements (widths add). */
export function concatPlanes(xs: readonly BShare[]): BShare {
  if (xs.length === 0) throw new ShapeError('concatPlanes: no shares');
  const W = xs[0].W, width = xs.reduce((s, x) => s + x.width, 0);
  const a = new Uint32Array(width * W), b = new Uint32Array(width * W);
  let off = 0;
  for (const x of xs) {
    if (x.n !== xs[0].n) throw new ShapeError(`concatPlanes: shares of ${x.n} and ${xs[0].n} elements`);
    a.set(x.a, off);
    b.set(x.b, off);
    off += x.a.length;
  }
  return new BShare(a, b, width, xs[0].shape);
}

// ------------------------------------------------------------ interactive

/** z[oz + w] ^= x ∧ y cross terms of one plane range (the inner loop of every AND). */
function andCrossInto(z: Uint32Array, oz: number, xa: Uint32Array, xb: Uint32Array, ox: number, ya: Uint32Array, yb: Uint32Array, oy: number, len: number): void {
  for (let w = 0; w < len; w++) z[oz + w] ^= (xa[ox + w] & (ya[oy + w] ^ yb[oy + w])) ^ (xb[ox + w] & ya[oy + w]);
}

/**
 * Local part of x ∧ y (ABY3): z_i = x_i y_i ⊕ x_i y_{i+1} ⊕ x_{i+1} y_i ⊕ α_i,
 * a 3-out-of-3 XOR sharing of x ∧ y; α is an XOR zero-sharing from the pairwise
 * keys, so z_i alone is uniformly random to its receiver.
 */
export function andLocal(p: Party, x: BShare, y: BShare): Uint32Array {
  checkSame(x, y, 'and');
  const m = x.a.length;
  const z = p.rand.zeroWords(m);
  andCrossInto(z, 0, x.a, x.b, 0, y.a, y.b, 0, m);
  return clearPads(z, x.width, x.n);
}

/** A plane of a share: (share, plane index). */
export type PlaneRef = readonly [BShare, number];

/**
 * left[t] ∧ right[t] for every t, as one share of left.length planes, in one
 * round: the way a circuit level packs its independent ANDs into one message
 * without first copying the operands into contiguous shares.
 */
export async function andPlanes(p: Party, left: readonly PlaneRef[], right: readonly PlaneRef[], shape?: Shape): Promise<BShare> {
  if (left.length !== right.length) throw new ShapeError(`andPlanes: ${left.length} left and ${right.length} right planes`);
  if (left.length === 0 && !shape) throw new ShapeError('andPlanes: no planes and no shape');
  const outShape = shape ?? left[0][0].shape, n = sizeOf(outShape), W = wordsFor(n);
  // Validate everything before drawing randomness, so a refused call leaves the PRF streams in step.
  for (let t = 0; t < left.length; t++) {
    const [x, kx] = left[t], [y, ky] = right[t];
    if (x.n !== n || y.n !== n) throw new ShapeError(`andPlanes: planes of ${x.n} and ${y.n} elements for shape ${formatShape(outShape)}`);
    if (!(Number.isInteger(kx) && Number.isInteger(ky) && kx >= 0 && kx < x.width && ky >= 0 && ky < y.width)) {
      throw new ShapeError(`andPlanes: planes ${kx} and ${ky} of ${x.width}- and ${y.width}-plane shares`);
    }
  }
  const z = p.rand.zeroWords(left.length * W);
  for (let t = 0; t < left.length; t++) {
    const [x, kx] = left[t], [y, ky] = right[t];
    andCrossInto(z, t * W, x.a, x.b, kx * W, y.a, y.b, ky * W, W);
  }
  return reshareBits(p, clearPads(z, left.length, n), left.length, outShape);
}

/** 3-out-of-3 → replicated: party i sends z_i to party i−1 (1 round, one bit per bit). */
export async function reshareBits(p: Party, z: Uint32Array, width: number, shape: Shape): Promise<BShare> {
  const [msg] = await p.round([[p.prev, z]], [p.next]);
  return new BShare(z, asWords(msg, z.length, `boolean reshare from party ${p.next}`), width, shape);
}

/** x ∧ y on every plane at once: 1 round, one message of x.width·W words per party. */
export async function and(p: Party, x: BShare, y: BShare): Promise<BShare> {
  return reshareBits(p, andLocal(p, x, y), x.width, x.shape);
}

/** x ∨ y = ¬(¬x ∧ ¬y) (De Morgan): the same single AND round. */
export async function or(p: Party, x: BShare, y: BShare): Promise<BShare> {
  return not(p, await and(p, not(p, x), not(p, y)));
}

/**
 * Boolean-shares planes known to party `owner` (1 round, one message of
 * width·W words to party owner+1), the XOR analogue of arith.inputFrom:
 * c_owner = PRF(k_owner) (drawn by owner and owner−1), c_{owner+1} = v ⊕ c_owner
 * (sent), c_{owner+2} = 0.
 */
export async function inputBits(p: Party, owner: PartyIndex, planes: Uint32Array | null, width: number, shape: Shape): Promise<BShare> {
  const n = sizeOf(shape), m = width * wordsFor(n);
  if (p.index === owner) {
    if (!planes) throw new PartyError(`party ${owner} is the boolean input owner but has no value`);
    if (planes.length !== m) throw new ShapeError(`inputBits: ${planes.length} words are not ${width} planes of shape ${formatShape(shape)}`);
    const r = clearPads(p.rand.own.words(m), width, n);
    const rest = new Uint32Array(m);
    for (let i = 0; i < m; i++) rest[i] = planes[i] ^ r[i];
    clearPads(rest, width, n);
    await p.round([[p.next, rest]], []);
    return new BShare(r, rest, width, shape);
  }
  if (p.index === (owner + 2) % 3) {
    const r = clearPads(p.rand.next.words(m), width, n);
    await p.round([], []);
    return new BShare(new Uint32Array(m), r, width, shape);
  }
  const [msg] = await p.round([], [owner]);
  return new BShare(asWords(msg, m, `boolean input from party ${owner}`), new Uint32Array(m), width, shape);
}

/** Opens x to all three parties (1 round; each party sends its first component, width·W words). */
export async function revealBits(p: Party, x: BShare): Promise<Uint32Array> {
  const [msg] = await p.round([[p.next, x.a]], [p.prev]);
  const c = asWords(msg, x.a.length, `boolean reveal from party ${p.prev}`);
  const out = new Uint32Array(x.a.length);
  for (let i = 0; i < out.length; i++) out[i] = x.a[i] ^ x.b[i] ^ c[i];
  return out;
}
