import t from 'tap';
import { OrtBackend, LIMB_MAX_K, type OrtMatmulMode } from '../protocols/backend-ort.ts';
import { matmulReference } from '../protocols/backend-js.ts';
import { createBackend, type BackendKind } from '../protocols/backends.ts';
import { BackendError, ShapeError } from '../protocols/errors.ts';
import { RingTensor, sizeOf, type Shape } from '../protocols/ring.ts';
import { randomRing } from './helpers/three-parties.ts';

const M = (v: bigint) => BigInt.asIntN(64, v);
const INT64_MAX = 2n ** 63n - 1n, INT64_MIN = -(2n ** 63n);
// Values whose 16-bit limbs are extreme (all 0xFFFF, all zero, one limb set,
// top bit only) so every limb product and carry position is exercised.
const EDGE = [0n, 1n, -1n, INT64_MAX, INT64_MIN, 0xffffn, 0x10000n, 2n ** 32n - 1n, -(2n ** 16n), 0x7fff7fff7fff7fffn, 2n ** 48n, -2n];
const MODES: OrtMatmulMode[] = ['int64', 'limb'];

function random(shape: Shape, seed: number): RingTensor {
  return new RingTensor(randomRing(sizeOf(shape), seed), shape);
}

function constant(shape: Shape, v: bigint): RingTensor {
  return new RingTensor(new BigInt64Array(sizeOf(shape)).fill(v), shape);
}

/** The error a promise rejects with (fails the test when it resolves). */
async function caught(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

/** Index of the first differing element, or -1 (bit-identical, same shape). */
function firstDiff(got: RingTensor, want: RingTensor): number {
  if (got.shape.join() !== want.shape.join()) return -2;
  for (let i = 0; i < want.size; i++) if (got.data[i] !== want.data[i]) return i;
  return -1;
}

const backends = new Map<OrtMatmulMode, OrtBackend>();
t.before(async () => {
  for (const mode of MODES) backends.set(mode, await OrtBackend.create({ matmul: mode, intraOpNumThreads: 2 }));
});
t.teardown(async () => {
  for (const b of backends.values()) await b.close();
});

for (const mode of MODES) {
  t.test(`${mode}: bit-identical to matmulReference on random full-range values`, async (t) => {
    const be = backends.get(mode)!;
    t.equal(be.name, `ort-cpu-${mode}`);
    const cases: [Shape, Shape][] = [
      [[1, 1], [1, 1]],
      [[3, 7], [7, 2]],
      [[1, 9], [9, 1]],
      [[17, 33], [33, 5]],
      [[2, 3, 4], [2, 4, 5]],
      [[2, 3, 4], [4, 5]],
      [[2, 2, 3, 6], [2, 2, 6, 4]],
      [[40, 64], [64, 48]],
    ];
    let seed = 11;
    for (const [as, bs] of cases) {
      const a = random(as, seed++), b = random(bs, seed++);
      t.equal(firstDiff(await be.matmul(a, b), matmulReference(a, b)), -1, `${as.join('x')} @ ${bs.join('x')}`);
    }
  });

  t.test(`${mode}: exact on edge values (every pair of edge values is multiplied)`, async (t) => {
    const be = backends.get(mode)!;
    const E = EDGE.length;
    const a = RingTensor.of(Array.from({ length: E * E }, (_, i) => EDGE[(i + (i / E | 0)) % E]), [E, E]);
    const b = RingTensor.of(Array.from({ length: E * E }, (_, i) => EDGE[(3 * i + (i / E | 0)) % E]), [E, E]);
    t.equal(firstDiff(await be.matmul(a, b), matmulReference(a, b)), -1, 'edge grid');
    for (const x of EDGE) {
      for (const y of [-1n, INT64_MIN, INT64_MAX]) {
        const got = await be.matmul(RingTensor.of([x], [1, 1]), RingTensor.of([y], [1, 1]));
        t.equal(got.data[0], M(x * y), `${x} * ${y}`);
      }
    }
  });

  t.test(`${mode}: shape errors name the operand shapes`, async (t) => {
    const be = backends.get(mode)!;
    const e = await caught(be.matmul(random([2, 3], 1), random([4, 5], 2)));
    t.ok(e instanceof ShapeError, 'ShapeError');
    t.match(e.message, /\[2, 3\].*\[4, 5\]/);
    await t.rejects(be.matmul(random([2, 3, 4], 1), random([3, 4, 5], 2)), ShapeError);
    await t.rejects(be.matmul(random([4], 1), random([4, 5], 2)), ShapeError);
  });

  t.test(`${mode}: empty operands give zeros of the right shape`, async (t) => {
    const be = backends.get(mode)!;
    const z = await be.matmul(random([2, 0], 1), random([0, 3], 2));
    t.same(z.shape, [2, 3]);
    t.ok(z.data.every((v) => v === 0n));
    t.same((await be.matmul(random([0, 3], 1), random([3, 2], 2))).shape, [0, 2]);
  });
}

t.test('limb graph is exact where limb sums are largest', async (t) => {
  const be = backends.get('limb')!;
  // Constant matrices: every output is k·x·y mod 2^64. -1 has all limbs 0xFFFF,
  // the worst case for the float64 partial sums.
  const k = 4096;
  for (const [x, y] of [[-1n, -1n], [INT64_MAX, INT64_MAX], [-1n, INT64_MAX], [INT64_MIN, -1n], [0x7fff7fff7fff7fffn, -1n]]) {
    const got = await be.matmul(constant([2, 3, k], x), constant([k, 4], y));
    const want = M(BigInt(k) * x * y);
    t.ok(got.data.every((v) => v === want), `k=${k}: ${x} * ${y} → ${want}`);
  }
  // Random values at the same depth, small enough for the BigInt reference.
  const a = random([3, k], 5), b = random([k, 2], 6);
  t.equal(firstDiff(await be.matmul(a, b), matmulReference(a, b)), -1, `random k=${k}`);
  // At the bound itself the s = 3 sum reaches 4·k·(2^16−1)^2, just below 2^53.
  t.ok(4n * BigInt(LIMB_MAX_K) * 0xffffn ** 2n < 2n ** 53n && 4n * BigInt(LIMB_MAX_K + 1) * 0xffffn ** 2n >= 2n ** 53n, 'LIMB_MAX_K is the largest exact k');
  const big = await be.matmul(constant([1, LIMB_MAX_K], -1n), constant([LIMB_MAX_K, 1], -1n));
  t.equal(big.data[0], BigInt(LIMB_MAX_K), `k=${LIMB_MAX_K} all -1`);
  const e = await caught(be.matmul(constant([1, LIMB_MAX_K + 1], 1n), constant([LIMB_MAX_K + 1, 1], 1n)));
  t.ok(e instanceof ShapeError, 'k above the bound is a ShapeError');
  t.match(e.message, new RegExp(`${LIMB_MAX_K + 1} exceeds ${LIMB_MAX_K}.*limb`));
  // 'auto' on the CPU runs such a product through int64 MatMul instead.
  const auto = await OrtBackend.create({ matmul: 'auto' });
  const deep = await auto.matmul(constant([1, LIMB_MAX_K + 1], -1n), constant([LIMB_MAX_K + 1, 1], -1n));
  t.equal(deep.data[0], BigInt(LIMB_MAX_K + 1), 'auto falls back to int64 past the limb bound');
  await auto.close();
});

t.test('sessions are built once per shape and kept in a bounded LRU', async (t) => {
  const be = await OrtBackend.create({ maxSessions: 2 });
  t.teardown(() => be.close());
  const a = random([5, 6], 1), b = random([6, 7], 2), want = matmulReference(a, b);
  const first = await be.matmul(a, b);
  t.equal(be.sessionCount, 1);
  await be.matmul(a, b);
  t.equal(be.sessionCount, 1, 'same shape reuses the session');
  // The first result must survive later runs: it is handed out without a copy.
  await be.matmul(random([5, 6], 3), random([6, 7], 4));
  t.equal(firstDiff(first, want), -1, 'earlier output not overwritten');
  await be.matmul(random([2, 6], 1), b);
  await be.matmul(random([3, 6], 1), b);
  t.equal(be.sessionCount, 2, 'bounded by maxSessions');
  t.equal(firstDiff(await be.matmul(a, b), want), -1, 'evicted shape is rebuilt correctly');
  await be.close();
  t.equal(be.sessionCount, 0);
  await t.rejects(be.matmul(a, b), BackendError);
});

t.test('concurrent calls on one new shape share the session', async (t) => {
  const be = await OrtBackend.create();
  t.teardown(() => be.close());
  const a = random([4, 4], 1), b = random([4, 4], 2), want = matmulReference(a, b);
  const got = await Promise.all([be.matmul(a, b), be.matmul(a, b), be.matmul(a, b)]);
  t.equal(be.sessionCount, 1);
  for (const g of got) t.equal(firstDiff(g, want), -1);
});

t.test('float64 matmul entry point', async (t) => {
  const be = backends.get('int64')!;
  const a = Float64Array.of(1, 2, 3, 4, 5, 6), b = Float64Array.of(0.5, -1, 2, 0, 1, 1);
  const r = await be.matmulFloat64(a, [2, 3], b, [3, 2]);
  t.same(r.shape, [2, 2]);
  t.same([...r.data], [7.5, 2, 18, 2]);
});

t.test('CUDA request without the CUDA provider', async (t) => {
  let probe: OrtBackend | undefined;
  try {
    probe = await OrtBackend.create({ executionProvider: 'cuda' });
  } catch (e) {
    t.ok(e instanceof BackendError, 'BackendError');
    t.match((e as Error).message, /CUDA execution provider is unavailable/);
    t.match((e as Error).message, /cuda12/, 'says how to enable it');
  }
  if (probe !== undefined) {
    // A GPU host with the CUDA provider installed: the limb graph must still be exact there.
    t.equal(probe.name, 'ort-cuda-limb');
    const a = random([3, 8, 16], 1), b = random([16, 5], 2);
    t.equal(firstDiff(await probe.matmul(a, b), matmulReference(a, b)), -1, 'exact on CUDA');
    await probe.close();
    return;
  }
  const logs: string[] = [];
  const limb = await OrtBackend.create({ executionProvider: 'cuda', matmul: 'limb', fallbackToCpu: true, log: (m) => logs.push(m) });
  t.equal(logs.length, 1, 'one log line');
  t.match(logs[0], /CUDA.*unavailable.*CPU/);
  t.equal(limb.name, 'ort-cpu-limb', 'keeps the requested limb graph');
  const a = random([3, 8, 16], 1), b = random([16, 5], 2);
  t.equal(firstDiff(await limb.matmul(a, b), matmulReference(a, b)), -1, 'correct after fallback');
  await limb.close();
  const auto = await OrtBackend.create({ executionProvider: 'cuda', fallbackToCpu: true, log: () => {} });
  t.equal(auto.name, 'ort-cpu-limb', 'auto keeps the exact limb graph on the CPU');
  await auto.close();
});

t.test('option validation and the backend factory', async (t) => {
  const bad = await caught(OrtBackend.create({ matmul: 'fast' as OrtMatmulMode }));
  t.ok(bad instanceof BackendError);
  t.match(bad.message, /int64, limb, auto/);
  await t.rejects(OrtBackend.create({ executionProvider: 'tpu' as 'cpu' }), BackendError);
  const kind = await caught(createBackend({ kind: 'wasm' as BackendKind }));
  t.ok(kind instanceof BackendError && kind.code === 'ERR_BACKEND', 'BackendError');
  t.match(kind.message, /"wasm".*js, ort/);
  const js = await createBackend({ kind: 'js' });
  t.equal(js.name, 'js');
  const ort = await createBackend({ kind: 'ort', matmul: 'limb' });
  t.equal(ort.name, 'ort-cpu-limb');
  const a = random([2, 3], 1), b = random([3, 2], 2);
  t.same((await ort.matmul(a, b)).data, (await js.matmul(a, b)).data);
  await ort.close();
  await js.close();
});
