import t from 'tap';
import { exp } from '../protocols/nonlinear/exp.ts';
import { reciprocal } from '../protocols/nonlinear/reciprocal.ts';
import { rsqrt, sqrt } from '../protocols/nonlinear/rsqrt.ts';
import { gelu, sigmoid, tanh } from '../protocols/nonlinear/activations.ts';
import { softmax } from '../protocols/nonlinear/softmax.ts';
import { layerNorm } from '../protocols/nonlinear/layernorm.ts';
import { errors, evalFx } from './helpers/accuracy.ts';
import { erf, geluErf, geluTanh, layerNormRows, softmaxRows } from './helpers/float-reference.ts';
import { uniform } from './helpers/three-parties.ts';

/** Inputs: a uniform sweep plus the range ends and zero. */
function inputs(n: number, lo: number, hi: number, seed: number): Float64Array {
  const x = uniform(n, lo, hi, seed);
  x[0] = lo; x[1] = hi; if (lo < 0 && hi > 0) x[2] = 0;
  return x;
}

t.test('reference erf is accurate', async (t) => {
  t.ok(Math.abs(erf(0.5) - 0.5204998778130465) < 1e-13);
  t.ok(Math.abs(erf(-2.5) + 0.9995930479825550) < 1e-13);
  t.ok(Math.abs(erf(4) - 0.9999999845827421) < 1e-13);
});

t.test('exp: relative error ≤ 2e-2 where exp(x) ≥ 2^-9, absolute ≤ 4e-5 below, on [−16, 4]', async (t) => {
  const x = inputs(3000, -16, 4, 31);
  const { out } = await evalFx(x, [x.length], (p, s) => exp(p, s));
  const e = errors(x, out, Math.exp, 2 ** -9);
  t.ok(e.maxRel <= 2e-2, `max rel err ${e.maxRel}`);
  const small = errors(x, out, (v) => (Math.exp(v) < 2 ** -9 ? Math.exp(v) : NaN));
  t.ok(!(small.maxAbs > 4e-5), `abs err below 2^-9: ${small.maxAbs}`);
  // far below the domain the clip keeps the result at ~0, not garbage
  const far = await evalFx([-1000, -300, -64.5], [3], (p, s) => exp(p, s));
  for (const v of far.out) t.ok(Math.abs(v) < 1e-4, `exp(very negative) = ${v}`);
});

t.test('reciprocal: relative error ≤ 1e-2 on [0.05, 100]', async (t) => {
  const x = inputs(2000, 0.05, 100, 32);
  x.set([0.05, 0.1, 0.5, 1, 1.2, 3, 99.9], 2);
  const { out } = await evalFx(x, [x.length], (p, s) => reciprocal(p, s));
  const e = errors(x, out, (v) => 1 / v);
  t.ok(e.maxRel <= 1e-2, `max rel err ${e.maxRel} (worst input ${e.worstInput})`);
});

t.test('rsqrt and sqrt: relative error ≤ 1e-2 on [0.01, 1000]', async (t) => {
  const lo = Math.log(0.01), hi = Math.log(1000);
  const x = uniform(2000, lo, hi, 33).map(Math.exp);
  x.set([0.01, 1000, 1, 4, 0.25, 256], 0);
  const r = await evalFx(x, [x.length], (p, s) => rsqrt(p, s));
  const e = errors(x, r.out, (v) => 1 / Math.sqrt(v));
  t.ok(e.maxRel <= 1e-2, `rsqrt max rel err ${e.maxRel} (worst ${e.worstInput})`);
  const s = await evalFx(x, [x.length], (p, v) => sqrt(p, v));
  const es = errors(x, s.out, Math.sqrt);
  t.ok(es.maxRel <= 1e-2, `sqrt max rel err ${es.maxRel} (worst ${es.worstInput})`);
});

t.test('GELU (erf and tanh forms): max abs error ≤ 1e-2 on [−8, 8] and beyond', async (t) => {
  const x = inputs(3000, -8, 8, 34);
  x.set([-4, 4, -3.99, 3.99, -4.01, 4.01, -100, 100], 3);
  for (const [form, ref] of [['erf', geluErf], ['tanh', geluTanh]] as const) {
    const { out } = await evalFx(x, [x.length], (p, s) => gelu(p, s, form));
    const e = errors(x, out, ref);
    t.ok(e.maxAbs <= 1e-2, `${form}: max abs err ${e.maxAbs} (worst ${e.worstInput})`);
  }
});

t.test('sigmoid and tanh: max abs error ≤ 2e-3 on [−20, 20]', async (t) => {
  const x = inputs(2000, -20, 20, 35);
  const s = await evalFx(x, [x.length], (p, v) => sigmoid(p, v));
  const es = errors(x, s.out, (v) => 1 / (1 + Math.exp(-v)));
  t.ok(es.maxAbs <= 1e-3, `sigmoid max abs err ${es.maxAbs} (worst ${es.worstInput})`);
  const th = await evalFx(x, [x.length], (p, v) => tanh(p, v));
  const et = errors(x, th.out, Math.tanh);
  t.ok(et.maxAbs <= 2e-3, `tanh max abs err ${et.maxAbs} (worst ${et.worstInput})`);
});

t.test('softmax: max abs error ≤ 1e-2 on rows from [−20, 20], along any axis', async (t) => {
  const rows = 16, cols = 33;
  const x = uniform(rows * cols, -20, 20, 36);
  const want = softmaxRows(x, cols);
  const { out, shape } = await evalFx(x, [rows, cols], (p, s) => softmax(p, s, -1));
  t.same(shape, [rows, cols]);
  t.ok(errors(x, out, (_, i) => want[i]).maxAbs <= 1e-2, 'last axis');
  // the same rows laid out as columns, softmax along axis 0
  const xt = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) xt[c * rows + r] = x[r * cols + c];
  const res = await evalFx(xt, [cols, rows], (p, s) => softmax(p, s, 0));
  const e = errors(xt, res.out, (_, i) => want[(i % rows) * cols + Math.floor(i / rows)]);
  t.ok(e.maxAbs <= 1e-2, `axis 0: ${e.maxAbs}`);
  // equal values and a single dominant value
  const flat = await evalFx([3, 3, 3, 3, -50, 10, -50, -50], [2, 4], (p, s) => softmax(p, s));
  [0.25, 0.25, 0.25, 0.25, 0, 1, 0, 0].forEach((w, i) => t.ok(Math.abs(flat.out[i] - w) < 1e-2, `special row element ${i}: ${flat.out[i]}`));
});

t.test('LayerNorm: max abs error ≤ 1e-2 on rows of 128 values in [−10, 10], with γ, β', async (t) => {
  const rows = 8, n = 128;
  const x = uniform(rows * n, -10, 10, 37);
  const want = layerNormRows(x, n);
  const { out } = await evalFx(x, [rows, n], (p, s) => layerNorm(p, s));
  const e = errors(x, out, (_, i) => want[i]);
  t.ok(e.maxAbs <= 1e-2, `max abs err ${e.maxAbs}`);
});
