/**
 * Replicated arithmetic sharing over Z_2^64 (ABY3, semi-honest, honest majority).
 *
 * x = x0 + x1 + x2; party i holds (x_i, x_{i+1}) as `AShare.a` and `AShare.b`.
 * Any two parties can reconstruct; any one party's pair is uniformly random.
 */
import { randomFillSync } from 'node:crypto';
import { PartyError, ProtocolError, ShapeError } from './errors.ts';
import {
  RingTensor, addInto, addScalarInto, assertSameShape, broadcastShape, broadcastTo, concat, formatShape,
  mulInto, mulScalarInto, negInto, resolveReshape, sameShape, sizeOf, subInto, sumRowsInto, transposeData, permuteShape,
  type Shape,
} from './ring.ts';
import { asRing, type Party } from './party.ts';
import { matmulDims } from './backend.ts';
import type { PartyIndex } from './transport.ts';

export class AShare {
  readonly shape: Shape;
  /** x_i */
  readonly a: BigInt64Array;
  /** x_{i+1} */
  readonly b: BigInt64Array;

  constructor(a: BigInt64Array, b: BigInt64Array, shape: Shape) {
    const n = sizeOf(shape);
    if (a.length !== n || b.length !== n) throw new ShapeError(`share halves of ${a.length} and ${b.length} elements do not fit shape ${formatShape(shape)}`);
    this.a = a;
    this.b = b;
    this.shape = [...shape];
  }

  get size(): number {
    return this.a.length;
  }

  reshape(shape: Shape): AShare {
    return new AShare(this.a, this.b, resolveReshape(this.shape, shape));
  }

  static zeros(shape: Shape): AShare {
    const n = sizeOf(shape);
    return new AShare(new BigInt64Array(n), new BigInt64Array(n), shape);
  }
}

/** What a dealer hands party i: its two components. */
export interface SharePair {
  shape: number[];
  a: BigInt64Array;
  b: BigInt64Array;
}

function randomRing(n: number): BigInt64Array {
  const out = new BigInt64Array(n);
  randomFillSync(out);
  return out;
}

// ------------------------------------------------------------ dealer / client

/** Splits x into three replicated share pairs (dealer or client side; uses the OS CSPRNG). */
export function dealShares(x: RingTensor): [SharePair, SharePair, SharePair] {
  const c0 = randomRing(x.size), c1 = randomRing(x.size);
  const c2 = subInto(new BigInt64Array(x.size), x.data, c0);
  subInto(c2, c2, c1);
  const c = [c0, c1, c2];
  const shape = [...x.shape];
  return [0, 1, 2].map((i) => ({ shape, a: c[i], b: c[(i + 1) % 3] })) as [SharePair, SharePair, SharePair];
}

/** Rebuilds x from the three parties' pairs, checking that the replicated components agree. */
export function reconstruct(pairs: readonly SharePair[]): RingTensor {
  if (pairs.length !== 3) throw new PartyError(`reconstruct needs the pairs of all 3 parties, got ${pairs.length}`);
  const shape = pairs[0].shape;
  pairs.forEach((p, i) => {
    if (!sameShape(p.shape, shape)) throw new ShapeError(`reconstruct: party ${i} sent shape ${formatShape(p.shape)}, party 0 sent ${formatShape(shape)}`);
    if (p.a.length !== sizeOf(shape) || p.b.length !== sizeOf(shape)) throw new ShapeError(`reconstruct: party ${i}'s pair does not fit ${formatShape(shape)}`);
  });
  for (let i = 0; i < 3; i++) {
    const p = pairs[i], q = pairs[(i + 1) % 3];
    for (let k = 0; k < p.b.length; k++) {
      if (p.b[k] !== q.a[k]) throw new ProtocolError(`reconstruct: component ${(i + 1) % 3} differs between parties ${i} and ${(i + 1) % 3} at element ${k}`);
    }
  }
  const out = addInto(new BigInt64Array(sizeOf(shape)), pairs[0].a, pairs[1].a);
  return new RingTensor(addInto(out, out, pairs[2].a), shape);
}

export function fromPair(pair: SharePair): AShare {
  return new AShare(pair.a, pair.b, pair.shape);
}

export function toPair(x: AShare): SharePair {
  return { shape: [...x.shape], a: x.a, b: x.b };
}

// ------------------------------------------------------------ local operations

function pairwise(x: AShare, y: AShare, what: string): [AShare, AShare] {
  if (sameShape(x.shape, y.shape)) return [x, y];
  const shape = broadcastShape(x.shape, y.shape, what);
  return [broadcastShare(x, shape), broadcastShare(y, shape)];
}

export function add(x: AShare, y: AShare): AShare {
  [x, y] = pairwise(x, y, 'add');
  return new AShare(addInto(new BigInt64Array(x.size), x.a, y.a), addInto(new BigInt64Array(x.size), x.b, y.b), x.shape);
}

export function sub(x: AShare, y: AShare): AShare {
  [x, y] = pairwise(x, y, 'sub');
  return new AShare(subInto(new BigInt64Array(x.size), x.a, y.a), subInto(new BigInt64Array(x.size), x.b, y.b), x.shape);
}

export function neg(x: AShare): AShare {
  return new AShare(negInto(new BigInt64Array(x.size), x.a), negInto(new BigInt64Array(x.size), x.b), x.shape);
}

/**
 * x + c for public c (broadcast to x's shape). The constant goes into
 * component 0, held by party 0 (as a) and party 2 (as b).
 */
export function addPublic(p: Party, x: AShare, c: RingTensor | bigint): AShare {
  const a = x.a.slice(), b = x.b.slice();
  const target = p.index === 0 ? a : p.index === 2 ? b : null;
  if (target) {
    if (typeof c === 'bigint') addScalarInto(target, target, c);
    else addInto(target, target, broadcastTo(c, x.shape).data);
  }
  return new AShare(a, b, x.shape);
}

/** c − x for public c. */
export function publicSub(p: Party, c: RingTensor | bigint, x: AShare): AShare {
  return addPublic(p, neg(x), c);
}

/** x ⊙ c for a public ring tensor c (no truncation; see truncation.ts for fixed point). */
export function mulPublic(x: AShare, c: RingTensor): AShare {
  const k = broadcastTo(c, x.shape).data;
  return new AShare(mulInto(new BigInt64Array(x.size), x.a, k), mulInto(new BigInt64Array(x.size), x.b, k), x.shape);
}

export function mulPublicScalar(x: AShare, s: bigint): AShare {
  return new AShare(mulScalarInto(new BigInt64Array(x.size), x.a, s), mulScalarInto(new BigInt64Array(x.size), x.b, s), x.shape);
}

/** Sums over the last axis. */
export function sumLastAxis(x: AShare): AShare {
  if (x.shape.length === 0) throw new ShapeError('sumLastAxis on a scalar share');
  const cols = x.shape[x.shape.length - 1], rows = x.size / Math.max(cols, 1);
  const shape = x.shape.slice(0, -1);
  return new AShare(sumRowsInto(new BigInt64Array(rows), x.a, rows, cols), sumRowsInto(new BigInt64Array(rows), x.b, rows, cols), shape);
}

export function transposeShare(x: AShare, perm?: readonly number[]): AShare {
  return new AShare(transposeData(x.a, x.shape, perm), transposeData(x.b, x.shape, perm), permuteShape(x.shape, perm));
}

export function broadcastShare(x: AShare, shape: Shape): AShare {
  if (sameShape(x.shape, shape)) return x;
  return new AShare(broadcastTo(new RingTensor(x.a, x.shape), shape).data, broadcastTo(new RingTensor(x.b, x.shape), shape).data, shape);
}

export function concatShares(xs: readonly AShare[], axis: number): AShare {
  const a = concat(xs.map((x) => new RingTensor(x.a, x.shape)), axis);
  const b = concat(xs.map((x) => new RingTensor(x.b, x.shape)), axis);
  return new AShare(a.data, b.data, a.shape);
}

/** The party's component pair viewed as a public tensor pair (for composing local kernels). */
export function components(x: AShare): [RingTensor, RingTensor] {
  return [new RingTensor(x.a, x.shape), new RingTensor(x.b, x.shape)];
}

// ------------------------------------------------------------ interactive

/**
 * Secret-shares a value known to party `owner` (1 round, one ring element per
 * value, sent to party owner+1). Components: c_owner = PRF(k_owner) (drawn by
 * owner and owner−1), c_{owner+1} = x − c_owner (sent), c_{owner+2} = 0.
 */
export async function inputFrom(p: Party, owner: PartyIndex, value: RingTensor | null, shape: Shape): Promise<AShare> {
  const n = sizeOf(shape);
  if (p.index === owner) {
    if (!value) throw new PartyError(`party ${owner} is the input owner but has no value`);
    assertSameShape(value.shape, shape, 'inputFrom');
    const r = p.rand.own.ring(n);
    const rest = subInto(new BigInt64Array(n), value.data, r);
    await p.round([[p.next, rest]], []);
    return new AShare(r, rest, shape);
  }
  if (p.index === (owner + 2) % 3) {
    const r = p.rand.next.ring(n);
    await p.round([], []);
    return new AShare(new BigInt64Array(n), r, shape);
  }
  const [msg] = await p.round([], [owner]);
  return new AShare(asRing(msg, n, `input from party ${owner}`), new BigInt64Array(n), shape);
}

/** Opens x to all three parties (1 round; each party sends one element per value). */
export async function reveal(p: Party, x: AShare): Promise<RingTensor> {
  const [msg] = await p.round([[p.next, x.a]], [p.prev]);
  const out = addInto(new BigInt64Array(x.size), x.a, x.b);
  return new RingTensor(addInto(out, out, asRing(msg, x.size, `reveal from party ${p.prev}`)), x.shape);
}

/** Opens x to party `to` only (1 round; party to+1 sends its second component). Others get null. */
export async function revealTo(p: Party, x: AShare, to: PartyIndex): Promise<RingTensor | null> {
  if (p.index === to) {
    const [msg] = await p.round([], [p.next]);
    const out = addInto(new BigInt64Array(x.size), x.a, x.b);
    return new RingTensor(addInto(out, out, asRing(msg, x.size, `reveal from party ${p.next}`)), x.shape);
  }
  await p.round(p.index === (to + 1) % 3 ? [[to, x.b]] : [], []);
  return null;
}

/** Local part of a product: z_i = x_i·y_i + x_i·y_{i+1} + x_{i+1}·y_i + α_i, a 3-out-of-3 sharing of x·y. */
export function mulLocal(p: Party, x: AShare, y: AShare): BigInt64Array {
  const n = x.size;
  const z = addInto(new BigInt64Array(n), y.a, y.b);
  mulInto(z, z, x.a);
  const t = mulInto(new BigInt64Array(n), x.b, y.a);
  addInto(z, z, t);
  return addInto(z, z, p.rand.zeroRing(n));
}

/** Same for matrix products, with the two local products fused into one backend call of inner size 2k. */
export async function matmulLocal(p: Party, x: AShare, y: AShare): Promise<RingTensor> {
  matmulDims(x.shape, y.shape); // reject bad shapes in the caller's terms, before the fused operands exist
  const [xa, xb] = components(x);
  const ysum = new RingTensor(addInto(new BigInt64Array(y.size), y.a, y.b), y.shape);
  const lhs = concat([xa, xb], -1);
  const rhs = concat([ysum, new RingTensor(y.a, y.shape)], -2);
  const z = await p.backend.matmul(lhs, rhs);
  addInto(z.data, z.data, p.rand.zeroRing(z.size));
  return z;
}

/** Turns a 3-out-of-3 sharing back into a replicated one: party i sends z_i to party i−1 (1 round). */
export async function reshare(p: Party, z: BigInt64Array, shape: Shape): Promise<AShare> {
  const [msg] = await p.round([[p.prev, z]], [p.next]);
  return new AShare(z, asRing(msg, z.length, `reshare from party ${p.next}`), shape);
}

/** x ⊙ y over the ring (no truncation): 1 round, one element per output per party (ABY3). */
export async function mul(p: Party, x: AShare, y: AShare): Promise<AShare> {
  [x, y] = pairwise(x, y, 'mul');
  return reshare(p, mulLocal(p, x, y), x.shape);
}

/** x @ y over the ring (no truncation): 1 round, one element per output per party. */
export async function matmul(p: Party, x: AShare, y: AShare): Promise<AShare> {
  const z = await matmulLocal(p, x, y);
  return reshare(p, z.data, z.shape);
}
