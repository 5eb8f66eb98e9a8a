/**
 * Statistical check of semi-honest privacy: the view of any single party
 * during inputFrom → mulFx → truncate has the same distribution whether the
 * secrets are A (all zeros) or B (large distinct values).
 *
 * Setting. Party `owner` inputs x with inputFrom; y is dealt by a dealer;
 * z = mulFx(x, y); w = truncate(z, 8). The observer is any party other than
 * the owner (the owner knows x, so its view may depend on it). The observer's
 * view is its share pairs of x, y, z, w and every message it received during
 * those steps (setup keys are random and secret-independent; reveal is
 * excluded because it is meant to leak).
 *
 * Statistic. For every signed combination ±v1 ± v2 ± v3 of up to three view
 * words of one element index (the first sign +), three features of the
 * 64-bit result: top byte, low byte, parity. Histograms of each feature over
 * runs and element indices are compared between A and B with a two-sample
 * chi-square test. Single words catch a leak in one message; the
 * combinations catch leaks that only show jointly, like a party that ends up
 * holding all components of a sharing. Only additive structure is probed:
 * a leak through a nonlinear relation between view words would pass.
 *
 * Error rates. The protocol's randomness comes from the OS CSPRNG, so the
 * outcome is random; the family-wise false-positive rate is held at 1e-6 by
 * Bonferroni over every (observer, owner, combination, feature) test. Positive
 * controls run the same statistic and threshold on deliberately leaky views
 * and must reject with p-values below 1e-30, so the test is known to have power.
 */
import t from 'tap';
import { dealShares, fromPair, inputFrom, reveal, type AShare } from '../protocols/arith.ts';
import { mulFx, truncate } from '../protocols/truncation.ts';
import { RingTensor } from '../protocols/ring.ts';
import type { PartyIndex } from '../protocols/transport.ts';
import { randomRing } from './helpers/three-parties.ts';
import { recordedSession } from './helpers/recording.ts';

const N = 32; // elements per tensor
const RUNS = 250; // runs per (owner, secret)
const FAMILY_ALPHA = 1e-6;
const TWO32 = 4294967296;

// ------------------------------------------------------------ statistics

/** ln Γ(z) for z > 0 (Lanczos, g = 7). */
function lnGamma(z: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (z < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * z)) - lnGamma(1 - z);
  z -= 1;
  let x = c[0];
  for (let i = 1; i < 9; i++) x += c[i] / (z + i);
  const tt = z + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(tt) - tt + Math.log(x);
}

/** Regularised upper incomplete gamma Q(a, x) (series below a+1, Lentz continued fraction above). */
function gammaQ(a: number, x: number): number {
  if (x <= 0) return 1;
  const front = Math.exp(-x + a * Math.log(x) - lnGamma(a));
  if (x < a + 1) {
    let ap = a, del = 1 / a, sum = del;
    for (let i = 0; i < 10_000 && Math.abs(del) > Math.abs(sum) * 1e-16; i++) {
      ap += 1;
      del *= x / ap;
      sum += del;
    }
    return Math.max(0, 1 - sum * front);
  }
  const tiny = 1e-300;
  let b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (let i = 1; i < 10_000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) break;
  }
  return front * h;
}

/** P[χ²_df ≥ x]. */
function chiSquareSf(x: number, df: number): number {
  return df <= 0 ? 1 : gammaQ(df / 2, x / 2);
}

/**
 * Two-sample chi-square homogeneity test of histograms a and b (same bins).
 * Bins with fewer than 10 observations in both samples together are pooled
 * into one bin so the asymptotic distribution holds in the far tail.
 */
function twoSampleChiSquare(a: ArrayLike<number>, b: ArrayLike<number>): { stat: number; df: number; p: number } {
  let A = 0, B = 0;
  for (let k = 0; k < a.length; k++) {
    A += a[k];
    B += b[k];
  }
  if (A === 0 || B === 0) return { stat: 0, df: 0, p: 1 };
  const ra = Math.sqrt(B / A), rb = Math.sqrt(A / B);
  let stat = 0, bins = 0, pa = 0, pb = 0;
  const term = (x: number, y: number) => (x * ra - y * rb) ** 2 / (x + y);
  for (let k = 0; k < a.length; k++) {
    const s = a[k] + b[k];
    if (s === 0) continue;
    if (s < 10) {
      pa += a[k];
      pb += b[k];
      continue;
    }
    stat += term(a[k], b[k]);
    bins++;
  }
  if (pa + pb > 0) {
    stat += term(pa, pb);
    bins++;
  }
  const df = bins - 1;
  return { stat, df, p: chiSquareSf(stat, df) };
}

// ------------------------------------------------------------ views and their features

/** One observer's view in one run: named ring vectors of N elements, as (lo, hi) limbs. */
interface View {
  names: string[];
  words: Uint32Array[];
}

const FEATURES = [
  { name: 'top byte', offset: 0, bins: 256 },
  { name: 'low byte', offset: 256, bins: 256 },
  { name: 'parity', offset: 512, bins: 2 },
] as const;
const HIST = 514;

interface Combo {
  roles: number[];
  negate: boolean[];
}

/** All ±v1 ± v2 ± v3 over distinct roles (up to three), first sign +. */
function combos(roles: number): Combo[] {
  const out: Combo[] = [];
  for (let i = 0; i < roles; i++) {
    out.push({ roles: [i], negate: [false] });
    for (let j = i + 1; j < roles; j++) {
      for (const nj of [false, true]) out.push({ roles: [i, j], negate: [false, nj] });
      for (let k = j + 1; k < roles; k++) {
        for (const nj of [false, true]) for (const nk of [false, true]) out.push({ roles: [i, j, k], negate: [false, nj, nk] });
      }
    }
  }
  return out;
}

function comboName(c: Combo, names: readonly string[]): string {
  return c.roles.map((r, k) => `${k === 0 ? '' : c.negate[k] ? ' − ' : ' + '}${names[r]}`).join('');
}

function negLimbs(v: Uint32Array): Uint32Array {
  const out = new Uint32Array(v.length);
  for (let i = 0; i < v.length; i += 2) {
    // −v = ~v + 1
    const lo = (~v[i] >>> 0) + 1;
    out[i] = lo >>> 0;
    out[i + 1] = ((~v[i + 1] >>> 0) + (lo > 0xffffffff ? 1 : 0)) >>> 0;
  }
  return out;
}

/** Adds one view to the histograms of every combination. */
function accumulate(hist: Int32Array, cs: readonly Combo[], view: View): void {
  const pos = view.words, neg = view.words.map(negLimbs);
  const terms = cs.map((c) => c.roles.map((r, k) => (c.negate[k] ? neg[r] : pos[r])));
  for (let ci = 0; ci < cs.length; ci++) {
    const ts = terms[ci], base = ci * HIST;
    for (let e = 0; e < N; e++) {
      let lo = 0, hi = 0;
      for (const v of ts) {
        lo += v[2 * e];
        hi += v[2 * e + 1];
      }
      hi += Math.floor(lo / TWO32);
      hist[base + ((hi >>> 24) & 255)]++;
      hist[base + 256 + (lo & 255)]++;
      hist[base + 512 + (lo & 1)]++;
    }
  }
}

interface Verdict {
  tests: number;
  minP: number;
  maxStat: number;
  worst: string;
}

/** Compares the views of secrets A and B for one (observer, owner) configuration over every combination and feature. */
function compare(viewsA: readonly View[], viewsB: readonly View[], roles?: (names: readonly string[]) => number[]): Verdict & { results: { what: string; p: number; stat: number }[] } {
  const names = viewsA[0].names;
  const keep = roles ? roles(names) : names.map((_, i) => i);
  const pick = (v: View): View => {
    if (v.names.join() !== names.join()) throw new Error(`view layout changed between runs: ${v.names.join()} vs ${names.join()}`);
    return { names: keep.map((i) => v.names[i]), words: keep.map((i) => v.words[i]) };
  };
  const cs = combos(keep.length);
  const hA = new Int32Array(cs.length * HIST), hB = new Int32Array(cs.length * HIST);
  for (const v of viewsA) accumulate(hA, cs, pick(v));
  for (const v of viewsB) accumulate(hB, cs, pick(v));
  const keptNames = keep.map((i) => names[i]);
  const results: { what: string; p: number; stat: number }[] = [];
  for (let ci = 0; ci < cs.length; ci++) {
    for (const f of FEATURES) {
      const at = ci * HIST + f.offset;
      const r = twoSampleChiSquare(hA.subarray(at, at + f.bins), hB.subarray(at, at + f.bins));
      if (r.df > 0) results.push({ what: `${f.name} of ${comboName(cs[ci], keptNames)} (χ²=${r.stat.toFixed(1)}, df=${r.df})`, p: r.p, stat: r.stat });
    }
  }
  let worst = results[0];
  for (const r of results) if (r.p < worst.p || (r.p === worst.p && r.stat > worst.stat)) worst = r;
  return { tests: results.length, minP: worst.p, maxStat: worst.stat, worst: worst.what, results };
}

// ------------------------------------------------------------ collecting views

const toLimbs = (x: BigInt64Array): Uint32Array => new Uint32Array(x.slice().buffer);

interface RunViews {
  /** View of each non-owner party during inputFrom, mulFx and truncate (undefined for the owner). */
  views: (View | undefined)[];
  /** The message each party received in a subsequent reveal of x: a deliberate leak for the positive control. */
  revealMsg: Uint32Array[];
}

async function runOnce(owner: PartyIndex, X: RingTensor, Y: RingTensor): Promise<RunViews> {
  const s = await recordedSession({ timeoutMs: 10_000 });
  try {
    const base = s.transports.map((x) => x.received.length);
    const yPairs = dealShares(Y);
    const shares = await Promise.all(
      s.parties.map(async (p) => {
        const x = await inputFrom(p, owner, p.index === owner ? X : null, X.shape);
        const y = fromPair(yPairs[p.index]);
        const z = await mulFx(p, x, y);
        const w = await truncate(p, z, 8);
        return { x, y, z, w } as Record<'x' | 'y' | 'z' | 'w', AShare>;
      }),
    );
    const mid = s.transports.map((x) => x.received.length);
    const opened = await Promise.all(s.parties.map((p) => reveal(p, shares[p.index].x)));
    for (const o of opened) if (!o.data.every((v, i) => v === X.data[i])) throw new Error('the protocol computed a wrong x');
    const views: (View | undefined)[] = [];
    const revealMsg: Uint32Array[] = [];
    for (const i of [0, 1, 2] as const) {
      const rec = s.transports[i].received;
      if (rec.length !== mid[i] + 1) throw new Error(`party ${i} received ${rec.length - mid[i]} messages in reveal`);
      revealMsg.push(new Uint32Array(rec[mid[i]].data.slice().buffer));
      if (i === owner) continue;
      const names: string[] = [], words: Uint32Array[] = [];
      for (const k of ['x', 'y', 'z', 'w'] as const) {
        names.push(`${k}.a`, `${k}.b`);
        words.push(toLimbs(shares[i][k].a), toLimbs(shares[i][k].b));
      }
      // Messages of one round resolve in delivery order, which varies; list them by (round, sender).
      const msgs = rec.slice(base[i], mid[i]).sort((a, b) => a.round - b.round || a.from - b.from);
      for (const m of msgs) {
        if (m.data.byteLength !== N * 8) throw new Error(`unexpected message of ${m.data.byteLength} bytes`);
        names.push(`msg(r${m.round} from ${m.from})`);
        words.push(new Uint32Array(m.data.slice().buffer));
      }
      views[i] = { names, words };
    }
    return { views, revealMsg };
  } finally {
    s.close();
  }
}

const SECRETS = {
  A: { X: new RingTensor(new BigInt64Array(N), [N]), Y: new RingTensor(new BigInt64Array(N), [N]) },
  B: { X: new RingTensor(randomRing(N, 101), [N]), Y: new RingTensor(randomRing(N, 102), [N]) },
};

/** key `${observer}/${owner}` → views per secret (and the reveal messages, for the controls). */
interface Collected {
  views: { A: View[]; B: View[] };
  reveal: { A: Uint32Array[]; B: Uint32Array[] };
}

let collected: Map<string, Collected> | null = null;
async function collect(): Promise<Map<string, Collected>> {
  if (collected) return collected;
  const out = new Map<string, Collected>();
  for (const owner of [0, 1, 2] as const) {
    for (const which of ['A', 'B'] as const) {
      const { X, Y } = SECRETS[which];
      for (let r = 0; r < RUNS; r++) {
        const run = await runOnce(owner, X, Y);
        for (const i of [0, 1, 2] as const) {
          if (i === owner) continue;
          const key = `${i}/${owner}`;
          let c = out.get(key);
          if (!c) out.set(key, (c = { views: { A: [], B: [] }, reveal: { A: [], B: [] } }));
          c.views[which].push(run.views[i]!);
          c.reveal[which].push(run.revealMsg[i]);
        }
      }
    }
  }
  return (collected = out);
}

/** A view with one extra role appended. */
function withRole(v: View, name: string, words: Uint32Array): View {
  return { names: [...v.names, name], words: [...v.words, words] };
}

/** Deterministic (mulberry32 via randomRing) mask words; `clear` bits of each word forced to zero. */
function mask(seed: number, clear: bigint): BigInt64Array {
  const m = randomRing(N, seed);
  for (let i = 0; i < N; i++) m[i] &= ~clear;
  return m;
}

function addRing(a: BigInt64Array, b: BigInt64Array): Uint32Array {
  return toLimbs(a.map((v, i) => BigInt.asIntN(64, v + b[i])));
}

// ------------------------------------------------------------ tests

t.test('the chi-square machinery matches reference values', async (t) => {
  // Reference values from scipy.stats.chi2.sf.
  const ref: [number, number, number][] = [
    [3.841458820694124, 1, 0.05], [10, 2, 0.006737946999085468], [293.2478, 255, 0.05000014600551991],
    [420, 255, 3.3528874521445467e-10], [60, 10, 3.6243009520614924e-9], [5, 20, 0.9997226479053791],
    [1000, 513, 1.0456853165728597e-33], [0.5, 1, 0.47950012218695337], [30, 1, 4.3204630578274955e-8],
  ];
  for (const [x, df, want] of ref) {
    const got = chiSquareSf(x, df);
    t.ok(Math.abs(got - want) <= 1e-6 * want, `sf(${x}, ${df}) = ${got} ≈ ${want}`);
  }
  const same = twoSampleChiSquare([50, 50, 50, 50], [50, 50, 50, 50]);
  t.same([same.stat, same.df, same.p], [0, 3, 1]);
  const diff = twoSampleChiSquare([100, 0], [0, 100]);
  t.equal(diff.stat, 200);
  t.equal(diff.df, 1);
  t.ok(diff.p < 1e-40);
  // Unequal sample sizes: proportional histograms are homogeneous.
  t.equal(twoSampleChiSquare([20, 40, 60], [10, 20, 30]).stat, 0);
  // Negation in limbs agrees with BigInt.
  const v = BigInt64Array.of(0n, 1n, -1n, 0x0000000100000000n, -0x8000000000000000n, 0x123456789abcdefn);
  t.same(new BigInt64Array(negLimbs(toLimbs(v)).buffer), v.map((x) => BigInt.asIntN(64, -x)));
});

t.test('secrets are as intended', async (t) => {
  t.ok(SECRETS.A.X.data.every((v) => v === 0n) && SECRETS.A.Y.data.every((v) => v === 0n), 'A is all zeros');
  t.equal(new Set(SECRETS.B.X.data).size, N, 'B.x values distinct');
  t.equal(new Set(SECRETS.B.X.data.map((v) => v >> 56n)).size > N / 2, true, 'B.x top bytes varied');
  const odd = SECRETS.B.X.data.filter((v) => (v & 1n) === 1n).length;
  t.ok(odd > 4 && odd < N - 4, `B.x has both parities (${odd} odd)`);
});

t.test("no party's view during inputFrom, mulFx and truncate depends on the secrets", async (t) => {
  const t0 = performance.now();
  const data = await collect();
  t.comment(`collected ${2 * 3 * RUNS} runs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const verdicts = [...data].map(([key, c]) => ({ key, v: compare(c.views.A, c.views.B) }));
  const total = verdicts.reduce((s, x) => s + x.v.tests, 0);
  const alpha = FAMILY_ALPHA / total;
  t.comment(`${total} tests, per-test threshold ${alpha.toExponential(2)}`);
  t.equal(verdicts.length, 6, 'every (observer, owner ≠ observer) configuration');
  for (const { key, v } of verdicts) {
    const [obs, owner] = key.split('/');
    t.ok(v.minP >= alpha, `observer ${obs}, input owner ${owner}: ${v.tests} tests, smallest p ${v.minP.toExponential(2)} (${v.worst})`);
  }
  // The view really contains what the protocol sends: party 1 gets the product share, party 2 the truncated halves.
  t.ok(data.get('1/0')!.views.A[0].names.includes('msg(r2 from 2)'), "party 1's view holds mulFx round 1 from party 2");
  t.same(data.get('2/0')!.views.A[0].names.filter((n) => n.startsWith('msg')), ['msg(r3 from 0)', 'msg(r3 from 1)', 'msg(r4 from 0)', 'msg(r4 from 1)']);
  t.ok(data.get('1/0')!.views.A[0].names.includes('msg(r1 from 0)'), 'owner+1 holds the input message');
  t.notOk(data.get('2/0')!.views.A[0].names.includes('msg(r1 from 0)'), 'owner−1 receives nothing in inputFrom');
});

t.test('positive control: secret plus a mask whose top byte is zero is detected', async (t) => {
  const data = await collect();
  for (const [key, c] of data) {
    const leak = (which: 'A' | 'B') => c.views[which].map((v, r) => withRole(v, 'x+mask56', addRing(SECRETS[which].X.data, mask(1000 + r, 0xffn << 56n))));
    const v = compare(leak('A'), leak('B'));
    t.ok(v.minP < FAMILY_ALPHA / v.tests && v.minP < 1e-30, `${key}: detected, p ${v.minP.toExponential(2)} (${v.worst})`);
    t.match(v.worst, /x\+mask56/, `${key}: the leaky word is the culprit`);
  }
});

t.test('positive control: a one-bit leak (secret plus an even mask) is detected through parity', async (t) => {
  const data = await collect();
  const c = data.get('2/1')!;
  const leak = (which: 'A' | 'B') => c.views[which].map((v, r) => withRole(v, 'x+2u', addRing(SECRETS[which].X.data, mask(5000 + r, 1n))));
  const v = compare(leak('A'), leak('B'));
  t.ok(v.minP < FAMILY_ALPHA / v.tests && v.minP < 1e-30, `detected, p ${v.minP.toExponential(2)} (${v.worst})`);
  const byFeature = (f: string) => Math.min(...v.results.filter((r) => r.what.startsWith(f) && /x\+2u/.test(r.what)).map((r) => r.p));
  t.ok(byFeature('parity') < 1e-30, 'parity sees it');
  t.ok(byFeature('top byte') > 1e-12, 'the top byte alone does not (the leak is one bit)');
});

t.test('positive control: the reveal message completes the sharing, a joint leak invisible word by word', async (t) => {
  const data = await collect();
  for (const [key, c] of data) {
    const leak = (which: 'A' | 'B') => c.views[which].map((v, r) => withRole(v, 'reveal msg', c.reveal[which][r]));
    const v = compare(leak('A'), leak('B'));
    t.ok(v.minP < FAMILY_ALPHA / v.tests && v.minP < 1e-30, `${key}: detected, p ${v.minP.toExponential(2)} (${v.worst})`);
    t.match(v.worst, /reveal msg/, `${key}: through a combination with the reveal message`);
    // Word by word the reveal message is a uniform component: only combinations expose it.
    const singles = compare(leak('A'), leak('B'), (names) => [names.indexOf('reveal msg')]);
    t.ok(singles.minP >= FAMILY_ALPHA / singles.tests, `${key}: alone it looks uniform (p ${singles.minP.toExponential(2)})`);
  }
});
