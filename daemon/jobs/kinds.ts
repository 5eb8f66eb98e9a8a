/**
 * The secure computations a client can ask for. Each kind checks its inputs'
 * shapes before anything runs (a bad request is refused at submission on every
 * party, not halfway through a protocol) and runs on engine shares only: the
 * daemon never sees a plaintext value.
 */
import { AShare, fromPair, sub, sumLastAxis } from '../../protocols/arith.ts';
import { matmulFx, mulFx, mulPublicFx } from '../../protocols/truncation.ts';
import { softmax } from '../../protocols/nonlinear/softmax.ts';
import type { Party } from '../../protocols/party.ts';
import type { SharePair } from '../../protocols/arith.ts';
import { QmpcError } from '../errors.ts';
import type { TensorSpec } from './wire.ts';

export class JobRequestError extends QmpcError {
  constructor(message: string) {
    super('ERR_JOB_REQUEST', message);
  }
}

export interface JobKind {
  description: string;
  /** Input names in order. */
  inputs: readonly string[];
  /** Output specs for valid input specs; throws JobRequestError otherwise. */
  outputs(inputs: readonly TensorSpec[], params: Record<string, unknown>): TensorSpec[];
  run(p: Party, inputs: AShare[], params: Record<string, unknown>): Promise<AShare[]>;
}

function expectNames(kind: string, specs: readonly TensorSpec[], names: readonly string[]): void {
  const got = specs.map((s) => s.name);
  if (got.join() !== names.join()) throw new JobRequestError(`${kind} takes inputs (${names.join(', ')}), got (${got.join(', ')})`);
}

export const JOB_KINDS: Record<string, JobKind> = {
  'matmul-softmax': {
    description: 'softmax(x @ w) along the last axis: a private linear layer and attention-style normalisation',
    inputs: ['x', 'w'],
    outputs(specs) {
      expectNames('matmul-softmax', specs, this.inputs);
      const [x, w] = specs;
      if (x.shape.length !== 2 || w.shape.length !== 2) throw new JobRequestError(`matmul-softmax needs 2-D x and w, got [${x.shape}] and [${w.shape}]`);
      if (x.shape[1] !== w.shape[0]) throw new JobRequestError(`matmul-softmax: x is [${x.shape}] and w is [${w.shape}]; inner dimensions differ`);
      if (w.shape[1] > 256) throw new JobRequestError(`matmul-softmax: softmax over ${w.shape[1]} > 256 columns is outside the reciprocal's domain`);
      return [{ name: 'y', shape: [x.shape[0], w.shape[1]] }];
    },
    async run(p, [x, w]) {
      return [await softmax(p, await matmulFx(p, x, w))];
    },
  },
  'mean-variance': {
    description: 'mean and population variance of each row of x',
    inputs: ['x'],
    outputs(specs) {
      expectNames('mean-variance', specs, this.inputs);
      const [x] = specs;
      const rows = x.shape.slice(0, -1);
      return [{ name: 'mean', shape: rows.length ? rows : [1] }, { name: 'variance', shape: rows.length ? rows : [1] }];
    },
    async run(p, [x]) {
      const n = x.shape[x.shape.length - 1];
      const mean = await mulPublicFx(p, sumLastAxis(x), 1 / n);
      const meanSq = await mulPublicFx(p, sumLastAxis(await mulFx(p, x, x)), 1 / n);
      const variance = sub(meanSq, await mulFx(p, mean, mean));
      const shape = mean.shape.length ? mean.shape : [1];
      return [mean.reshape(shape), variance.reshape(shape)];
    },
  },
};

export function jobKind(name: string): JobKind {
  const k = JOB_KINDS[name];
  if (!k) throw new JobRequestError(`unknown job kind "${name}"; this party runs: ${Object.keys(JOB_KINDS).join(', ')}`);
  return k;
}

export function sharesOf(pairs: readonly SharePair[]): AShare[] {
  return pairs.map(fromPair);
}
