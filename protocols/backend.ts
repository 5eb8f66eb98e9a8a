/**
 * Local share arithmetic that is worth offloading: matrix products mod 2^64.
 * Elementwise work stays in the JS limb kernels of ring.ts (copying into and
 * out of a runtime costs more than the arithmetic).
 */
import { ShapeError } from './errors.ts';
import { formatShape, sizeOf, type RingTensor, type Shape } from './ring.ts';

export interface ComputeBackend {
  /** Short name for logs and benchmarks, e.g. "js", "ort-cpu-int64", "ort-cuda-limb". */
  readonly name: string;
  /**
   * Matrix product mod 2^64 of a [...batch, m, k] and b [...batch, k, n] or b [k, n]
   * (a's batch dimensions are kept). Results are bit-identical across backends.
   */
  matmul(a: RingTensor, b: RingTensor): Promise<RingTensor>;
  /** Releases native resources (sessions, device memory). */
  close(): Promise<void>;
}

export interface MatmulDims {
  batch: number;
  m: number;
  k: number;
  n: number;
  /** b is one [k, n] matrix shared by every batch entry. */
  sharedB: boolean;
  outShape: number[];
}

/** Validates matmul operand shapes and returns the loop dimensions. */
export function matmulDims(a: Shape, b: Shape): MatmulDims {
  if (a.length < 2 || b.length < 2) throw new ShapeError(`matmul needs operands of rank ≥ 2, got ${formatShape(a)} and ${formatShape(b)}`);
  const m = a[a.length - 2], k = a[a.length - 1];
  const kb = b[b.length - 2], n = b[b.length - 1];
  if (k !== kb) throw new ShapeError(`matmul: inner dimensions differ: ${formatShape(a)} @ ${formatShape(b)} (${k} vs ${kb})`);
  const batchA = a.slice(0, -2), batchB = b.slice(0, -2);
  const sharedB = batchB.length === 0;
  if (!sharedB && (batchA.length !== batchB.length || batchA.some((d, i) => d !== batchB[i]))) {
    throw new ShapeError(`matmul: batch dimensions differ: ${formatShape(a)} @ ${formatShape(b)}`);
  }
  return { batch: sizeOf(batchA), m, k, n, sharedB, outShape: [...batchA, m, n] };
}
