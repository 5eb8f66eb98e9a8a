import t from 'tap';
import {
  add, addPublic, dealShares, inputFrom, matmul, mul, mulPublic, neg, reconstruct, reveal, revealTo, sub, sumLastAxis, toPair,
} from '../protocols/arith.ts';
import { matmulFx, mulFx, mulPublicFx, truncate } from '../protocols/truncation.ts';
import { RingTensor, mul as ringMul, add as ringAdd } from '../protocols/ring.ts';
import { decode, encode } from '../protocols/fixed.ts';
import { matmulReference } from '../protocols/backend-js.ts';
import { randomRing, runParties, uniform } from './helpers/three-parties.ts';
import { share } from './helpers/deal.ts';

t.test('dealer shares reconstruct, and any single pair is not the secret', async (t) => {
  const x = new RingTensor(randomRing(100), [10, 10]);
  const pairs = dealShares(x);
  t.same(reconstruct(pairs).data, x.data);
  t.not(pairs[0].a[0], x.data[0]);
  const bad = pairs.map((q) => ({ ...q, b: q.b.slice() }));
  bad[1].b[3] ^= 1n;
  t.throws(() => reconstruct(bad), { code: 'ERR_PROTOCOL', message: /component 2 differs between parties 1 and 2 at element 3/ });
});

t.test('reveal, revealTo and inputFrom round-trip random ring values', async (t) => {
  const x = new RingTensor(randomRing(257), [257]);
  const res = await runParties(async (p) => {
    const own = await inputFrom(p, 1, p.index === 1 ? x : null, x.shape);
    const all = await reveal(p, own);
    const only = await revealTo(p, own, 2);
    return { all: all.data, only: only?.data ?? null, pair: toPair(own) };
  });
  for (const r of res) t.same(r.all, x.data);
  t.equal(res[0].only, null);
  t.equal(res[1].only, null);
  t.same(res[2].only, x.data);
  t.same(reconstruct(res.map((r) => r.pair)).data, x.data);
});

t.test('local linear operations and ring products are exact mod 2^64', async (t) => {
  const x = new RingTensor(randomRing(300, 1), [300]), y = new RingTensor(randomRing(300, 2), [300]);
  const c = new RingTensor(randomRing(300, 3), [300]);
  const res = await runParties(async (p) => {
    const xs = share(p, x), ys = share(p, y);
    const outs = [add(xs, ys), sub(xs, ys), neg(xs), addPublic(p, xs, c), mulPublic(xs, c), await mul(p, xs, ys)];
    const opened: RingTensor[] = [];
    for (const o of outs) opened.push(await reveal(p, o)); // one protocol at a time per session
    return opened;
  });
  const want = [ringAdd(x, y), ringAdd(x, new RingTensor(y.data.map((v) => -v), y.shape)), new RingTensor(x.data.map((v) => -v), x.shape), ringAdd(x, c), ringMul(x, c), ringMul(x, y)];
  want.forEach((w, k) => t.same(res[0][k].data, w.data, `op ${k}`));
});

t.test('ring matmul equals the reference product, batched and broadcast', async (t) => {
  const x = new RingTensor(randomRing(2 * 5 * 7, 4), [2, 5, 7]), y = new RingTensor(randomRing(7 * 3, 5), [7, 3]);
  const [r] = await runParties(async (p) => reveal(p, await matmul(p, share(p, x), share(p, y))));
  t.same(r.data, matmulReference(x, y).data);
  t.same(r.shape, [2, 5, 3]);
});

t.test('fixed-point products are within one unit of the float product, including negatives', async (t) => {
  const n = 2000;
  const xv = uniform(n, -100, 100, 11), yv = uniform(n, -100, 100, 12);
  xv[0] = 0; yv[0] = -5; xv[1] = -0.5; yv[1] = -0.5; xv[2] = 2 ** -16; yv[2] = 1;
  const X = encode(xv), Y = encode(yv);
  const res = await runParties(async (p) => {
    const xs = share(p, X), ys = share(p, Y);
    return [await reveal(p, await mulFx(p, xs, ys)), await reveal(p, await mulPublicFx(p, xs, -1.5)), await reveal(p, await truncate(p, xs, 4))];
  });
  const [prod, scaled, shifted] = res[0].map((r) => decode(r));
  const ulp = 2 ** -16;
  let worst = 0, worstS = 0, worstT = 0;
  for (let i = 0; i < n; i++) {
    const xe = Math.round(xv[i] * 65536) / 65536, ye = Math.round(yv[i] * 65536) / 65536;
    worst = Math.max(worst, Math.abs(prod[i] - xe * ye));
    worstS = Math.max(worstS, Math.abs(scaled[i] - xe * -1.5));
    worstT = Math.max(worstT, Math.abs(shifted[i] - xe / 16));
  }
  t.ok(worst <= ulp, `mulFx max error ${worst} ≤ 2^-16`);
  t.ok(worstS <= ulp, `mulPublicFx max error ${worstS}`);
  t.ok(worstT <= ulp, `truncate max error ${worstT}`);
});

t.test('fixed-point matmul matches float64 within k ulps', async (t) => {
  const m = 6, k = 40, n = 5;
  const a = uniform(m * k, -3, 3, 21), b = uniform(k * n, -3, 3, 22);
  const A = encode(a, [m, k]), B = encode(b, [k, n]);
  const [r] = await runParties(async (p) => reveal(p, await matmulFx(p, share(p, A), share(p, B))));
  const got = decode(r);
  let worst = 0;
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let q = 0; q < k; q++) s += (Math.round(a[i * k + q] * 65536) / 65536) * (Math.round(b[q * n + j] * 65536) / 65536);
    worst = Math.max(worst, Math.abs(got[i * n + j] - s));
  }
  t.ok(worst <= 2 ** -16, `max error ${worst}`);
});

t.test('sumLastAxis sums rows of a shared tensor', async (t) => {
  const x = new RingTensor(randomRing(12, 8), [3, 4]);
  const [r] = await runParties(async (p) => reveal(p, sumLastAxis(share(p, x))));
  t.same(r.shape, [3]);
  for (let i = 0; i < 3; i++) t.equal(r.data[i], BigInt.asIntN(64, x.data[4 * i] + x.data[4 * i + 1] + x.data[4 * i + 2] + x.data[4 * i + 3]));
});

t.test('received bytes in a Node Buffer at an unaligned offset parse as ring elements', async (t) => {
  const { asRing, asWords } = await import('../protocols/party.ts');
  const pool = Buffer.alloc(8 * 3 + 5 + 3); // 32 bytes; the message starts at offset 5
  const msg = pool.subarray(5, 5 + 24);
  new DataView(msg.buffer, msg.byteOffset).setBigInt64(8, -42n, true);
  t.same([...asRing(msg, 3, 'test')], [0n, -42n, 0n]);
  t.equal(asWords(pool.subarray(1, 9), 2, 'test').length, 2);
});
