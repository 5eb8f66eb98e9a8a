import t from 'tap';
import {
  RingTensor, add, sub, mul, neg, mulScalar, addScalar, sar, shl, transpose, concat, broadcastTo, sumRowsInto,
} from '../protocols/ring.ts';
import { ShapeError } from '../protocols/errors.ts';
import { randomRing } from './helpers/three-parties.ts';

const M = (v: bigint) => BigInt.asIntN(64, v);
const edge = [0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 32n - 1n, 2n ** 32n, -(2n ** 32n), 0xffffn, 123456789012345n];

function pairs(): [BigInt64Array, BigInt64Array] {
  const r = randomRing(2000, 3), s = randomRing(2000, 4);
  const a = new BigInt64Array(edge.length ** 2 + r.length), b = new BigInt64Array(a.length);
  let k = 0;
  for (const x of edge) for (const y of edge) { a[k] = x; b[k++] = y; }
  a.set(r, k); b.set(s, k);
  return [a, b];
}

t.test('elementwise kernels match BigInt arithmetic mod 2^64 on edge and random values', async (t) => {
  const [a, b] = pairs();
  const A = new RingTensor(a, [a.length]), B = new RingTensor(b, [b.length]);
  const ops: [string, RingTensor, (x: bigint, y: bigint) => bigint][] = [
    ['add', add(A, B), (x, y) => x + y],
    ['sub', sub(A, B), (x, y) => x - y],
    ['mul', mul(A, B), (x, y) => x * y],
    ['neg', neg(A), (x) => -x],
    ['mulScalar', mulScalar(A, -987654321987n), (x) => x * -987654321987n],
    ['addScalar', addScalar(A, 2n ** 40n + 5n), (x) => x + 2n ** 40n + 5n],
  ];
  for (const [name, got, f] of ops) {
    let bad = -1;
    for (let i = 0; i < a.length && bad < 0; i++) if (got.data[i] !== M(f(a[i], b[i]))) bad = i;
    t.equal(bad, -1, `${name} exact`);
  }
  for (const d of [0, 1, 16, 31, 32, 33, 48, 63]) {
    const s = sar(A, d), l = shl(A, d);
    let bad = -1;
    for (let i = 0; i < a.length && bad < 0; i++) if (s.data[i] !== a[i] >> BigInt(d) || l.data[i] !== M(a[i] << BigInt(d))) bad = i;
    t.equal(bad, -1, `shift by ${d} exact`);
  }
});

t.test('row sums are exact mod 2^64', async (t) => {
  const a = randomRing(5 * 300, 9);
  const out = sumRowsInto(new BigInt64Array(5), a, 5, 300);
  for (let r = 0; r < 5; r++) {
    let s = 0n;
    for (let c = 0; c < 300; c++) s += a[r * 300 + c];
    t.equal(out[r], M(s));
  }
});

t.test('transpose, concat and broadcasting follow ONNX semantics', async (t) => {
  const x = RingTensor.of([1, 2, 3, 4, 5, 6], [2, 3]);
  t.same([...transpose(x).data], [1n, 4n, 2n, 5n, 3n, 6n]);
  t.same(transpose(x).shape, [3, 2]);
  const y = RingTensor.of([...Array(24).keys()], [2, 3, 4]);
  const yt = transpose(y, [1, 2, 0]);
  t.same(yt.shape, [3, 4, 2]);
  t.equal(yt.data[1 * 8 + 2 * 2 + 1], y.data[1 * 12 + 1 * 4 + 2]);
  t.same([...concat([x, x], 0).data], [1n, 2n, 3n, 4n, 5n, 6n, 1n, 2n, 3n, 4n, 5n, 6n]);
  t.same([...concat([x, RingTensor.of([7, 8], [2, 1])], 1).data], [1n, 2n, 3n, 7n, 4n, 5n, 6n, 8n]);
  const row = RingTensor.of([10, 20, 30], [3]);
  t.same([...add(x, row).data], [11n, 22n, 33n, 14n, 25n, 36n]);
  t.same([...broadcastTo(RingTensor.of([1, 2], [2, 1]), [2, 3]).data], [1n, 1n, 1n, 2n, 2n, 2n]);
  t.same(add(RingTensor.of([1], [1, 1]), RingTensor.of([1, 2, 3], [3])).shape, [1, 3]);
});

t.test('shape misuse gets a ShapeError naming the shapes', async (t) => {
  const x = RingTensor.of([1, 2, 3, 4, 5, 6], [2, 3]);
  t.throws(() => add(x, RingTensor.of([1, 2], [2])), { code: 'ERR_SHAPE', message: /\[2, 3\] and \[2\]/ });
  t.throws(() => new RingTensor(new BigInt64Array(5), [2, 3]), ShapeError);
  t.throws(() => x.reshape([4, 2]), { message: /cannot reshape \[2, 3\]/ });
  t.same(x.reshape([3, -1]).shape, [3, 2]);
  t.throws(() => transpose(x, [0, 0]), { message: /not a permutation/ });
  t.throws(() => concat([x, RingTensor.of([1, 2], [1, 2])], 0), { message: /differ off that axis/ });
});
