/**
 * The client's side of a job, independent of how it reaches the parties:
 * encode and secret-share the inputs (the plaintext never leaves this
 * process), and rebuild the outputs from the three parties' shares.
 */
import { randomBytes } from 'node:crypto';
import { dealShares, reconstruct, type SharePair } from '../../protocols/arith.ts';
import { decode, encode, DEFAULT_FRAC_BITS } from '../../protocols/fixed.ts';
import { decodePairs, encodePairs, type Header, type TensorSpec } from '../jobs/wire.ts';

export interface PlainTensor {
  name: string;
  shape: number[];
  values: ArrayLike<number>;
}

export interface PreparedJob {
  header: Header<'submit'>;
  /** The share body for party i. */
  bodies: [Uint8Array, Uint8Array, Uint8Array];
}

export function newJobId(): string {
  return randomBytes(16).toString('hex');
}

export function prepareJob(kind: string, inputs: readonly PlainTensor[], params: Record<string, number | string | boolean> = {}, fracBits = DEFAULT_FRAC_BITS): PreparedJob {
  const dealt = inputs.map((t) => dealShares(encode(t.values, t.shape, fracBits)));
  const header: Header<'submit'> = { job_id: newJobId(), kind, params, frac_bits: fracBits, inputs: inputs.map((t) => ({ name: t.name, shape: [...t.shape] })) };
  const bodies = [0, 1, 2].map((i) => encodePairs(dealt.map((d) => d[i]))) as [Uint8Array, Uint8Array, Uint8Array];
  return { header, bodies };
}

export interface PartyResult {
  party: number;
  outputs: TensorSpec[];
  body: Uint8Array;
}

/** Rebuilds each output from the three parties' shares (checking that their replicated components agree). */
export function reconstructOutputs(results: readonly PartyResult[], fracBits = DEFAULT_FRAC_BITS): { name: string; shape: number[]; values: Float64Array }[] {
  const byParty = [0, 1, 2].map((i) => results.find((r) => r.party === i));
  if (byParty.some((r) => !r)) throw new Error(`need results from parties 0, 1 and 2, got ${results.map((r) => r.party).join(', ')}`);
  const specs = byParty[0]!.outputs;
  const pairs: SharePair[][] = byParty.map((r) => decodePairs(r!.body, specs));
  return specs.map((spec, k) => ({ name: spec.name, shape: spec.shape, values: decode(reconstruct(pairs.map((p) => p[k])), fracBits) }));
}
