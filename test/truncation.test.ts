import t from 'tap';
import { reveal } from '../protocols/arith.ts';
import { truncate } from '../protocols/truncation.ts';
import { RingTensor } from '../protocols/ring.ts';
import { share } from './helpers/deal.ts';
import { runParties } from './helpers/three-parties.ts';

/**
 * The documented error of share truncation (protocols/truncation.ts): the
 * result is ⌊z/2^d⌋ or ⌊z/2^d⌋ + 1, except with probability (|z| + 1)/2^64
 * per element. Large |z| makes the failure rate measurable.
 */
async function truncationOutcomes(value: bigint, n: number, d: number) {
  const x = new RingTensor(new BigInt64Array(n).fill(value), [n]);
  const [r] = await runParties(async (p) => reveal(p, await truncate(p, share(p, x), d)));
  const exact = value >> BigInt(d);
  let offByOne = 0, wrong = 0;
  for (const v of r.data) {
    if (v === exact) continue;
    if (v === exact + 1n) offByOne++;
    else wrong++;
  }
  return { offByOne, wrong };
}

t.test('failure rate matches (|z| + 1)/2^64 where it is measurable', async (t) => {
  const n = 40_000;
  for (const value of [2n ** 54n, -(2n ** 54n) + 12345n]) {
    const { wrong, offByOne } = await truncationOutcomes(value, n, 16);
    const expected = n * Number((value < 0n ? -value : value) + 1n) / 2 ** 64; // ≈ 39
    const sd = Math.sqrt(expected);
    t.ok(wrong >= expected - 6 * sd && wrong <= expected + 6 * sd, `${wrong} wrong results for |z| ≈ 2^54, expected ${expected.toFixed(1)} ± ${(6 * sd).toFixed(1)}`);
    if (value % 65536n === 0n) t.equal(offByOne, 0, 'a multiple of 2^d truncates exactly');
    else {
      // Rounding up happens with probability frac(z/2^d): the truncation is unbiased.
      const frac = Number(((value % 65536n) + 65536n) % 65536n) / 65536, m = (n - wrong) * frac, s = Math.sqrt(m * (1 - frac));
      t.ok(Math.abs(offByOne - m) <= 6 * s, `rounded up in ${offByOne} of ${n}, expected ${m.toFixed(0)} ± ${(6 * s).toFixed(0)}`);
    }
  }
});

t.test('at fixed-point magnitudes no result is off by more than one unit', async (t) => {
  // |z| = 2^40 (a product of two values near 2^4 at f = 16): failure probability 2^-24 per element.
  for (const value of [2n ** 40n - 1n, -(2n ** 40n), 3n, -3n, 0n]) {
    const { wrong } = await truncationOutcomes(value, 20_000, 16);
    t.equal(wrong, 0, `value ${value}`);
  }
});
