/**
 * The in-memory transport (protocols/memory-transport.ts) against the Transport
 * contract of protocols/transport.ts: ordering, counters, timeouts, abort,
 * close, argument checks and buffer ownership.
 */
import t from 'tap';
import { createMemoryTransports } from '../protocols/memory-transport.ts';
import { AbortedError, PartyError, QmpcError, SessionClosedError, TimeoutError } from '../protocols/errors.ts';
import type { PartyIndex, Transport } from '../protocols/transport.ts';
import { rejection } from './helpers/async.ts';

/** Resolves to 'pending' if `p` has not settled after a few macrotask turns. */
async function settled(p: Promise<unknown>): Promise<'pending' | 'resolved' | 'rejected'> {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  p.then(() => (state = 'resolved'), () => (state = 'rejected'));
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  return state;
}

/** A message tagged with its route and sequence number. */
function tagged(from: number, to: number, seq: number, len = 4 + (seq % 5)): Uint8Array {
  const m = new Uint8Array(len);
  m[0] = from;
  m[1] = to;
  m[2] = seq & 0xff;
  m[3] = seq >> 8;
  for (let i = 4; i < len; i++) m[i] = (seq * 31 + i) & 0xff;
  return m;
}

function closeAll(ts: readonly Transport[]): void {
  for (const x of ts) x.close('test done');
}

t.test('messages between one pair arrive in send order, byte for byte', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 2000 });
  t.teardown(() => closeAll(ts));
  const sent: Uint8Array[] = [];
  for (let s = 0; s < 200; s++) {
    const m = tagged(0, 1, s);
    sent.push(m.slice());
    ts[0].send(1, m);
  }
  for (let s = 0; s < 200; s++) t.same(await ts[1].recv(0), sent[s], `message ${s}`, { diagnostic: false });
  t.equal(ts[1].stats.messagesReceived, 200);
});

t.test('a receive issued before the send resolves when the message arrives', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 2000 });
  t.teardown(() => closeAll(ts));
  const p = ts[2].recv(1);
  t.equal(await settled(p), 'pending', 'nothing sent yet');
  ts[1].send(2, Uint8Array.of(42, 43));
  t.same(await p, Uint8Array.of(42, 43));
});

t.test('pairs are independent: a pending receive from one peer does not block another', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 2000 });
  t.teardown(() => closeAll(ts));
  const from0 = ts[1].recv(0);
  const from2 = ts[1].recv(2);
  ts[2].send(1, Uint8Array.of(2));
  t.same(await from2, Uint8Array.of(2), 'party 2 message delivered while the receive from party 0 waits');
  t.equal(await settled(from0), 'pending', 'receive from party 0 still waiting');
  ts[0].send(1, Uint8Array.of(0));
  t.same(await from0, Uint8Array.of(0));
});

t.test('all six directions at once, interleaved, keep per-pair order', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 2000 });
  t.teardown(() => closeAll(ts));
  const N = 60;
  const routes: [PartyIndex, PartyIndex][] = [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]];
  // Receivers start first and consume concurrently; senders interleave across routes.
  const receivers = routes.map(async ([from, to]) => {
    const got: Uint8Array[] = [];
    for (let s = 0; s < N; s++) got.push(await ts[to].recv(from));
    return got;
  });
  for (let s = 0; s < N; s++) {
    for (const [from, to] of s % 2 ? routes : [...routes].reverse()) ts[from].send(to, tagged(from, to, s));
    if (s % 7 === 0) await new Promise((r) => setImmediate(r));
  }
  const results = await Promise.all(receivers);
  routes.forEach(([from, to], r) => {
    const want = Array.from({ length: N }, (_, s) => tagged(from, to, s));
    t.same(results[r], want, `route ${from}→${to}`);
  });
  for (const x of ts) {
    t.equal(x.stats.messagesSent, 2 * N, `party ${x.party} sent`);
    t.equal(x.stats.messagesReceived, 2 * N, `party ${x.party} received`);
  }
});

t.test('byte and message counters', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 2000 });
  t.teardown(() => closeAll(ts));
  for (const x of ts) t.same(x.stats, { bytesSent: 0, messagesSent: 0, bytesReceived: 0, messagesReceived: 0 });
  ts[0].send(1, new Uint8Array(5));
  ts[0].send(1, new Uint8Array(0)); // empty messages count as messages
  ts[0].send(2, new Uint8Array(17));
  ts[2].send(0, new Uint8Array(1000));
  t.same(ts[0].stats, { bytesSent: 22, messagesSent: 3, bytesReceived: 0, messagesReceived: 0 });
  t.same(ts[2].stats, { bytesSent: 1000, messagesSent: 1, bytesReceived: 0, messagesReceived: 0 });
  t.same(ts[1].stats, { bytesSent: 0, messagesSent: 0, bytesReceived: 0, messagesReceived: 0 }, 'received counts only move on recv');
  t.equal((await ts[1].recv(0)).byteLength, 5);
  t.same(ts[1].stats, { bytesSent: 0, messagesSent: 0, bytesReceived: 5, messagesReceived: 1 });
  t.equal((await ts[1].recv(0)).byteLength, 0);
  t.same(ts[1].stats, { bytesSent: 0, messagesSent: 0, bytesReceived: 5, messagesReceived: 2 });
  const [a, b] = await Promise.all([ts[2].recv(0), ts[0].recv(2)]);
  t.equal(a.byteLength, 17);
  t.equal(b.byteLength, 1000);
  t.same(ts[2].stats, { bytesSent: 1000, messagesSent: 1, bytesReceived: 17, messagesReceived: 1 });
  t.same(ts[0].stats, { bytesSent: 22, messagesSent: 3, bytesReceived: 1000, messagesReceived: 1 });
  const total = (k: 'bytesSent' | 'bytesReceived') => ts.reduce((s, x) => s + x.stats[k], 0);
  t.equal(total('bytesSent'), total('bytesReceived'), 'every sent byte was received');
});

t.test('a receive times out with TimeoutError naming both parties', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 40 });
  t.teardown(() => closeAll(ts));
  let t0 = performance.now();
  const e = await rejection(ts[0].recv(1));
  const waited = performance.now() - t0;
  t.type(e, TimeoutError);
  t.type(e, QmpcError);
  t.match(e, { code: 'ERR_TIMEOUT', name: 'TimeoutError', message: /party 0: no message from party 1 within 40 ms/ });
  t.ok(waited >= 35 && waited < 2000, `default timeout honoured (${waited.toFixed(1)} ms)`);

  // A per-call timeout overrides the transport default (here 10 s, which would outlast the test's patience).
  const slow = createMemoryTransports({ timeoutMs: 10_000 });
  t.teardown(() => closeAll(slow));
  t0 = performance.now();
  const e2 = await rejection(slow[2].recv(0, { timeoutMs: 15 }));
  const waited2 = performance.now() - t0;
  t.match(e2, { code: 'ERR_TIMEOUT', message: /party 2: no message from party 0 within 15 ms/ }, 'per-call timeout overrides the default');
  t.ok(waited2 >= 10 && waited2 < 5000, `per-call timeout honoured (${waited2.toFixed(1)} ms)`);

  // The timed-out wait is gone: a late message is neither lost nor blocked by a stale waiter.
  ts[1].send(0, Uint8Array.of(7));
  t.same(await ts[0].recv(1), Uint8Array.of(7), 'a message sent after the timeout reaches the next receive');
  t.equal(ts[0].stats.messagesReceived, 1, 'the timed-out receive counted nothing');
});

t.test('the transport refuses a non-positive default timeout', async (t) => {
  for (const timeoutMs of [0, -5, Number.NaN]) {
    t.throws(() => createMemoryTransports({ timeoutMs }), RangeError, `timeoutMs ${timeoutMs}`);
  }
});

t.test('an AbortSignal ends a receive with AbortedError', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 5000 });
  t.teardown(() => closeAll(ts));

  const pre = new AbortController();
  const why = new Error('user cancelled');
  pre.abort(why);
  const e1 = await rejection(ts[1].recv(2, { signal: pre.signal }));
  t.type(e1, AbortedError);
  t.match(e1, { code: 'ERR_ABORTED', message: /receive from party 2 aborted/ });
  t.equal((e1 as Error).cause, why, 'the abort reason is the cause');

  const ac = new AbortController();
  const t0 = performance.now();
  const p = ts[1].recv(0, { signal: ac.signal });
  setTimeout(() => ac.abort('stop'), 10);
  const e2 = await rejection(p);
  t.type(e2, AbortedError);
  t.match(e2, { code: 'ERR_ABORTED', message: /receive from party 0 aborted/, cause: 'stop' });
  t.ok(performance.now() - t0 < 1000, 'aborted long before the 5 s timeout');

  ts[0].send(1, Uint8Array.of(1, 2, 3));
  t.same(await ts[1].recv(0), Uint8Array.of(1, 2, 3), 'a message after the abort reaches the next receive');

  // A signal that fires after its receive resolved has no effect.
  const late = new AbortController();
  const q = ts[2].recv(0, { signal: late.signal });
  ts[0].send(2, Uint8Array.of(9));
  t.same(await q, Uint8Array.of(9));
  late.abort();
  ts[0].send(2, Uint8Array.of(10));
  t.same(await ts[2].recv(0), Uint8Array.of(10));
});

t.test('close: the closing party fails its own pending receives at once', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 5000 });
  t.teardown(() => closeAll(ts));
  const from0 = ts[1].recv(0), from2 = ts[1].recv(2);
  const t0 = performance.now();
  ts[1].close('shutting down');
  for (const [p, from] of [[from0, 0], [from2, 2]] as const) {
    const e = await rejection(p);
    t.type(e, SessionClosedError, `pending receive from party ${from}`);
    t.match(e, { code: 'ERR_SESSION_CLOSED', message: /session closed by party 1: shutting down/ });
  }
  t.ok(performance.now() - t0 < 1000, 'without waiting for the timeout');
  const later = await rejection(ts[1].recv(0));
  t.match(later, { code: 'ERR_SESSION_CLOSED', message: /receive on closed session \(party 1: shutting down\)/ }, 'later receives fail too');
});

t.test('close: the peer drains what was sent, then reads past the end of the session', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 5000 });
  t.teardown(() => closeAll(ts));
  const pending = ts[1].recv(0); // waiting when the close happens
  ts[0].send(2, Uint8Array.of(1));
  ts[0].send(2, Uint8Array.of(2));
  ts[0].close('done');
  ts[0].close('second close is ignored');
  t.same(await ts[2].recv(0), Uint8Array.of(1), 'first message sent before close');
  t.same(await ts[2].recv(0), Uint8Array.of(2), 'second message sent before close');
  for (let k = 0; k < 2; k++) {
    const e = await rejection(ts[2].recv(0));
    t.type(e, SessionClosedError, `read ${k + 1} past the end`);
    t.match(e, { code: 'ERR_SESSION_CLOSED', message: /party 0 closed the session: done/ });
  }
  const e = await rejection(pending);
  t.match(e, { code: 'ERR_SESSION_CLOSED', message: /party 0 closed the session: done/ }, "the peer's pending receive fails");
});

t.test('close: sending after close throws; sending to a closed peer is dropped', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 5000 });
  t.teardown(() => closeAll(ts));
  ts[2].close('bye');
  const before = { ...ts[2].stats };
  t.throws(() => ts[2].send(0, Uint8Array.of(1)), SessionClosedError);
  t.throws(() => ts[2].send(1, Uint8Array.of(1)), { code: 'ERR_SESSION_CLOSED', message: /send on closed session \(party 2: bye\)/ });
  t.same(ts[2].stats, before, 'a refused send is not counted');
  // Like a socket whose other end has gone: no error for the sender, nothing arrives.
  await new Promise((r) => setImmediate(r));
  t.doesNotThrow(() => ts[0].send(2, Uint8Array.of(5)));
  t.equal(ts[0].stats.messagesSent, 1);
});

t.test('party indices: self, out of range and non-integer targets are PartyErrors', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 2000 });
  t.teardown(() => closeAll(ts));
  const before = ts.map((x) => ({ ...x.stats }));
  for (const x of ts) {
    t.throws(() => x.send(x.party, Uint8Array.of(1)), { code: 'ERR_PARTY', message: new RegExp(`party ${x.party} cannot send to itself`) });
    const e = await rejection(x.recv(x.party));
    t.type(e, PartyError);
    t.match(e, { message: new RegExp(`party ${x.party} cannot receive from itself`) });
  }
  for (const bad of [3, -1, 1.5, Number.NaN, 255]) {
    const to = bad as PartyIndex;
    const e1 = (() => {
      try {
        ts[0].send(to, Uint8Array.of(1));
      } catch (e) {
        return e;
      }
      return null;
    })();
    t.type(e1, PartyError, `send to ${bad}`);
    t.match(e1, { code: 'ERR_PARTY', message: new RegExp(`send target must be 0, 1 or 2 .*got ${bad}`) });
    const e2 = await rejection(ts[0].recv(to));
    t.type(e2, PartyError, `recv from ${bad}`);
    t.match(e2, { code: 'ERR_PARTY', message: new RegExp(`receive source must be 0, 1 or 2 .*got ${bad}`) });
  }
  t.same(ts.map((x) => x.stats), before, 'refused calls move no counter');
});

t.test('a second concurrent receive from the same peer is refused; the first still works', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 2000 });
  t.teardown(() => closeAll(ts));
  const first = ts[0].recv(2);
  const e = await rejection(ts[0].recv(2));
  t.type(e, PartyError);
  t.match(e, { code: 'ERR_PARTY', message: /party 0 already has a pending receive from party 2/ });
  t.equal(await settled(first), 'pending', 'the refusal did not disturb the first receive');
  ts[2].send(0, Uint8Array.of(4));
  t.same(await first, Uint8Array.of(4));
  // Concurrent receives from different peers are fine, and once settled a new one is allowed.
  const a = ts[0].recv(1), b = ts[0].recv(2);
  ts[1].send(0, Uint8Array.of(11));
  ts[2].send(0, Uint8Array.of(22));
  t.same(await Promise.all([a, b]), [Uint8Array.of(11), Uint8Array.of(22)]);
});

t.test('the transport owns sent bytes: later writes to the buffer do not reach the receiver', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 2000 });
  t.teardown(() => closeAll(ts));
  const buf = Uint8Array.of(1, 2, 3, 4);
  ts[0].send(1, buf);
  buf.fill(0xee); // synchronously, before delivery
  const pending = ts[1].recv(0);
  buf.fill(0xdd);
  t.same(await pending, Uint8Array.of(1, 2, 3, 4));

  // A view into a larger buffer carries exactly the view's bytes and nothing around it.
  const big = Uint8Array.from({ length: 64 }, (_, i) => i);
  ts[1].send(2, big.subarray(8, 12));
  big.fill(0);
  const got = await ts[2].recv(1);
  t.same(got, Uint8Array.of(8, 9, 10, 11));
  t.equal(got.buffer.byteLength, 4, 'the receiver cannot reach the rest of the sender\'s buffer');
  t.equal(ts[1].stats.bytesSent, 4, 'only the view is counted');

  // And the receiver's copy is its own: writing to it does not affect a second receiver of the same source buffer.
  const src = Uint8Array.of(5, 6);
  ts[2].send(0, src);
  ts[2].send(1, src);
  const [r0, r1] = await Promise.all([ts[0].recv(2), ts[1].recv(2)]);
  r0[0] = 99;
  t.same(r1, Uint8Array.of(5, 6));
  t.same(src, Uint8Array.of(5, 6));
});

t.test('close: a party that closed does not read messages queued before its close', async (t) => {
  const ts = createMemoryTransports({ timeoutMs: 1000 });
  ts[0].send(1, new Uint8Array([1]));
  await new Promise((r) => setImmediate(r)); // delivered into party 1's queue
  ts[1].close('bye');
  const e = await rejection(ts[1].recv(0));
  t.ok(e instanceof SessionClosedError, 'SessionClosedError, not the queued message');
  for (const x of ts) x.close('done');
});
