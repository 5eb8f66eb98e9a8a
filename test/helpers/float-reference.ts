/** Float64 references for the secure functions (shared by tests and scripts/bench-engine.ts). */

/** erf to ~1e-15: Maclaurin series below 3, continued fraction above. */
export function erf(x: number): number {
  const z = Math.abs(x);
  let r: number;
  if (z < 3) {
    let term = z, sum = z;
    for (let n = 1; n < 80; n++) {
      term *= (-z * z) / n;
      sum += term / (2 * n + 1);
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    let cf = 0;
    for (let n = 60; n >= 1; n--) cf = n / 2 / (z + cf);
    r = 1 - Math.exp(-z * z) / Math.sqrt(Math.PI) / (z + cf);
  }
  return x < 0 ? -r : r;
}

export const geluErf = (x: number): number => 0.5 * x * (1 + erf(x / Math.SQRT2));
export const geluTanh = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

/** Softmax of each row of a row-major [rows, cols] array. */
export function softmaxRows(x: Float64Array, cols: number): Float64Array {
  return mapRows(x, cols, (row) => {
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / z);
  });
}

/** LayerNorm (no γ, β) of each row. */
export function layerNormRows(x: Float64Array, cols: number, eps = 1e-5): Float64Array {
  return mapRows(x, cols, (row) => {
    const mean = row.reduce((a, b) => a + b, 0) / cols;
    const v = row.reduce((a, b) => a + (b - mean) ** 2, 0) / cols;
    return row.map((r) => (r - mean) / Math.sqrt(v + eps));
  });
}

function mapRows(x: Float64Array, cols: number, fn: (row: Float64Array) => Float64Array): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / cols; r++) out.set(fn(x.subarray(r * cols, (r + 1) * cols)), r * cols);
  return out;
}
