/**
 * Malformed use of the protocols gets a clear, typed error instead of a wrong
 * answer or a hang: peers that send the wrong number of bytes, operand shapes
 * that do not fit, wrong party counts, silent peers, aborts and bad precision.
 *
 * Misbehaving peers are simulated by setting up a normal session and then, for
 * one protocol step, driving one party's raw transport by hand instead of
 * calling the protocol function for it.
 */
import t from 'tap';
import {
  AShare, add, dealShares, inputFrom, matmul, mul, reconstruct, reveal, revealTo, sub,
} from '../protocols/arith.ts';
import { matmulFx, mulFx, truncate } from '../protocols/truncation.ts';
import { Party, asRing, asWords } from '../protocols/party.ts';
import { createMemoryTransports } from '../protocols/memory-transport.ts';
import { AbortedError, PartyError, ProtocolError, RangeError64, ShapeError, TimeoutError } from '../protocols/errors.ts';
import { RingTensor, mul as ringMul } from '../protocols/ring.ts';
import { decode, encode } from '../protocols/fixed.ts';
import type { PartyIndex } from '../protocols/transport.ts';
import { randomRing, setupParties } from './helpers/three-parties.ts';
import { dealer } from './helpers/deal.ts';
import { rejection } from './helpers/async.ts';

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected the call to throw');
}

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

async function session(t: TapTest, timeoutMs = 2000): Promise<Party[]> {
  const ps = await setupParties({ timeoutMs });
  t.teardown(() => {
    for (const p of ps) p.transport.close('test done');
  });
  return ps;
}

// ------------------------------------------------------------ wrong-sized peer messages

interface WrongSizeCase {
  name: string;
  /** Number of ring elements each honest message should carry. */
  n: number;
  /** The misbehaving party: it sends `wrong` bytes to `victim` instead of running the step. */
  cheat: PartyIndex;
  victim: PartyIndex;
  /** What the victim's error names as the source of the message. */
  what: RegExp;
  /** Runs the protocol step for an honest party. */
  step: (p: Party, share: (p: Party, x: RingTensor) => AShare) => Promise<unknown>;
}

const X = new RingTensor(randomRing(10, 31), [10]), Y = new RingTensor(randomRing(10, 32), [10]);
const A = new RingTensor(randomRing(6, 33), [2, 3]), B = new RingTensor(randomRing(12, 34), [3, 4]);

const wrongSizeCases: WrongSizeCase[] = [
  { name: 'reveal', n: 10, cheat: 2, victim: 0, what: /reveal from party 2/, step: (p, s) => reveal(p, s(p, X)) },
  { name: 'revealTo', n: 10, cheat: 2, victim: 1, what: /reveal from party 2/, step: (p, s) => revealTo(p, s(p, X), 1) },
  {
    name: 'inputFrom', n: 10, cheat: 0, victim: 1, what: /input from party 0/,
    step: (p) => inputFrom(p, 0, p.index === 0 ? X : null, [10]),
  },
  { name: 'mul (reshare)', n: 10, cheat: 1, victim: 0, what: /reshare from party 1/, step: (p, s) => mul(p, s(p, X), s(p, Y)) },
  { name: 'matmul (reshare)', n: 8, cheat: 1, victim: 0, what: /reshare from party 1/, step: (p, s) => matmul(p, s(p, A), s(p, B)) },
  { name: 'mulFx round 1', n: 10, cheat: 2, victim: 1, what: /product share from party 2/, step: (p, s) => mulFx(p, s(p, X), s(p, Y)) },
  {
    name: 'mulFx round 2', n: 10, cheat: 0, victim: 2, what: /truncation from party 0/,
    step: (p, s) => mulFx(p, s(p, X), s(p, Y)),
  },
  { name: 'matmulFx round 1', n: 8, cheat: 2, victim: 1, what: /product share from party 2/, step: (p, s) => matmulFx(p, s(p, A), s(p, B)) },
  { name: 'truncate', n: 10, cheat: 1, victim: 2, what: /truncation from party 1/, step: (p, s) => truncate(p, s(p, X), 8) },
];

for (const c of wrongSizeCases) {
  t.test(`a wrong-sized message in ${c.name} is a ProtocolError naming expected and received bytes`, async (t) => {
    for (const delta of [-8, +8, -c.n * 8, +5]) {
      const ps = await session(t);
      const share = dealer();
      const wrong = c.n * 8 + delta;
      const honest = ps.filter((p) => p.index !== c.cheat);
      const runs = honest.map((p) => c.step(p, share).then(() => 'ok', (e: unknown) => e));
      ps[c.cheat].transport.send(c.victim, new Uint8Array(wrong).fill(0xab));
      const results = await Promise.all(runs);
      honest.forEach((p, k) => {
        if (p.index !== c.victim) {
          t.equal(results[k], 'ok', `delta ${delta}: party ${p.index}, which hears nothing from the cheater here, completes`);
          return;
        }
        const e = results[k];
        t.type(e, ProtocolError, `delta ${delta}: victim party ${p.index} gets a ProtocolError`);
        t.match(e, { code: 'ERR_PROTOCOL', message: c.what });
        t.match(e, { message: new RegExp(`expected ${c.n * 8} bytes \\(${c.n} ring elements\\), got ${wrong}\\b`) });
      });
      for (const p of ps) p.transport.close('case done');
    }
  });
}

t.test('setup refuses key messages of the wrong size', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 2000 });
  t.teardown(() => ts.forEach((x) => x.close('test done')));
  // Parties 0 and 1 run setup; party 2 sends 32 bytes where 16 belong and 16 where 32 belong.
  const runs = [Party.setup(ts[0]), Party.setup(ts[1])].map((p) => rejection(p));
  ts[2].send(0, new Uint8Array(32)); // party 0 expects 16 from its prev (party 2)
  ts[2].send(1, new Uint8Array(16)); // party 1 expects 32 from its next (party 2)
  const [e0, e1] = await Promise.all(runs);
  t.type(e0, ProtocolError);
  t.match(e0, { code: 'ERR_PROTOCOL', message: /setup: expected 32 bytes from party 1 and 16 from party 2, got 32 and 32/ });
  t.match(e1, { code: 'ERR_PROTOCOL', message: /setup: expected 32 bytes from party 2 and 16 from party 0, got 16 and 16/ });
});

t.test('asRing / asWords check sizes and read unaligned messages correctly', async (t) => {
  const v = BigInt64Array.of(1n, -2n, 0x0123456789abcdefn);
  const bytes = new Uint8Array(25);
  bytes.set(new Uint8Array(v.buffer), 1);
  t.same(asRing(bytes.subarray(1), 3, 'x'), v, 'unaligned view decoded');
  t.same(asRing(new Uint8Array(v.buffer), 3, 'x'), v);
  t.throws(() => asRing(bytes, 3, 'thing from party 1'), { code: 'ERR_PROTOCOL', message: /thing from party 1: expected 24 bytes \(3 ring elements\), got 25/ });
  const w = Uint32Array.of(1, 0xffffffff);
  const wb = new Uint8Array(9);
  wb.set(new Uint8Array(w.buffer), 1);
  t.same(asWords(wb.subarray(1), 2, 'w'), w);
  t.throws(() => asWords(wb, 2, 'words from party 0'), { code: 'ERR_PROTOCOL', message: /words from party 0: expected 8 bytes \(2 words\), got 9/ });
});

// ------------------------------------------------------------ shapes

t.test('operand shapes that do not fit are ShapeErrors, raised before any communication or randomness', async (t) => {
  const ps = await session(t);
  const share = dealer();
  const p0 = ps[0];
  const s = (shape: number[], seed: number) => share(p0, new RingTensor(randomRing(shape.reduce((a, b) => a * b, 1), seed), shape));
  const stats = { ...p0.transport.stats }, rounds = p0.cost.rounds;

  const cases: [string, () => Promise<unknown>, RegExp][] = [
    ['mul [3]·[4]', () => mul(p0, s([3], 1), s([4], 2)), /mul: shapes \[3\] and \[4\] cannot be broadcast/],
    ['mul [2,3]·[3,2]', () => mul(p0, s([2, 3], 1), s([3, 2], 2)), /mul: shapes \[2, 3\] and \[3, 2\] cannot be broadcast \(dimension 0: 2 vs 3\)/],
    ['mulFx [5]·[2,4]', () => mulFx(p0, s([5], 1), s([2, 4], 2)), /shapes \[5\] and \[2, 4\] cannot be broadcast/],
    ['matmul [2,3]@[4,5]', () => matmul(p0, s([2, 3], 1), s([4, 5], 2)), /matmul: inner dimensions differ: \[2, 3\] @ \[4, 5\] \(3 vs 4\)/],
    ['matmulFx [7,2]@[3,7]', () => matmulFx(p0, s([7, 2], 1), s([3, 7], 2)), /inner dimensions differ: \[7, 2\] @ \[3, 7\] \(2 vs 3\)/],
    ['matmul rank 1', () => matmul(p0, s([3], 1), s([3, 2], 2)), /rank ≥ 2, got \[3\] and \[3, 2\]/],
    ['matmul batch', () => matmul(p0, s([2, 3, 4], 1), s([5, 4, 2], 2)), /batch dimensions differ: \[2, 3, 4\] @ \[5, 4, 2\]/],
    ['inputFrom shape', () => inputFrom(p0, 0, new RingTensor(new BigInt64Array(6), [2, 3]), [3, 2]), /inputFrom: shapes \[2, 3\] and \[3, 2\] differ/],
  ];
  for (const [name, run, message] of cases) {
    const e = await rejection(run());
    t.type(e, ShapeError, name);
    t.match(e, { code: 'ERR_SHAPE', message }, name);
  }
  t.throws(() => add(s([3], 1), s([4], 2)), { code: 'ERR_SHAPE', message: /add: shapes \[3\] and \[4\]/ });
  t.throws(() => sub(s([2, 2], 1), s([3], 2)), { code: 'ERR_SHAPE', message: /sub: shapes/ });
  t.throws(() => new AShare(new BigInt64Array(3), new BigInt64Array(4), [3]), ShapeError, 'share halves of different lengths');
  const eOwner = await rejection(inputFrom(p0, 0, null, [3]));
  t.type(eOwner, PartyError);
  t.match(eOwner, { code: 'ERR_PARTY', message: /party 0 is the input owner but has no value/ });

  t.same(p0.transport.stats, stats, 'nothing was sent');
  t.equal(p0.cost.rounds, rounds, 'no round was counted');
  // Only party 0 made the failed calls; had any of them drawn correlated randomness,
  // its streams would now be out of step with the others' and this product would be wrong.
  const x = new RingTensor(randomRing(9, 5), [9]), y = new RingTensor(randomRing(9, 6), [9]);
  const outs = await Promise.all(ps.map(async (p) => (await reveal(p, await mul(p, share(p, x), share(p, y)))).data));
  for (const o of outs) t.same(o, ringMul(x, y).data, 'the session is still consistent');
});

t.test('reconstruct needs exactly three pairs of one shape', async (t) => {
  const pairs = dealShares(new RingTensor(randomRing(4, 9), [4]));
  for (const subset of [pairs.slice(0, 2), pairs.slice(0, 1), [], [...pairs, pairs[0]]]) {
    const e = thrown(() => reconstruct(subset));
    t.type(e, PartyError, `${subset.length} pairs`);
    t.match(e, { code: 'ERR_PARTY', message: new RegExp(`needs the pairs of all 3 parties, got ${subset.length}`) });
  }
  // Consistent components, but party 2 reports another shape.
  t.throws(() => reconstruct([pairs[0], pairs[1], { ...pairs[2], shape: [2, 2] }]), { code: 'ERR_SHAPE', message: /party 2 sent shape \[2, 2\], party 0 sent \[4\]/ });
  // Inconsistent replicated components are a protocol error.
  const other = dealShares(new RingTensor(randomRing(4, 9), [4]));
  t.throws(() => reconstruct([pairs[0], pairs[1], other[2]]), { code: 'ERR_PROTOCOL', message: /component 2 differs between parties 1 and 2/ });
});

// ------------------------------------------------------------ silent peers, aborts

async function timed<T>(p: Promise<T>): Promise<{ ms: number; value: T | undefined; error: unknown }> {
  const t0 = performance.now();
  try {
    const value = await p;
    return { ms: performance.now() - t0, value, error: undefined };
  } catch (error) {
    return { ms: performance.now() - t0, value: undefined, error };
  }
}

t.test('a party that stops participating makes the waiting parties time out, not hang', async (t) => {
  const share = dealer();
  const steps: [string, (p: Party) => Promise<unknown>, PartyIndex, PartyIndex][] = [
    // [name, step, silent party, party that waits on it]
    ['reveal', (p) => reveal(p, share(p, X)), 2, 0],
    ['mul', (p) => mul(p, share(p, X), share(p, Y)), 2, 1],
    ['mulFx', (p) => mulFx(p, share(p, X), share(p, Y)), 2, 1],
    ['truncate', (p) => truncate(p, share(p, X)), 0, 2],
    ['inputFrom', (p) => inputFrom(p, 0, p.index === 0 ? X : null, [10]), 0, 1],
  ];
  for (const [name, step, silent, waiter] of steps) {
    const ps = await session(t, 200);
    const results = await Promise.all(ps.filter((p) => p.index !== silent).map((p) => timed(step(p))));
    const others = ps.filter((p) => p.index !== silent);
    others.forEach((p, k) => {
      const r = results[k];
      if (p.index !== waiter) {
        t.equal(r.error, undefined, `${name}: party ${p.index} does not depend on party ${silent} here and completes`);
        return;
      }
      t.type(r.error, TimeoutError, `${name}: party ${waiter} times out`);
      t.match(r.error, { code: 'ERR_TIMEOUT', message: new RegExp(`party ${waiter}: no message from party ${silent} within 200 ms`) });
      t.ok(r.ms >= 190 && r.ms < 1500, `${name}: after ${r.ms.toFixed(0)} ms`);
    });
    for (const p of ps) p.transport.close('case done');
  }
});

t.test("the party's own timeoutMs bounds protocol waits, whatever the transport default", async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 60_000 });
  t.teardown(() => ts.forEach((x) => x.close('test done')));
  const ps = await Promise.all(ts.map((x) => Party.setup(x, { timeoutMs: 150 })));
  const share = dealer();
  const r = await timed(reveal(ps[1], share(ps[1], X))); // party 0, its prev, never sends
  t.type(r.error, TimeoutError);
  t.match(r.error, { message: /party 1: no message from party 0 within 150 ms/ });
  t.ok(r.ms >= 140 && r.ms < 1500, `after ${r.ms.toFixed(0)} ms`);
  // Setup itself also honours the option.
  const lone = createMemoryTransports({ timeoutMs: 60_000 });
  t.teardown(() => lone.forEach((x) => x.close('test done')));
  const s = await timed(Party.setup(lone[0], { timeoutMs: 100 }));
  t.type(s.error, TimeoutError, 'setup with silent peers times out');
  t.ok(s.ms < 1500, `setup gave up after ${s.ms.toFixed(0)} ms`);
});

t.test('an AbortSignal ends a waiting protocol step and refuses later ones without sending', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 60_000 });
  t.teardown(() => ts.forEach((x) => x.close('test done')));
  const ac = new AbortController();
  const ps = await Promise.all(ts.map((x) => Party.setup(x, { signal: ac.signal })));
  const share = dealer();
  const pending = timed(reveal(ps[0], share(ps[0], X))); // party 2 never answers
  setTimeout(() => ac.abort(new Error('client went away')), 20);
  const r = await pending;
  t.type(r.error, AbortedError);
  t.match(r.error, { code: 'ERR_ABORTED' });
  t.ok(r.ms < 1000, `aborted after ${r.ms.toFixed(0)} ms`);
  const before = { ...ps[1].transport.stats };
  const e = await rejection(mul(ps[1], share(ps[1], X), share(ps[1], Y)));
  t.type(e, AbortedError);
  t.match(e, { message: /protocol aborted/ });
  t.same(ps[1].transport.stats, before, 'an aborted party sends nothing');
});

// ------------------------------------------------------------ precision

t.test('fracBits outside [0, 30] is refused', async (t) => {
  for (const fracBits of [31, 64, -1, 1.5, Number.NaN]) {
    const ts = createMemoryTransports({ timeoutMs: 2000 });
    const res = await Promise.all(ts.map((x) => rejection(Party.setup(x, { fracBits }))));
    for (const e of res) {
      t.type(e, RangeError64, `Party.setup fracBits ${fracBits}`);
      t.match(e, { code: 'ERR_RANGE', message: new RegExp(`fracBits must be an integer in \\[0, 30\\], got ${fracBits}`) });
    }
    ts.forEach((x) => x.close('case done'));
    t.throws(() => encode([1], [1], fracBits), { code: 'ERR_RANGE' }, `encode fracBits ${fracBits}`);
    t.throws(() => decode(BigInt64Array.of(1n), fracBits), { code: 'ERR_RANGE' }, `decode fracBits ${fracBits}`);
  }
  for (const fracBits of [0, 30]) {
    const ps = await setupParties({ timeoutMs: 2000, fracBits });
    t.equal(ps[0].fracBits, fracBits, `fracBits ${fracBits} accepted`);
    ps.forEach((p) => p.transport.close('case done'));
  }
});

t.test('a truncation shift outside [0, 62] is refused by every party before any message moves', async (t) => {
  for (const d of [64, 63, -1, 2.5]) {
    const ps = await session(t, 300);
    const share = dealer();
    const res = await Promise.all(ps.map((p) => rejection(truncate(p, share(p, X), d))));
    for (const e of res) t.match(e, { code: 'ERR_RANGE', message: new RegExp(`truncation shift must be an integer in \\[0, 62\\], got ${d}`) }, `d = ${d}`);
    t.same(ps.map((p) => p.transport.stats.messagesSent), [2, 2, 2], 'nothing sent beyond setup');
    for (const p of ps) p.transport.close('case done');
  }
});
