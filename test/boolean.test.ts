import t from 'tap';
import {
  BShare, and, andPlanes, andPublic, clearPads, concatPlanes, dealBits, fromPlanes, gatherPlanes, inputBits, lastWordMask, not, or,
  reconstructBits, revealBits, selectPlanes, slicePlanes, toPlanes, transpose32, wordsFor, xor, xorPublic,
} from '../protocols/boolean.ts';
import { randomRing, runParties, uniform } from './helpers/three-parties.ts';
import type { Party } from '../protocols/party.ts';

/** Deterministic random planes with zero pad bits. */
function randomPlanes(width: number, n: number, seed: number): Uint32Array {
  const m = width * wordsFor(n);
  const u = uniform(m, 0, 4294967296, seed);
  return clearPads(Uint32Array.from(u, (v) => v >>> 0), width, n);
}

/** Deals planes once per array (memoised) so all three parties get shares of the same sharing. */
const dealt = new WeakMap<Uint32Array, [BShare, BShare, BShare]>();
function shareBits(p: Party, planes: Uint32Array, width: number, n: number): BShare {
  let s = dealt.get(planes);
  if (!s) dealt.set(planes, (s = dealBits(planes, width, [n])));
  return s[p.index];
}

function bitOf(planes: Uint32Array, W: number, k: number, e: number): number {
  return (planes[k * W + (e >>> 5)] >>> (e & 31)) & 1;
}

/** The definition, one bit at a time, with BigInt. */
function naiveToPlanes(values: BigInt64Array, width: number): Uint32Array {
  const n = values.length, W = wordsFor(n);
  const out = new Uint32Array(width * W);
  for (let e = 0; e < n; e++) {
    const u = BigInt.asUintN(64, values[e]);
    for (let k = 0; k < width; k++) if ((u >> BigInt(k)) & 1n) out[k * W + (e >>> 5)] |= 1 << (e & 31);
  }
  return out;
}

function naiveFromPlanes(planes: Uint32Array, n: number, width: number): BigInt64Array {
  const W = wordsFor(n), out = new BigInt64Array(n);
  for (let e = 0; e < n; e++) {
    let v = 0n;
    for (let k = 0; k < width; k++) if (bitOf(planes, W, k, e)) v |= 1n << BigInt(k);
    out[e] = BigInt.asIntN(64, v);
  }
  return out;
}

function padsAreZero(x: BShare): boolean {
  const mask = lastWordMask(x.n);
  for (let k = 0; k < x.width && x.W > 0; k++) {
    if ((x.a[k * x.W + x.W - 1] & ~mask) !== 0 || (x.b[k * x.W + x.W - 1] & ~mask) !== 0) return false;
  }
  return true;
}

const EDGES = [0n, 1n, -1n, 2n, -2n, 1n << 62n, -(1n << 62n), -(1n << 63n) + 1n, (1n << 63n) - 1n, -(1n << 63n),
  1n << 32n, (1n << 32n) - 1n, (1n << 32n) + 1n, -(1n << 32n), -(1n << 32n) + 1n, -(1n << 32n) - 1n, 1n << 31n, -(1n << 31n)];

t.test('32×32 bit transpose matches the definition', async (t) => {
  const m = Uint32Array.from(uniform(64, 0, 4294967296, 3), (v) => v >>> 0);
  const want = new Uint32Array(32);
  for (let r = 0; r < 32; r++) for (let c = 0; c < 32; c++) if ((m[32 + c] >>> r) & 1) want[r] |= 1 << c;
  const block = m.slice();
  transpose32(block, 32);
  t.same(block.subarray(32), want);
  t.same(block.subarray(0, 32), m.subarray(0, 32), 'words outside the block are untouched');
  transpose32(block, 32);
  t.same(block, m, 'transpose is an involution');
});

t.test('toPlanes and fromPlanes match the naive versions for any count and width', async (t) => {
  for (const n of [0, 1, 31, 32, 33, 1000]) {
    const v = randomRing(n, n + 1);
    EDGES.slice(0, n).forEach((e, i) => (v[i] = e));
    for (const width of [64, 1, 17, 32, 40]) {
      const planes = toPlanes(v, width);
      t.same(planes, naiveToPlanes(v, width), `toPlanes n=${n} width=${width}`);
      t.same(fromPlanes(planes, n, width), naiveFromPlanes(planes, n, width), `fromPlanes n=${n} width=${width}`);
    }
    t.same(fromPlanes(toPlanes(v), n), v, `round trip n=${n}`);
  }
  t.throws(() => fromPlanes(new Uint32Array(3), 40, 1), { code: 'ERR_SHAPE' });
  t.throws(() => toPlanes(new BigInt64Array(4), 65), { code: 'ERR_SHAPE' });
});

t.test('dealt boolean shares reconstruct, keep pads zero and refuse inconsistent components', async (t) => {
  const x = randomPlanes(5, 45, 9);
  const s = dealBits(x, 5, [45]);
  t.same(reconstructBits(s), x);
  t.ok(s.every(padsAreZero));
  const bad = s.map((q) => new BShare(q.a, q.b.slice(), q.width, q.shape));
  bad[2].b[7] ^= 4;
  t.throws(() => reconstructBits(bad), { code: 'ERR_PROTOCOL', message: /component 0 differs between parties 2 and 0 at word 7/ });
  t.throws(() => new BShare(new Uint32Array(3), new Uint32Array(3), 2, [33]), { code: 'ERR_SHAPE' });
});

t.test('local XOR, NOT and operations with public planes on many planes', async (t) => {
  for (const n of [1, 31, 33, 1000]) {
    const width = 7, W = wordsFor(n);
    const x = randomPlanes(width, n, 2 * n), y = randomPlanes(width, n, 2 * n + 1), c = randomPlanes(width, n, 2 * n + 2);
    const res = await runParties(async (p) => {
      const xs = shareBits(p, x, width, n), ys = shareBits(p, y, width, n);
      return [xor(xs, ys), not(p, xs), xorPublic(p, xs, c), andPublic(xs, c)];
    });
    const ops = ['xor', 'not', 'xorPublic', 'andPublic'];
    const want = [(i: number) => x[i] ^ y[i], (i: number) => ~x[i], (i: number) => x[i] ^ c[i], (i: number) => x[i] & c[i]];
    ops.forEach((op, k) => {
      const shares = res.map((r) => r[k]);
      t.ok(shares.every(padsAreZero), `${op} n=${n}: pads zero`);
      const got = reconstructBits(shares);
      const exp = clearPads(Uint32Array.from(got, (_, i) => want[k](i) >>> 0), width, n);
      t.same(got, exp, `${op} n=${n}`);
    });
    t.equal(W, wordsFor(n));
  }
});

t.test('AND and OR of many planes in one round, including counts that are not multiples of 32', async (t) => {
  for (const n of [1, 31, 33, 1000]) {
    const width = 64, W = wordsFor(n);
    const x = randomPlanes(width, n, 3 * n), y = randomPlanes(width, n, 3 * n + 1);
    const res = await runParties(async (p) => {
      const xs = shareBits(p, x, width, n), ys = shareBits(p, y, width, n);
      const r0 = p.cost.rounds, b0 = p.transport.stats.bytesSent;
      const z = await and(p, xs, ys);
      const cost = { rounds: p.cost.rounds - r0, bytes: p.transport.stats.bytesSent - b0 };
      const o = await or(p, xs, ys);
      return { z, o, cost, opened: await revealBits(p, z) };
    });
    t.ok(res.every((r) => padsAreZero(r.z) && padsAreZero(r.o)), `pads zero n=${n}`);
    t.same(reconstructBits(res.map((r) => r.z)), Uint32Array.from(x, (v, i) => v & y[i]), `and n=${n}`);
    t.same(reconstructBits(res.map((r) => r.o)), Uint32Array.from(x, (v, i) => v | y[i]), `or n=${n}`);
    for (const r of res) t.same(r.opened, Uint32Array.from(x, (v, i) => v & y[i]), `revealBits n=${n}`);
    t.same(res.map((r) => r.cost.rounds), [1, 1, 1], 'one round');
    t.equal(res.reduce((s, r) => s + r.cost.bytes, 0), 3 * 4 * width * W, 'each party sends one bit per AND bit (whole words per plane)');
  }
});

t.test('andPlanes ANDs listed plane pairs from several shares in one round', async (t) => {
  const n = 70, W = wordsFor(n);
  const x = randomPlanes(5, n, 31), y = randomPlanes(4, n, 32);
  const pairs: [number, number][] = [[0, 3], [4, 0], [2, 2], [0, 3]];
  const res = await runParties(async (p) => {
    const xs = shareBits(p, x, 5, n), ys = shareBits(p, y, 4, n);
    const r0 = p.cost.rounds;
    const z = await andPlanes(p, pairs.map(([i]) => [xs, i] as const), pairs.map(([, j]) => [ys, j] as const));
    const rounds = p.cost.rounds - r0;
    await t.rejects(andPlanes(p, [[xs, 5]], [[ys, 0]]), { code: 'ERR_SHAPE' });
    return { z, rounds, after: await revealBits(p, await and(p, xs, xs)) };
  });
  const got = reconstructBits(res.map((r) => r.z));
  const want = Uint32Array.from(pairs.flatMap(([i, j]) => Array.from({ length: W }, (_, w) => x[i * W + w] & y[j * W + w])));
  t.same(got, want);
  t.same(res.map((r) => r.rounds), [1, 1, 1]);
  t.same(res[0].after, x, 'a refused call leaves the session usable (PRF streams in step)');
});

t.test('plane slicing, selection and concatenation', async (t) => {
  const n = 40, W = wordsFor(n);
  const x = randomPlanes(6, n, 5), y = randomPlanes(3, n, 6);
  const [p0] = await runParties(async (p) => {
    const xs = shareBits(p, x, 6, n), ys = shareBits(p, y, 3, n);
    const parts = [slicePlanes(xs, 2, 5), selectPlanes(xs, [5, 0, 0]), concatPlanes([ys, xs]), gatherPlanes([[ys, 2], [xs, 1]])];
    const out: Uint32Array[] = [];
    for (const s of parts) out.push(await revealBits(p, s));
    return out;
  });
  const planes = (src: Uint32Array, ks: number[]) => Uint32Array.from(ks.flatMap((k) => [...src.subarray(k * W, (k + 1) * W)]));
  t.same(p0[0], planes(x, [2, 3, 4]));
  t.same(p0[1], planes(x, [5, 0, 0]));
  t.same(p0[2], Uint32Array.from([...y, ...x]));
  t.same(p0[3], Uint32Array.from([...planes(y, [2]), ...planes(x, [1])]));
  await runParties(async (p) => {
    const xs = shareBits(p, x, 6, n);
    t.throws(() => slicePlanes(xs, 4, 7), { code: 'ERR_SHAPE' });
    t.throws(() => selectPlanes(xs, [6]), { code: 'ERR_SHAPE' });
  });
});

t.test('inputBits shares a value known to one party with one message', async (t) => {
  const n = 77, width = 64, v = randomRing(n, 44);
  for (const owner of [0, 1, 2] as const) {
    const res = await runParties(async (p) => {
      const b0 = p.transport.stats.bytesSent;
      const s = await inputBits(p, owner, p.index === owner ? toPlanes(v) : null, width, [7, 11]);
      return { s, sent: p.transport.stats.bytesSent - b0, msgs: p.transport.stats.messagesSent };
    });
    t.same(fromPlanes(reconstructBits(res.map((r) => r.s)), n), v, `owner ${owner}`);
    t.ok(res.every((r) => padsAreZero(r.s)));
    t.same(res[0].s.shape, [7, 11]);
    t.same(res.map((r) => r.sent), [0, 1, 2].map((i) => (i === owner ? 4 * width * wordsFor(n) : 0)), 'only the owner sends, one plane set');
  }
  await t.rejects(runParties(async (p) => inputBits(p, 0, null, 1, [3])), { code: 'ERR_PARTY' });
});
