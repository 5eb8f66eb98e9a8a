/**
 * Conversions between the arithmetic and boolean worlds (ABY3 §5.3).
 *
 * A2B. x = x0 + x1 + x2 is split into two addends that have boolean sharings
 * almost for free: component 0 of the boolean sharing is held by parties 0 and
 * 2, both of which know x0, so [x0]^B = (x0, 0, 0) is local; party 1 knows
 * x1 + x2 and boolean-shares it with one message (inputBits). The sum of the
 * two addends is then computed with a bit-sliced adder, every AND of one adder
 * level packed into one round:
 *
 *   msb  carry-lookahead tree for the carry into bit 63 only. Generate
 *        g = a ∧ b (bits 0..62) costs one AND round, propagate p = a ⊕ b is
 *        local; pairs of groups combine as G = G_hi ⊕ (P_hi ∧ G_lo),
 *        P = P_hi ∧ P_lo, and P is never formed for the group holding bit 0
 *        (no carry enters it). 63 → 32 → 16 → 8 → 4 → 2 → 1 groups.
 *        Costs per element: 63 + 61 + 31 + 15 + 7 + 3 + 1 = 181 AND bits and
 *        the 64-bit input; rounds 1 (input) + 1 (generate) + 6 (tree) = 8.
 *        Bytes summed over parties for n elements: 4·⌈n/32⌉·(64 + 3·181)
 *        = 2428·⌈n/32⌉ (75.9 bytes per element).
 *   a2b  all 64 sum bits with a Sklansky parallel-prefix adder (same 8 rounds,
 *        A2B_AND_BITS AND bits per element).
 *
 * B2A of bits (bit injection). With b = b0 ⊕ c, where b0 is component 0
 * (parties 0 and 2) and c = b1 ⊕ b2 is known to party 1, the integer b is
 * b0 + c − 2·b0·c: party 1 arithmetic-shares c with one message, and the
 * product with the locally known b0 is finished by one re-sharing round.
 * 2 rounds, 8 + 16 = 24 bytes per element summed over parties.
 */
import { AShare, mulLocal, reshare } from './arith.ts';
import {
  BShare, and, andPlanes, fromPlanes, inputBits, slicePlanes, toPlanes, wordsFor, xor, type PlaneRef,
} from './boolean.ts';
import { ShapeError } from './errors.ts';
import { asRing, type Party } from './party.ts';
import { addInto, limbs, mulScalarInto, subInto } from './ring.ts';

/** AND bits per element of `msb` (carry tree over bits 0..62, see above). */
export const MSB_AND_BITS = 181;

/**
 * Round 1 of A2B: boolean sharings of the addends a = x0 and b = x1 + x2
 * (64 planes each), and the propagate bits a ⊕ b. Every component of a is
 * zero except component 0 and b's component 0 is zero, so a ⊕ b needs no
 * XOR: its components are (x0, b1, b2).
 */
async function addends(p: Party, x: AShare): Promise<{ A: BShare; B: BShare; P: BShare }> {
  const n = x.size, m = 64 * wordsFor(n);
  const zero = new Uint32Array(m);
  const x0 = p.index === 0 ? toPlanes(x.a) : p.index === 2 ? toPlanes(x.b) : null;
  const y = p.index === 1 ? toPlanes(addInto(new BigInt64Array(n), x.a, x.b)) : null;
  const B = await inputBits(p, 1, y, 64, x.shape);
  const A = new BShare(p.index === 0 ? x0! : zero, p.index === 2 ? x0! : zero, 64, x.shape);
  const P = new BShare(p.index === 0 ? x0! : B.a, p.index === 2 ? x0! : B.b, 64, x.shape);
  return { A, B, P };
}

/** Generate bits g_k = a_k ∧ b_k of bits 0..62 (one AND round). */
async function generate(p: Party, A: BShare, B: BShare): Promise<BShare> {
  return and(p, slicePlanes(A, 0, 63), slicePlanes(B, 0, 63));
}

/** Copies plane `from` of (sa, sb) into plane `to` of (da, db). */
function copyPlane(da: Uint32Array, db: Uint32Array, to: number, sa: Uint32Array, sb: Uint32Array, from: number, W: number): void {
  da.set(sa.subarray(from * W, (from + 1) * W), to * W);
  db.set(sb.subarray(from * W, (from + 1) * W), to * W);
}

/** d[od + w] = s[os + w] ⊕ t[ot + w] for one plane. */
function xorPlane(d: Uint32Array, od: number, s: Uint32Array, os: number, t: Uint32Array, ot: number, W: number): void {
  for (let w = 0; w < W; w++) d[od + w] = s[os + w] ^ t[ot + w];
}

/**
 * The carry out of bits 0..m−1 from generate planes G and propagate planes P
 * (plane k = bit k; P's plane 0 is never read). Carry-lookahead tree: each
 * level pairs groups (2j, 2j+1) and computes all of its ANDs in one round.
 */
async function carryTree(p: Party, G: BShare, P: BShare): Promise<BShare> {
  let m = G.width;
  const W = G.W;
  while (m > 1) {
    const h = m >> 1;
    const left: PlaneRef[] = [], right: PlaneRef[] = [];
    for (let j = 0; j < h; j++) {
      left.push([P, 2 * j + 1]);
      right.push([G, 2 * j]);
    }
    for (let j = 1; j < h; j++) {
      left.push([P, 2 * j + 1]);
      right.push([P, 2 * j]);
    }
    const t = await andPlanes(p, left, right);
    const m2 = h + (m & 1);
    const ga = new Uint32Array(m2 * W), gb = new Uint32Array(m2 * W);
    const pa = new Uint32Array(m2 * W), pb = new Uint32Array(m2 * W);
    for (let j = 0; j < h; j++) {
      xorPlane(ga, j * W, G.a, (2 * j + 1) * W, t.a, j * W, W);
      xorPlane(gb, j * W, G.b, (2 * j + 1) * W, t.b, j * W, W);
      if (j > 0) copyPlane(pa, pb, j, t.a, t.b, h + j - 1, W);
    }
    if (m & 1) {
      copyPlane(ga, gb, h, G.a, G.b, m - 1, W);
      copyPlane(pa, pb, h, P.a, P.b, m - 1, W);
    }
    G = new BShare(ga, gb, m2, G.shape);
    P = new BShare(pa, pb, m2, P.shape);
    m = m2;
  }
  return G;
}

/**
 * The most significant bit of x (1 bit per element, the sign of x read as a
 * signed 64-bit integer): 8 rounds, 2428·⌈n/32⌉ bytes summed over parties.
 */
export async function msb(p: Party, x: AShare): Promise<BShare> {
  const { A, B, P } = await addends(p, x);
  const carry = await carryTree(p, await generate(p, A, B), slicePlanes(P, 0, 63));
  return xor(slicePlanes(P, 63, 64), carry);
}

/** Sklansky prefix schedule over bits 0..62: per level, the (i, j) pairs with i ← i ∘ j and whether P_i is still needed. */
function sklanskyLevels(): { i: number; j: number; needP: boolean }[][] {
  const levels: { i: number; j: number; needP: boolean }[][] = [];
  for (let l = 0; l < 6; l++) {
    const ops: { i: number; j: number; needP: boolean }[] = [];
    for (let i = 0; i < 63; i++) {
      if (((i >> l) & 1) === 0) continue;
      // After this level i's group starts at the enclosing 2^(l+1) block; a group starting at bit 0 never needs P.
      ops.push({ i, j: ((i >> l) << l) - 1, needP: (i >> (l + 1)) << (l + 1) > 0 });
    }
    levels.push(ops);
  }
  return levels;
}

const SKLANSKY = sklanskyLevels();

/** AND bits per element of `a2b`: 63 generate bits plus the Sklansky levels. */
export const A2B_AND_BITS = 63 + SKLANSKY.reduce((s, ops) => s + ops.length + ops.filter((o) => o.needP).length, 0);

/**
 * Full bit decomposition: the 64 bits of x as a boolean sharing (8 rounds).
 * Sum bit k is a_k ⊕ b_k ⊕ carry_k with carry_k the prefix generate of bits
 * 0..k−1, all prefixes from one Sklansky (divide-and-conquer) prefix network.
 */
export async function a2b(p: Party, x: AShare): Promise<BShare> {
  const { A, B, P: P0 } = await addends(p, x);
  let G = await generate(p, A, B);
  let P = slicePlanes(P0, 0, 63);
  const W = G.W;
  for (const ops of SKLANSKY) {
    const withP = ops.filter((o) => o.needP);
    const left: PlaneRef[] = [...ops.map((o) => [P, o.i] as const), ...withP.map((o) => [P, o.i] as const)];
    const right: PlaneRef[] = [...ops.map((o) => [G, o.j] as const), ...withP.map((o) => [P, o.j] as const)];
    const t = await andPlanes(p, left, right);
    const ga = G.a.slice(), gb = G.b.slice(), pa = P.a.slice(), pb = P.b.slice();
    ops.forEach((o, k) => {
      xorPlane(ga, o.i * W, ga, o.i * W, t.a, k * W, W);
      xorPlane(gb, o.i * W, gb, o.i * W, t.b, k * W, W);
    });
    withP.forEach((o, k) => copyPlane(pa, pb, o.i, t.a, t.b, ops.length + k, W));
    G = new BShare(ga, gb, 63, x.shape);
    P = new BShare(pa, pb, 63, x.shape);
  }
  // carry_k = G[k−1]; bit 0 has no carry.
  const sa = P0.a.slice(), sb = P0.b.slice();
  for (let k = 1; k < 64; k++) {
    xorPlane(sa, k * W, sa, k * W, G.a, (k - 1) * W, W);
    xorPlane(sb, k * W, sb, k * W, G.b, (k - 1) * W, W);
  }
  return new BShare(sa, sb, 64, x.shape);
}

// ------------------------------------------------------------ bit injection

function checkBit(b: BShare, what: string): void {
  if (b.width !== 1) throw new ShapeError(`${what} takes a 1-bit boolean share, got ${b.width} bits`);
}

/** Component 0 of the bit (b0, held by parties 0 and 2) as ring 0/1 values; null at party 1. */
function component0(p: Party, b: BShare): BigInt64Array | null {
  return p.index === 0 ? fromPlanes(b.a, b.n, 1) : p.index === 2 ? fromPlanes(b.b, b.n, 1) : null;
}

/** c = b1 ⊕ b2 at party 1 as ring 0/1 values. */
function componentsXor12(b: BShare): BigInt64Array {
  const w = new Uint32Array(b.a.length);
  for (let i = 0; i < w.length; i++) w[i] = b.a[i] ^ b.b[i];
  return fromPlanes(w, b.n, 1);
}

/**
 * Bit injection: the integer 0/1 (times `scale`, default 1; not fixed-point
 * scaled unless you pass 2^f) of a 1-bit boolean share.
 *
 * b = b0 + c − 2·b0·c = b0 + d·c with d = 1 − 2·b0 = ±1. Round 1: party 1
 * arithmetic-shares c with one message (c = r + (c − r), r from k1, the rest
 * to party 2, as in inputFrom). Both parties 0 and 2 know d, and each holds
 * one additive part of c (party 0 r, party 2 c − r), so d·c needs no ring
 * multiplication protocol: t0 = s·(b0 + d·r) at party 0 and t2 = s·d·(c − r)
 * at party 2 already form a two-party additive sharing of s·b. Round 2 turns
 * it into a replicated one with masks (σ, μ) from k0, which party 1 does not
 * hold: components (σ, t0 − σ + μ, t2 − μ), the last two sent to party 1.
 * 2 rounds, 8 + 16 = 24 bytes per element summed over parties (forming
 * b0·c with a replicated ring product, arith.mul, would cost 8 + 24 = 32).
 */
export async function bitToArith(p: Party, b: BShare, scale = 1n): Promise<AShare> {
  checkBit(b, 'bitToArith');
  const n = b.n, shape = b.shape;
  if (p.index === 1) {
    const r = p.rand.own.ring(n);
    const rest = subInto(new BigInt64Array(n), componentsXor12(b), r);
    await p.round([[p.next, rest]], []);
    const [m1, m2] = await p.round([], [0, 2]);
    return new AShare(asRing(m1, n, 'bit injection from party 0'), asRing(m2, n, 'bit injection from party 2'), shape);
  }
  const b0 = component0(p, b)!;
  let t: BigInt64Array;
  if (p.index === 0) {
    const r = p.rand.next.ring(n);
    await p.round([], []);
    t = new BigInt64Array(n);
    condNegInto(t, r, b0);
    addInto(t, t, b0);
  } else {
    const [rest] = await p.round([], [1]);
    t = new BigInt64Array(n);
    condNegInto(t, asRing(rest, n, 'bit injection input from party 1'), b0);
  }
  if (scale !== 1n) mulScalarInto(t, t, scale);
  // k0 is party 0's own key and party 2's next key.
  const k0 = p.index === 0 ? p.rand.own : p.rand.next;
  const sigma = k0.ring(n), mu = k0.ring(n);
  if (p.index === 0) {
    const c1 = addInto(t, subInto(t, t, sigma), mu);
    await p.round([[1, c1]], []);
    return new AShare(sigma, c1, shape);
  }
  const c2 = subInto(t, t, mu);
  await p.round([[1, c2]], []);
  return new AShare(c2, sigma, shape);
}

/** out[e] = bits[e] ? −v[e] : v[e] for 0/1 ring bits: (v ⊕ m) − m with m = −bit, limb-wise (no BigInt). */
function condNegInto(out: BigInt64Array, v: BigInt64Array, bits: BigInt64Array): BigInt64Array {
  const o = limbs(out), x = limbs(v), s = limbs(bits);
  for (let i = 0; i < o.length; i += 2) {
    const bit = s[i], m = -bit | 0;
    const lo = ((x[i] ^ m) >>> 0) + bit;
    o[i + 1] = ((x[i + 1] ^ m) >>> 0) + (lo > 0xffffffff ? 1 : 0);
    o[i] = lo;
  }
  return out;
}

/** out[e] = bits[e] ? v[e] : 0. */
function maskInto(out: BigInt64Array, v: BigInt64Array, bits: BigInt64Array): void {
  const o = limbs(out), x = limbs(v), s = limbs(bits);
  for (let i = 0; i < o.length; i += 2) {
    const k = -s[i] | 0;
    o[i] = x[i] & k;
    o[i + 1] = x[i + 1] & k;
  }
}

/**
 * x · b for an arithmetic x and a 1-bit boolean b, fusing the bit injection
 * with the product: with b = b0 ⊕ c as above, x·b = x·b0 + c·(x·(1 − 2·b0)).
 * Parties 0 and 2 know b0, so x·b0 and x·(1 − 2·b0) are local 3-out-of-3
 * sharings (party 0 scales x0 + x1, party 2 scales x2). Round 1 reshares
 * x·(1 − 2·b0) while party 1 inputs c; round 2 is one ring product with x·b0
 * folded into its reshare. 2 rounds and 56 bytes per element summed over
 * parties, against 3 rounds and 24 + 24 = 48 bytes for bitToArith then mul:
 * a round saved for 8 bytes, the better trade once parties are a network
 * round-trip apart.
 */
export async function mulBit(p: Party, x: AShare, b: BShare): Promise<AShare> {
  checkBit(b, 'mulBit');
  if (b.n !== x.size) throw new ShapeError(`mulBit: ${x.size} values and ${b.n} bits`);
  const n = x.size, shape = x.shape;
  const u = new BigInt64Array(n), v = new BigInt64Array(n);
  const b0 = component0(p, b);
  if (b0) {
    const s = p.index === 0 ? addInto(new BigInt64Array(n), x.a, x.b) : x.a;
    maskInto(u, s, b0);
    condNegInto(v, s, b0);
  }
  addInto(v, v, p.rand.zeroRing(n));
  let C: AShare, XD: AShare;
  if (p.index === 1) {
    const r = p.rand.own.ring(n);
    const rest = subInto(new BigInt64Array(n), componentsXor12(b), r);
    const [fromNext] = await p.round([[p.prev, v], [p.next, rest]], [p.next]);
    C = new AShare(r, rest, shape);
    XD = new AShare(v, asRing(fromNext, n, 'mulBit reshare from party 2'), shape);
  } else if (p.index === 0) {
    const r = p.rand.next.ring(n);
    const [fromNext] = await p.round([[p.prev, v]], [p.next]);
    C = new AShare(new BigInt64Array(n), r, shape);
    XD = new AShare(v, asRing(fromNext, n, 'mulBit reshare from party 1'), shape);
  } else {
    const [fromNext, rest] = await p.round([[p.prev, v]], [p.next, 1]);
    C = new AShare(asRing(rest, n, 'mulBit input from party 1'), new BigInt64Array(n), shape);
    XD = new AShare(v, asRing(fromNext, n, 'mulBit reshare from party 0'), shape);
  }
  const z = mulLocal(p, C, XD);
  return reshare(p, addInto(z, z, u), shape);
}
