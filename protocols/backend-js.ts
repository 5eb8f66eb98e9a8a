/**
 * Plain-JS reference backend: the textbook i-k-j loop in BigInt, reduced mod
 * 2^64 at every step. Deliberately simple rather than fast: it is the
 * specification the other backends are tested against.
 */
import { matmulDims, type ComputeBackend } from './backend.ts';
import { RingTensor } from './ring.ts';

export function matmulReference(a: RingTensor, b: RingTensor): RingTensor {
  const { batch, m, k, n, sharedB, outShape } = matmulDims(a.shape, b.shape);
  const out = new BigInt64Array(batch * m * n);
  const A = a.data, B = b.data;
  for (let t = 0; t < batch; t++) {
    const ao = t * m * k, bo = sharedB ? 0 : t * k * n, oo = t * m * n;
    for (let i = 0; i < m; i++) {
      for (let p = 0; p < k; p++) {
        const av = A[ao + i * k + p];
        if (av === 0n) continue;
        const brow = bo + p * n, orow = oo + i * n;
        for (let j = 0; j < n; j++) out[orow + j] = BigInt.asIntN(64, out[orow + j] + av * B[brow + j]);
      }
    }
  }
  return new RingTensor(out, outShape);
}

export class JsBackend implements ComputeBackend {
  readonly name = 'js';
  async matmul(a: RingTensor, b: RingTensor): Promise<RingTensor> {
    return matmulReference(a, b);
  }
  async close(): Promise<void> {}
}
