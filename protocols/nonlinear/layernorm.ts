/**
 * LayerNorm over the last axis: (x − mean) / √(var + ε) · γ + β.
 *
 * Mean and variance are local sums plus public scalings; 1/√(var + ε) comes
 * from rsqrt with a wide range ([2^-10, 2^14]) because only one value per row
 * needs it. Max abs error ≤ 1e-2 for rows of 128 values in [−10, 10] (f = 16).
 */
import { AShare, add, addPublic, broadcastShare, sub, sumLastAxis } from '../arith.ts';
import { encodeScalar } from '../fixed.ts';
import { RangeError64 } from '../errors.ts';
import { mulFx, mulPublicFx } from '../truncation.ts';
import type { Party } from '../party.ts';
import { rsqrt } from './rsqrt.ts';

export interface LayerNormOptions {
  /** ε added to the variance (default 1e-5, as in PyTorch and ONNX). */
  epsilon?: number;
  /** Scale γ, broadcast along the last axis (shared model weights). */
  gamma?: AShare | null;
  /** Shift β. */
  beta?: AShare | null;
}

export async function layerNorm(p: Party, x: AShare, opts: LayerNormOptions = {}): Promise<AShare> {
  if (x.shape.length === 0) throw new RangeError64('layerNorm needs a tensor of rank ≥ 1');
  const n = x.shape[x.shape.length - 1];
  const keep = [...x.shape.slice(0, -1), 1];
  const mean = (await mulPublicFx(p, sumLastAxis(x), 1 / n)).reshape(keep);
  const d = sub(x, broadcastShare(mean, x.shape));
  const variance = await mulPublicFx(p, sumLastAxis(await mulFx(p, d, d)), 1 / n);
  const eps = encodeScalar(opts.epsilon ?? 1e-5, p.fracBits);
  const r = (await rsqrt(p, addPublic(p, variance, eps), { min: 2 ** -10, max: 2 ** 14 })).reshape(keep);
  let y = await mulFx(p, d, broadcastShare(r, x.shape));
  if (opts.gamma) y = await mulFx(p, y, opts.gamma);
  if (opts.beta) y = add(y, opts.beta);
  return y;
}
