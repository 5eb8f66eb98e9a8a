/**
 * Communication of each protocol equals its documented cost (arith.ts,
 * truncation.ts, party.ts): bytes and messages summed over the three parties'
 * transport counters, rounds from p.cost.rounds, and the exact route of every
 * message (who sends how much to whom, in which round).
 */
import t from 'tap';
import { addPublic, inputFrom, matmul, mul, mulPublic, neg, reveal, revealTo, add, sub } from '../protocols/arith.ts';
import { matmulFx, mulFx, mulPublicFx, truncate } from '../protocols/truncation.ts';
import { RingTensor, sizeOf } from '../protocols/ring.ts';
import { encode } from '../protocols/fixed.ts';
import type { Party } from '../protocols/party.ts';
import type { PartyIndex } from '../protocols/transport.ts';
import { randomRing, uniform } from './helpers/three-parties.ts';
import { dealer } from './helpers/deal.ts';
import { recordedSession } from './helpers/recording.ts';

type Share = ReturnType<typeof dealer>;
/** [round within the operation, from, to, bytes] */
type Route = [number, PartyIndex, PartyIndex, number];

interface Measured {
  bytesSent: number;
  messagesSent: number;
  bytesReceived: number;
  messagesReceived: number;
  /** Rounds each party counted during the operation. */
  rounds: number[];
  bytesSentBy: number[];
  bytesReceivedBy: number[];
  /** Every message of the operation, with rounds counted from the operation's start. */
  routes: Route[];
}

const E = 8; // bytes per ring element

function tensor(shape: number[], seed: number): RingTensor {
  return new RingTensor(randomRing(sizeOf(shape), seed), shape);
}

/** Runs `op` at all three parties of a fresh recorded session and returns the communication it caused. */
async function measure(op: (p: Party, share: Share) => Promise<unknown>): Promise<Measured> {
  const s = await recordedSession();
  try {
    const share = dealer();
    const before = s.transports.map((x) => ({ ...x.stats }));
    const rounds0 = s.parties.map((p) => p.cost.rounds);
    const logged0 = s.transports.map((x) => x.sent.length);
    await Promise.all(s.parties.map((p) => op(p, share)));
    const delta = (k: 'bytesSent' | 'messagesSent' | 'bytesReceived' | 'messagesReceived') => s.transports.map((x, i) => x.stats[k] - before[i][k]);
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const routes = s.transports.flatMap((x, i) =>
      x.sent.slice(logged0[i]).map((m): Route => [m.round - rounds0[i], m.from, m.to, m.bytes]),
    );
    return {
      bytesSent: sum(delta('bytesSent')),
      messagesSent: sum(delta('messagesSent')),
      bytesReceived: sum(delta('bytesReceived')),
      messagesReceived: sum(delta('messagesReceived')),
      rounds: s.parties.map((p, i) => p.cost.rounds - rounds0[i]),
      bytesSentBy: delta('bytesSent'),
      bytesReceivedBy: delta('bytesReceived'),
      routes: sortRoutes(routes),
    };
  } finally {
    s.close();
  }
}

function sortRoutes(rs: Route[]): Route[] {
  return [...rs].sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2] || a[3] - b[3]);
}

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

/** Checks totals, rounds (equal at every party) and the exact message routes. */
function expectCost(t: TapTest, m: Measured, what: string, rounds: number, routes: Route[]): void {
  const bytes = routes.reduce((s, r) => s + r[3], 0);
  t.equal(m.bytesSent, bytes, `${what}: ${bytes} bytes sent in all`);
  t.equal(m.bytesReceived, m.bytesSent, `${what}: every sent byte is received`);
  t.equal(m.messagesSent, routes.length, `${what}: ${routes.length} messages`);
  t.equal(m.messagesReceived, m.messagesSent, `${what}: every message is received`);
  t.same(m.rounds, [rounds, rounds, rounds], `${what}: ${rounds} round(s) at every party`);
  t.same(m.routes, sortRoutes(routes), `${what}: message routes`);
  const into = [0, 0, 0];
  for (const [, , to, b] of routes) into[to] += b;
  t.same(m.bytesReceivedBy, into, `${what}: bytes received per party`);
}

const next = (i: number) => ((i + 1) % 3) as PartyIndex;
const prev = (i: number) => ((i + 2) % 3) as PartyIndex;
const everyParty = [0, 1, 2] as const;

t.test('setup: one round; each party sends 32 bytes to its prev and 16 to its next', async (t) => {
  const s = await recordedSession();
  try {
    t.same(s.parties.map((p) => p.cost.rounds), [1, 1, 1]);
    const routes = sortRoutes(s.transports.flatMap((x) => x.sent.map((m): Route => [m.round, m.from, m.to, m.bytes])));
    t.same(routes, sortRoutes(everyParty.flatMap((i): Route[] => [[-1, i, prev(i), 32], [-1, i, next(i), 16]])));
    t.equal(s.transports.reduce((a, x) => a + x.stats.bytesSent, 0), 144);
    t.equal(s.transports.reduce((a, x) => a + x.stats.bytesReceived, 0), 144);
  } finally {
    s.close();
  }
});

t.test('local operations communicate nothing', async (t) => {
  const x = tensor([6], 1), y = tensor([6], 2);
  const m = await measure(async (p, share) => {
    const xs = share(p, x), ys = share(p, y);
    return [add(xs, ys), sub(xs, ys), neg(xs), addPublic(p, xs, 5n), mulPublic(xs, y)];
  });
  expectCost(t, m, 'add/sub/neg/addPublic/mulPublic', 0, []);
});

t.test('mul of n elements: 3n·8 bytes, 1 round, each party to its prev', async (t) => {
  for (const [xs, ys] of [[[1], [1]], [[7], [7]], [[100], [100]], [[4, 1], [1, 5]]] as number[][][]) {
    const out = sizeOf(xs.length > 1 ? [4, 5] : xs);
    const m = await measure((p, share) => mul(p, share(p, tensor(xs, 3)), share(p, tensor(ys, 4))));
    expectCost(t, m, `mul ${JSON.stringify(xs)}·${JSON.stringify(ys)} (n = ${out})`, 1, everyParty.map((i): Route => [0, i, prev(i), out * E]));
    t.equal(m.bytesSent, 3 * out * E);
  }
});

t.test('matmul [m,k]@[k,n]: 3·m·n·8 bytes, 1 round, independent of k', async (t) => {
  const mm = 3, nn = 5;
  const totals: number[] = [];
  for (const k of [1, 8, 64]) {
    const m = await measure((p, share) => matmul(p, share(p, tensor([mm, k], 5)), share(p, tensor([k, nn], 6))));
    expectCost(t, m, `matmul [3,${k}]@[${k},5]`, 1, everyParty.map((i): Route => [0, i, prev(i), mm * nn * E]));
    totals.push(m.bytesSent);
  }
  t.same(totals, [3 * mm * nn * E, 3 * mm * nn * E, 3 * mm * nn * E], 'the same for every k');
  const b = await measure((p, share) => matmul(p, share(p, tensor([2, mm, 4], 7)), share(p, tensor([4, nn], 8))));
  expectCost(t, b, 'batched matmul [2,3,4]@[4,5]', 1, everyParty.map((i): Route => [0, i, prev(i), 2 * mm * nn * E]));
});

/** The documented mulFx / matmulFx pattern for n outputs: round 0 party 2 → 1; round 1 parties 0 and 1 → 2. */
function fxRoutes(n: number): Route[] {
  return [[0, 2, 1, n * E], [1, 0, 2, n * E], [1, 1, 2, n * E]];
}

t.test('mulFx of n elements: 3n·8 bytes, 2 rounds; party 2 receives all of the second round', async (t) => {
  for (const n of [1, 9, 256]) {
    const x = encode(uniform(n, -4, 4, 1)), y = encode(uniform(n, -4, 4, 2));
    const m = await measure((p, share) => mulFx(p, share(p, x), share(p, y)));
    expectCost(t, m, `mulFx n = ${n}`, 2, fxRoutes(n));
    t.equal(m.bytesSent, 3 * n * E);
    t.same(m.bytesReceivedBy, [0, n * E, 2 * n * E], 'party 0 receives nothing, party 1 the product share, party 2 both truncated halves');
    t.same(m.bytesSentBy, [n * E, n * E, n * E]);
  }
});

t.test('matmulFx [m,k]@[k,n]: 3·m·n·8 bytes, 2 rounds, independent of k', async (t) => {
  for (const k of [1, 16]) {
    const a = encode(uniform(4 * k, -1, 1, 3), [4, k]), b = encode(uniform(k * 6, -1, 1, 4), [k, 6]);
    const m = await measure((p, share) => matmulFx(p, share(p, a), share(p, b)));
    expectCost(t, m, `matmulFx [4,${k}]@[${k},6]`, 2, fxRoutes(24));
    t.equal(m.bytesSent, 3 * 4 * 6 * E);
  }
});

t.test('truncate of n elements: 2n·8 bytes, 1 round, parties 0 and 1 to party 2', async (t) => {
  for (const n of [1, 50]) {
    const x = tensor([n], 9);
    const m = await measure((p, share) => truncate(p, share(p, x), 12));
    expectCost(t, m, `truncate n = ${n}`, 1, [[0, 0, 2, n * E], [0, 1, 2, n * E]]);
    t.equal(m.bytesSent, 2 * n * E);
  }
  const x = encode(uniform(20, -1, 1, 5));
  const m = await measure((p, share) => mulPublicFx(p, share(p, x), 0.75));
  expectCost(t, m, 'mulPublicFx (one truncation)', 1, [[0, 0, 2, 20 * E], [0, 1, 2, 20 * E]]);
  const z = await measure((p, share) => truncate(p, share(p, x), 0));
  expectCost(t, z, 'truncate by 0 bits is free', 0, []);
});

t.test('a plain product followed by truncate costs 5 elements per output in 2 rounds (vs 3 for mulFx)', async (t) => {
  const n = 10;
  const x = encode(uniform(n, -2, 2, 6)), y = encode(uniform(n, -2, 2, 7));
  const m = await measure(async (p, share) => truncate(p, await mul(p, share(p, x), share(p, y))));
  expectCost(t, m, 'mul + truncate', 2, [...everyParty.map((i): Route => [0, i, prev(i), n * E]), [1, 0, 2, n * E], [1, 1, 2, n * E]]);
  t.equal(m.bytesSent, 5 * n * E);
});

t.test('reveal of n elements: 3n·8 bytes, 1 round, each party to its next', async (t) => {
  for (const n of [1, 33]) {
    const x = tensor([n], 10);
    const m = await measure((p, share) => reveal(p, share(p, x)));
    expectCost(t, m, `reveal n = ${n}`, 1, everyParty.map((i): Route => [0, i, next(i), n * E]));
    t.equal(m.bytesSent, 3 * n * E);
  }
});

t.test('revealTo of n elements: n·8 bytes, 1 round, from party to+1 only', async (t) => {
  const n = 12;
  const x = tensor([3, 4], 11);
  for (const to of everyParty) {
    const m = await measure((p, share) => revealTo(p, share(p, x), to));
    expectCost(t, m, `revealTo ${to}`, 1, [[0, next(to), to, n * E]]);
  }
});

t.test('inputFrom of n elements: n·8 bytes, 1 round, from the owner to owner+1 only', async (t) => {
  const n = 15;
  const x = tensor([5, 3], 12);
  for (const owner of everyParty) {
    const m = await measure((p) => inputFrom(p, owner, p.index === owner ? x : null, x.shape));
    expectCost(t, m, `inputFrom owner ${owner}`, 1, [[0, owner, next(owner), n * E]]);
  }
});
