import t from 'tap';
import { AShare, dealShares, fromPair, reveal } from '../protocols/arith.ts';
import { BShare, dealBits, fromPlanes, reconstructBits, wordsFor } from '../protocols/boolean.ts';
import { A2B_AND_BITS, MSB_AND_BITS, a2b, bitToArith, msb, mulBit } from '../protocols/conversions.ts';
import { lessThan, ltz, maxAlongAxis, maxLastAxis, maxPairwise, relu, select } from '../protocols/compare.ts';
import { RingTensor } from '../protocols/ring.ts';
import { decode, encode } from '../protocols/fixed.ts';
import { randomRing, runParties, uniform } from './helpers/three-parties.ts';
import type { Party } from '../protocols/party.ts';

/** Deals x once per tensor (memoised) so all three parties get pairs of the same sharing. */
const dealt = new WeakMap<RingTensor, ReturnType<typeof dealShares>>();
function share(p: Party, x: RingTensor): AShare {
  let pairs = dealt.get(x);
  if (!pairs) dealt.set(x, (pairs = dealShares(x)));
  return fromPair(pairs[p.index]);
}

const dealtBits = new WeakMap<Uint32Array, [BShare, BShare, BShare]>();
function shareBit(p: Party, plane: Uint32Array, n: number): BShare {
  let s = dealtBits.get(plane);
  if (!s) dealtBits.set(plane, (s = dealBits(plane, 1, [n])));
  return s[p.index];
}

const MIN = -(1n << 63n), MAX = (1n << 63n) - 1n;
const EDGES = [0n, 1n, -1n, 2n, -2n, 1n << 62n, -(1n << 62n), MIN + 1n, MAX, MIN,
  1n << 32n, (1n << 32n) - 1n, (1n << 32n) + 1n, -(1n << 32n), -(1n << 32n) + 1n, -(1n << 32n) - 1n, 1n << 31n, -(1n << 31n), (1n << 31n) - 1n];

/** Full-range random values with the edge values in front. */
function values(n: number, seed: number): RingTensor {
  const v = randomRing(n, seed);
  EDGES.slice(0, n).forEach((e, i) => (v[i] = e));
  return new RingTensor(v, [n]);
}

/** Random values in (−2^62, 2^62) (so differences do not wrap), edges within range in front. */
function halfRange(n: number, seed: number): RingTensor {
  const v = randomRing(n, seed).map((x) => x >> 1n);
  EDGES.filter((e) => e > -(1n << 62n) && e < 1n << 62n).slice(0, n).forEach((e, i) => (v[i] = e));
  return new RingTensor(v, [n]);
}

function bitsOf(planes: Uint32Array, n: number): number[] {
  return Array.from({ length: n }, (_, e) => (planes[e >>> 5] >>> (e & 31)) & 1);
}

const COUNTS = [1, 31, 33, 1000];

t.test('a2b yields the bits of the value', async (t) => {
  for (const n of COUNTS) {
    const x = values(n, n);
    const res = await runParties(async (p) => a2b(p, share(p, x)));
    t.same(fromPlanes(reconstructBits(res), n), x.data, `n=${n}`);
  }
});

t.test('msb and ltz give the sign bit on full-range values, with the documented cost', async (t) => {
  for (const n of COUNTS) {
    const x = values(n, 100 + n);
    const res = await runParties(async (p) => {
      const r0 = p.cost.rounds, b0 = p.transport.stats.bytesSent;
      const s = await ltz(p, share(p, x));
      return { s, rounds: p.cost.rounds - r0, bytes: p.transport.stats.bytesSent - b0, m: await msb(p, share(p, x)) };
    });
    const want = Array.from(x.data, (v) => (v < 0n ? 1 : 0));
    t.same(bitsOf(reconstructBits(res.map((r) => r.s)), n), want, `ltz n=${n}`);
    t.same(bitsOf(reconstructBits(res.map((r) => r.m)), n), want, `msb n=${n}`);
    t.same(res[0].s.shape, [n]);
    t.same(res.map((r) => r.rounds), [8, 8, 8], `ltz takes 8 rounds (n=${n})`);
    // Per element: party 1 inputs 64 bits, then 181 AND bits are each sent by all 3 parties; whole words per plane.
    const W = wordsFor(n);
    t.equal(res.reduce((s, r) => s + r.bytes, 0), 4 * W * (64 + 3 * MSB_AND_BITS), `ltz bytes = 2428·⌈n/32⌉ (n=${n})`);
    t.equal(4 * (64 + 3 * MSB_AND_BITS), 2428);
  }
});

t.test('a2b costs 8 rounds and the documented AND count', async (t) => {
  const n = 100, x = values(n, 5);
  const res = await runParties(async (p) => {
    const r0 = p.cost.rounds, b0 = p.transport.stats.bytesSent;
    await a2b(p, share(p, x));
    return { rounds: p.cost.rounds - r0, bytes: p.transport.stats.bytesSent - b0 };
  });
  t.same(res.map((r) => r.rounds), [8, 8, 8]);
  t.equal(res.reduce((s, r) => s + r.bytes, 0), 4 * wordsFor(n) * (64 + 3 * A2B_AND_BITS));
  t.ok(A2B_AND_BITS < 400, `Sklansky uses ${A2B_AND_BITS} AND bits per element`);
});

t.test('bit injection gives integer 0/1, optionally scaled, and mulBit multiplies by the bit', async (t) => {
  for (const n of COUNTS) {
    const bits = Uint32Array.from(uniform(wordsFor(n), 0, 4294967296, n), (v) => v >>> 0);
    if (n & 31) bits[bits.length - 1] &= (1 << (n & 31)) - 1;
    const x = values(n, 7 * n);
    const res = await runParties(async (p) => {
      const b = shareBit(p, bits, n);
      const r0 = p.cost.rounds, b0 = p.transport.stats.bytesSent;
      const plain = await bitToArith(p, b);
      const cost = { rounds: p.cost.rounds - r0, bytes: p.transport.stats.bytesSent - b0 };
      const r1 = p.cost.rounds, b1 = p.transport.stats.bytesSent;
      const prod = await mulBit(p, share(p, x), b);
      const cost2 = { rounds: p.cost.rounds - r1, bytes: p.transport.stats.bytesSent - b1 };
      const scaled = await bitToArith(p, b, 1n << 16n);
      return { cost, cost2, opened: [await reveal(p, plain), await reveal(p, scaled), await reveal(p, prod)] };
    });
    const want = bitsOf(bits, n).map(BigInt);
    const [plain, scaled, prod] = res[0].opened;
    t.same([...plain.data], want, `bitToArith n=${n}`);
    t.same([...scaled.data], want.map((b) => b << 16n), `bitToArith scaled n=${n}`);
    t.same([...prod.data], want.map((b, i) => (b ? x.data[i] : 0n)), `mulBit n=${n}`);
    t.same(res.map((r) => r.cost.rounds), [2, 2, 2]);
    t.equal(res.reduce((s, r) => s + r.cost.bytes, 0), 24 * n, 'bitToArith: 8 + 16 bytes per element');
    t.same(res.map((r) => r.cost2.rounds), [2, 2, 2]);
    t.equal(res.reduce((s, r) => s + r.cost2.bytes, 0), 56 * n, 'mulBit: 8 + 24 + 24 bytes per element');
  }
  await t.rejects(runParties(async (p) => bitToArith(p, BShare.zeros([4], 2))), { code: 'ERR_SHAPE' });
});

t.test('lessThan returns arithmetic 0/1 for differences below 2^63, with the documented cost', async (t) => {
  for (const n of COUNTS) {
    const x = halfRange(n, 3 * n), y = halfRange(n, 3 * n + 1);
    // a few ties and neighbours
    if (n > 3) {
      y.data[0] = x.data[0];
      y.data[1] = x.data[1] + 1n;
      y.data[2] = x.data[2] - 1n;
    }
    const res = await runParties(async (p) => {
      const r0 = p.cost.rounds, b0 = p.transport.stats.bytesSent;
      const lt = await lessThan(p, share(p, x), share(p, y));
      return { rounds: p.cost.rounds - r0, bytes: p.transport.stats.bytesSent - b0, lt: await reveal(p, lt) };
    });
    t.same([...res[0].lt.data], Array.from(x.data, (v, i) => (v < y.data[i] ? 1n : 0n)), `n=${n}`);
    t.same(res.map((r) => r.rounds), [10, 10, 10]);
    t.equal(res.reduce((s, r) => s + r.bytes, 0), 2428 * wordsFor(n) + 24 * n);
  }
});

t.test('relu on fixed-point values and select', async (t) => {
  const n = 1000;
  const xv = uniform(n, -50, 50, 17);
  xv[0] = 0; xv[1] = -(2 ** -16); xv[2] = 2 ** -16; xv[3] = -1e6; xv[4] = 1e6;
  const X = encode(xv), A = new RingTensor(randomRing(n, 18), [n]), B = new RingTensor(randomRing(n, 19), [n]);
  const C = new RingTensor(BigInt64Array.from(uniform(n, 0, 2, 20), (v) => BigInt(Math.floor(v))), [n]);
  const res = await runParties(async (p) => {
    const r0 = p.cost.rounds, b0 = p.transport.stats.bytesSent;
    const r = await relu(p, share(p, X));
    const rounds = p.cost.rounds - r0, bytes = p.transport.stats.bytesSent - b0;
    const r1 = p.cost.rounds, b1 = p.transport.stats.bytesSent;
    const s = await select(p, share(p, C), share(p, A), share(p, B));
    const sel = { rounds: p.cost.rounds - r1, bytes: p.transport.stats.bytesSent - b1 };
    return { rounds, bytes, sel, r: await reveal(p, r), s: await reveal(p, s) };
  });
  const got = decode(res[0].r);
  const wrong = [...got].filter((g, i) => g !== Math.max(Math.round(xv[i] * 65536) / 65536, 0)).length;
  t.equal(wrong, 0, 'relu is exact on fixed-point values, including ±1 ulp and 0');
  t.same(res[0].rounds, 10);
  t.equal(res.reduce((s, r) => s + r.bytes, 0), 2428 * wordsFor(n) + 56 * n, 'relu bytes: msb + fused x·bit');
  t.equal(res[0].sel.rounds, 1);
  t.equal(res.reduce((s, r) => s + r.sel.bytes, 0), 24 * n, 'select is one ring product');
  t.same([...res[0].s.data], Array.from(C.data, (c, i) => (c ? A.data[i] : B.data[i])));
});

t.test('maxPairwise and maxLastAxis with odd lengths and negative values', async (t) => {
  const cases: [number, number][] = [[3, 7], [5, 1], [1, 2], [4, 33], [2, 5]];
  for (const [rows, cols] of cases) {
    const n = rows * cols;
    const v = halfRange(n, rows * 100 + cols).data;
    // one all-negative row
    for (let j = 0; j < cols; j++) v[j] = -1n - BigInt(j * 1000) - (v[j] < 0n ? -v[j] : v[j]);
    const x = new RingTensor(v, [rows, cols]);
    const res = await runParties(async (p) => {
      const r0 = p.cost.rounds;
      const m = await maxLastAxis(p, share(p, x));
      return { rounds: p.cost.rounds - r0, m: await reveal(p, m) };
    });
    const want = Array.from({ length: rows }, (_, r) => v.subarray(r * cols, (r + 1) * cols).reduce((a, b) => (b > a ? b : a)));
    t.same([...res[0].m.data], want, `[${rows}, ${cols}]`);
    t.same(res[0].m.shape, [rows]);
    t.equal(res[0].rounds, 10 * Math.ceil(Math.log2(cols)), 'one comparison level per halving');
  }
  // higher rank: the max runs over the last axis of every leading index
  const z = halfRange(2 * 2 * 3, 77);
  const zt = new RingTensor(z.data, [2, 2, 3]);
  const [mz] = await runParties(async (p) => reveal(p, await maxLastAxis(p, share(p, zt))));
  t.same(mz.shape, [2, 2]);
  t.same([...mz.data], [0, 1, 2, 3].map((r) => z.data.subarray(3 * r, 3 * r + 3).reduce((a, b) => (b > a ? b : a))));
  const x = halfRange(33, 1), y = halfRange(33, 2);
  const [m] = await runParties(async (p) => reveal(p, await maxPairwise(p, share(p, x), share(p, y))));
  t.same([...m.data], Array.from(x.data, (v, i) => (v > y.data[i] ? v : y.data[i])));
  await t.rejects(runParties(async (p) => maxLastAxis(p, AShare.zeros([3, 0]))), { code: 'ERR_SHAPE' });
});

t.test('maxAlongAxis reduces any axis of a rank-3 tensor', async (t) => {
  const shape = [3, 4, 5];
  const vals = Array.from({ length: 60 }, (_, i) => ((i * 37) % 61) - 30);
  const x = RingTensor.of(vals, shape);
  for (const axis of [0, 1, 2, -1]) {
    const [m] = await runParties(async (p) => reveal(p, await maxAlongAxis(p, share(p, x), axis)));
    const ax = (axis + 3) % 3;
    const outShape = shape.filter((_, i) => i !== ax);
    t.same(m.shape, outShape, `axis ${axis} shape`);
    const want: bigint[] = [];
    for (let i = 0; i < shape[0]; i++) for (let j = 0; j < shape[1]; j++) for (let k = 0; k < shape[2]; k++) {
      const idx = [i, j, k];
      if (idx[ax] !== 0) continue;
      let best = -Infinity;
      for (let r = 0; r < shape[ax]; r++) {
        const q = [...idx];
        q[ax] = r;
        best = Math.max(best, vals[q[0] * 20 + q[1] * 5 + q[2]]);
      }
      want.push(BigInt(best));
    }
    t.same([...m.data], want, `axis ${axis} values`);
  }
  await t.rejects(runParties(async (p) => maxAlongAxis(p, share(p, x), 3)), { code: 'ERR_SHAPE' });
});
