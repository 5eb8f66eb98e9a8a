/**
 * ONNX Runtime compute backend: each matmul shape gets a small generated graph,
 * built once and cached as an InferenceSession.
 *
 * Two ways to get an exact product mod 2^64:
 * - `int64`: one int64 MatMul. The CPU execution provider computes it in
 *   wrapping 64-bit integer arithmetic, i.e. exactly mod 2^64.
 * - `limb`: the CUDA execution provider has no int64 MatMul (ORT would quietly
 *   run it on the CPU), so this graph rewrites the product as float64 MatMuls
 *   over 16-bit limbs, which cuBLAS runs natively. It is the same graph on
 *   the CPU, which is how its exactness is tested on hosts without a GPU.
 *
 * Exactness of the limb graph. Write x = Σ_i x_i·2^(16i) with limbs
 * x_i ∈ [0, 2^16−1], i = 0..3 (the uint64 reading of the two's-complement
 * value; x ≡ that reading mod 2^64). Then
 *   (A·B) mod 2^64 = Σ_s 2^(16s) · P_s  mod 2^64,   P_s = Σ_{i+j=s} A_i·B_j,
 * and pairs with i+j ≥ 4 drop out since 2^(16(i+j)) ≡ 0. P_s is computed as ONE
 * float64 MatMul of [A_0 | … | A_s] (limbs side by side along the inner axis)
 * with [B_s; …; B_0] (stacked), an inner dimension of (s+1)·k. Each entry of P_s
 * is a sum of (s+1)·k products, each a non-negative integer ≤ (2^16−1)^2 and so
 * exact in a double. Because every term is non-negative, every partial sum –
 * in whatever order, blocking or FMA use the BLAS picks – lies between 0 and
 * the final sum ≤ (s+1)·k·(2^16−1)^2. If that is < 2^53 all partial sums are
 * integers a double holds exactly, so no addition ever rounds. The worst case
 * s = 3 gives the bound on k enforced below (LIMB_MAX_K = 524304). The exact
 * sums are then cast to uint64, shifted left by 16·s and added, all wrapping
 * mod 2^64, and cast back to int64 (again a wrapping reinterpretation).
 */
import * as ort from 'onnxruntime-node';
import { matmulDims, type ComputeBackend } from './backend.ts';
import { BackendError, QmpcError, ShapeError } from './errors.ts';
import { ELEM_TYPE, GraphBuilder } from './onnx-graph.ts';
import { formatShape, RingTensor, type Shape } from './ring.ts';

export type ExecutionProvider = 'cpu' | 'cuda';
export type OrtMatmulMode = 'int64' | 'limb';

export interface OrtBackendOptions {
  /** Default 'cpu'. */
  executionProvider?: ExecutionProvider;
  /**
   * Default 'auto': the limb graph (exact, and on ORT's CPU provider about 2×
   * faster than its generic int64 MatMul kernel, which lacks an optimised
   * GEMM), with int64 on the CPU for inner dimensions past the limb bound.
   */
  matmul?: OrtMatmulMode | 'auto';
  /** ORT intra-op threads per session; ORT's default (all cores) when unset. */
  intraOpNumThreads?: number;
  /** When CUDA is requested but unavailable: log one line and use the CPU instead of throwing. */
  fallbackToCpu?: boolean;
  log?: (msg: string) => void;
  /** Sessions kept (least recently used evicted first). Default 64. */
  maxSessions?: number;
}

export const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = ['cpu', 'cuda'];
export const MATMUL_MODES: readonly (OrtMatmulMode | 'auto')[] = ['int64', 'limb', 'auto'];

const LIMB_BITS = 16;
const LIMB_MASK = 0xffff;
/** Largest inner dimension k with 4·k·(2^16−1)^2 < 2^53 (see the header comment). */
export const LIMB_MAX_K = Number((2n ** 53n - 1n) / (4n * BigInt(LIMB_MASK) ** 2n));

type GraphKind = OrtMatmulMode | 'float64';

interface CacheEntry {
  ready: Promise<ort.InferenceSession>;
  users: number;
  evicted: boolean;
}

export class OrtBackend implements ComputeBackend {
  readonly name: string;
  readonly executionProvider: ExecutionProvider;
  readonly mode: OrtMatmulMode;
  private readonly sessionOptions: ort.InferenceSession.SessionOptions;
  private readonly maxSessions: number;
  // A Map iterates in insertion order, so re-inserting on every hit makes the
  // first key the least recently used one.
  private readonly cache = new Map<string, CacheEntry>();
  private readonly releases = new Set<Promise<void>>();
  private closed = false;

  /** 'auto' on the CPU: products whose inner dimension exceeds the limb bound run as int64 instead. */
  private int64Overflow = false;

  private constructor(ep: ExecutionProvider, mode: OrtMatmulMode, opts: OrtBackendOptions) {
    this.executionProvider = ep;
    this.mode = mode;
    this.name = `ort-${ep}-${mode}`;
    this.maxSessions = opts.maxSessions ?? 64;
    this.sessionOptions = sessionOptions(ep, opts.intraOpNumThreads);
  }

  static async create(opts: OrtBackendOptions = {}): Promise<OrtBackend> {
    const requested = opts.executionProvider ?? 'cpu';
    const matmul = opts.matmul ?? 'auto';
    if (!EXECUTION_PROVIDERS.includes(requested)) {
      throw new BackendError(`unknown execution provider ${JSON.stringify(requested)}; expected one of ${EXECUTION_PROVIDERS.join(', ')}`);
    }
    if (!MATMUL_MODES.includes(matmul)) {
      throw new BackendError(`unknown matmul mode ${JSON.stringify(matmul)}; expected one of ${MATMUL_MODES.join(', ')}`);
    }
    const n = opts.maxSessions;
    if (n !== undefined && !(Number.isSafeInteger(n) && n >= 1)) throw new BackendError(`maxSessions must be a positive integer, got ${n}`);
    let ep = requested;
    if (ep === 'cuda') {
      const failure = await probeCuda(opts.intraOpNumThreads);
      if (failure !== undefined) {
        const why = `CUDA execution provider is unavailable (${failure.message.trim()})`;
        if (!opts.fallbackToCpu) throw new BackendError(`${why}. ${CUDA_HINT}`, failure);
        ep = 'cpu';
        // Keeping an explicit 'limb' lets a CPU host exercise the GPU graph.
        opts.log?.(`${why}; falling back to the CPU execution provider with ${matmul === 'auto' ? 'limb' : matmul} matmul`);
      }
    }
    const mode: OrtMatmulMode = matmul === 'auto' ? 'limb' : matmul;
    if (ep === 'cuda' && mode === 'int64') {
      opts.log?.('int64 MatMul has no CUDA kernel: onnxruntime will run it on the CPU; use matmul "limb" to keep it on the GPU');
    }
    const backend = new OrtBackend(ep, mode, opts);
    backend.int64Overflow = matmul === 'auto' && ep === 'cpu';
    return backend;
  }

  /** Number of cached sessions (for tests and metrics). */
  get sessionCount(): number {
    return this.cache.size;
  }

  async matmul(a: RingTensor, b: RingTensor): Promise<RingTensor> {
    const { k, outShape } = matmulDims(a.shape, b.shape);
    const mode = this.mode === 'limb' && k > LIMB_MAX_K && this.int64Overflow ? 'int64' : this.mode;
    if (mode === 'limb' && k > LIMB_MAX_K) {
      throw new ShapeError(
        `matmul ${formatShape(a.shape)} @ ${formatShape(b.shape)}: inner dimension ${k} exceeds ${LIMB_MAX_K}, ` +
          `the largest for which the limb (float64) matmul is exact; split the product or use the int64 mode on the CPU`,
      );
    }
    if (k === 0 || outShape.includes(0)) return RingTensor.zeros(outShape);
    const out = await this.run(mode, new ort.Tensor('int64', a.data, a.shape), new ort.Tensor('int64', b.data, b.shape), outShape);
    // The output's ArrayBuffer owns a fresh OrtValue per run (onnxruntime-node
    // hands it over instead of copying; ORT never writes to it again), so the
    // result can be returned without a copy.
    return new RingTensor(out.data as BigInt64Array, outShape);
  }

  /** Plain float64 matmul with the same shape rules, for benchmarks only. */
  async matmulFloat64(a: Float64Array, aShape: Shape, b: Float64Array, bShape: Shape): Promise<{ data: Float64Array; shape: number[] }> {
    const { outShape } = matmulDims(aShape, bShape);
    const out = await this.run('float64', new ort.Tensor('float64', a, aShape), new ort.Tensor('float64', b, bShape), outShape);
    return { data: out.data as Float64Array, shape: outShape };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const entry of this.cache.values()) this.evict(entry);
    this.cache.clear();
    await Promise.all(this.releases);
  }

  private async run(kind: GraphKind, a: ort.Tensor, b: ort.Tensor, outShape: number[]): Promise<ort.Tensor> {
    const entry = this.acquire(kind, a.dims, b.dims, outShape);
    entry.users++;
    try {
      const session = await entry.ready;
      const result = await session.run({ a, b });
      return result.out;
    } catch (e) {
      if (e instanceof QmpcError) throw e;
      throw new BackendError(`onnxruntime ${kind} matmul ${formatShape(a.dims)} @ ${formatShape(b.dims)} failed: ${(e as Error).message}`, e);
    } finally {
      entry.users--;
      if (entry.evicted && entry.users === 0) this.release(entry);
    }
  }

  private acquire(kind: GraphKind, aShape: Shape, bShape: Shape, outShape: number[]): CacheEntry {
    if (this.closed) throw new BackendError(`${this.name} backend is closed`);
    const key = `${kind} ${aShape.join('x')} @ ${bShape.join('x')}`;
    const hit = this.cache.get(key);
    if (hit !== undefined) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    const bytes = kind === 'limb' ? limbGraph(aShape, bShape, outShape) : plainGraph(kind === 'float64' ? 'float64' : 'int64', aShape, bShape, outShape);
    const entry: CacheEntry = { ready: ort.InferenceSession.create(bytes, this.sessionOptions), users: 0, evicted: false };
    // A failed build must not stay cached, or every later call would replay it.
    entry.ready.catch(() => {
      if (this.cache.get(key) === entry) this.cache.delete(key);
    });
    this.cache.set(key, entry);
    while (this.cache.size > this.maxSessions) {
      const [oldKey, old] = this.cache.entries().next().value as [string, CacheEntry];
      this.cache.delete(oldKey);
      this.evict(old);
    }
    return entry;
  }

  // An evicted session may still be running for another caller; it is released
  // when its last user finishes.
  private evict(entry: CacheEntry): void {
    entry.evicted = true;
    if (entry.users === 0) this.release(entry);
  }

  private release(entry: CacheEntry): void {
    const p = entry.ready.then((s) => s.release()).catch(() => {});
    this.releases.add(p);
    void p.finally(() => this.releases.delete(p));
  }
}

const CUDA_HINT =
  'onnxruntime-node ships without the CUDA provider by default (this repository\'s .npmrc also skips it). ' +
  'On a host with an NVIDIA GPU, CUDA 12 and cuDNN 9, reinstall it with `ONNXRUNTIME_NODE_INSTALL=cuda12 npm install onnxruntime-node` ' +
  '(or `npm install --onnxruntime-node-install=cuda12`), or set fallbackToCpu to run on the CPU';

function sessionOptions(ep: ExecutionProvider, threads: number | undefined): ort.InferenceSession.SessionOptions {
  const o: ort.InferenceSession.SessionOptions = { executionProviders: [ep], logSeverityLevel: 3 };
  if (threads !== undefined) o.intraOpNumThreads = threads;
  return o;
}

/** Returns why a CUDA session cannot be created and run, or undefined when it can. */
async function probeCuda(threads: number | undefined): Promise<Error | undefined> {
  let session: ort.InferenceSession | undefined;
  try {
    session = await ort.InferenceSession.create(plainGraph('float64', [1, 1], [1, 1], [1, 1]), sessionOptions('cuda', threads));
    const one = new ort.Tensor('float64', Float64Array.of(1), [1, 1]);
    await session.run({ a: one, b: one });
    return undefined;
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  } finally {
    await session?.release().catch(() => {});
  }
}

function plainGraph(type: 'int64' | 'float64', aShape: Shape, bShape: Shape, outShape: Shape): Uint8Array {
  const g = new GraphBuilder();
  g.node('MatMul', [g.input('a', type, aShape), g.input('b', type, bShape)], {}, 'out');
  g.output('out', type, outShape);
  return g.toBytes(`matmul_${type}`);
}

function limbGraph(aShape: Shape, bShape: Shape, outShape: Shape): Uint8Array {
  const g = new GraphBuilder();
  const shift = [0, 1, 2, 3].map((s) => g.constant('uint64', [LIMB_BITS * s]));
  const mask = g.constant('uint64', [LIMB_MASK]);
  // BitShift and BitwiseAnd are defined on unsigned types only; the int64 →
  // uint64 Cast keeps the bit pattern.
  const limbs = (x: string): string[] => {
    const u = g.node('Cast', [x], { to: ELEM_TYPE.uint64 });
    return [0, 1, 2, 3].map((i) => {
      let v = i === 0 ? u : g.node('BitShift', [u, shift[i]], { direction: 'RIGHT' });
      if (i < 3) v = g.node('BitwiseAnd', [v, mask]);
      return g.node('Cast', [v], { to: ELEM_TYPE.float64 });
    });
  };
  const A = limbs(g.input('a', 'int64', aShape));
  const B = limbs(g.input('b', 'int64', bShape));
  let acc: string | undefined;
  for (let s = 0; s < 4; s++) {
    const lhs = s === 0 ? A[0] : g.node('Concat', A.slice(0, s + 1), { axis: -1 });
    const rhs = s === 0 ? B[0] : g.node('Concat', B.slice(0, s + 1).reverse(), { axis: -2 });
    let term = g.node('Cast', [g.node('MatMul', [lhs, rhs])], { to: ELEM_TYPE.uint64 });
    if (s > 0) term = g.node('BitShift', [term, shift[s]], { direction: 'LEFT' });
    acc = acc === undefined ? term : g.node('Add', [acc, term]);
  }
  g.node('Cast', [acc as string], { to: ELEM_TYPE.int64 }, 'out');
  g.output('out', 'int64', outShape);
  return g.toBytes('matmul_limb');
}
