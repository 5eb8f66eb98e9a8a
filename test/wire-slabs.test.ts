/**
 * WireSlabs: a slab is written again only once every byte handed over up to
 * its end has left the connection's queue, never earlier.
 */
import t from 'tap';
import { WireSlabs, wireSlabStats } from '../daemon/network/wire-slabs.ts';

/** A connection queue that the test drains by hand. */
function fakeQueue() {
  const q = { pending: 0, pendingBytes: () => q.pending };
  return q;
}

/** Hands a slab over as the Noise stream does: recorded, then queued on the connection. */
function send(pool: WireSlabs, q: { pending: number }, buf: Uint8Array, bytes: number): void {
  pool.hand(buf, bytes);
  q.pending += bytes;
}

t.test('a slab comes back only after all bytes up to its end have left', async (t) => {
  const q = fakeQueue();
  const pool = new WireSlabs(1000, 4, q);
  const a = pool.take(), b = pool.take();
  t.not(a, b, 'two takes, two slabs');
  send(pool, q, a, 900);
  send(pool, q, b, 1000);
  pool.reclaim();
  const c = pool.take();
  t.ok(c !== a && c !== b, 'nothing has left: both stay in flight');
  send(pool, q, c, 10);

  q.pending -= 899; // one byte of a still queued
  pool.reclaim();
  t.ok(![a, b, c].includes(pool.take()), 'a is not free while its last byte waits');

  q.pending -= 1; // a has left; b has not
  pool.reclaim();
  t.equal(pool.take(), a, 'a is written again once its last byte has left');
  t.equal(pool.size, 4, 'the pool made four slabs, its limit');
});

t.test('beyond its limit the pool hands out one-off buffers and never takes them back', async (t) => {
  const q = fakeQueue();
  const pool = new WireSlabs(64, 1, q);
  const before = { ...wireSlabStats };
  const a = pool.take();
  send(pool, q, a, 64);
  const extra = pool.take();
  t.not(extra, a, 'the only slab is in flight: a one-off instead');
  t.equal(extra.byteLength, 64);
  send(pool, q, extra, 64);
  q.pending = 0;
  pool.reclaim();
  t.equal(pool.take(), a, 'the slab comes back');
  t.not(pool.take(), extra, 'the one-off does not');
  t.same({ made: wireSlabStats.made - before.made, reused: wireSlabStats.reused - before.reused, oneOff: wireSlabStats.oneOff - before.oneOff }, { made: 1, reused: 1, oneOff: 2 }, 'the process-wide counts');
});

t.test('bytes queued before the pool began, or never recorded, only hold slabs back', async (t) => {
  const q = fakeQueue();
  q.pending = 500; // e.g. the end of the handshake, still in the socket's buffer
  const pool = new WireSlabs(100, 2, q);
  const a = pool.take();
  send(pool, q, a, 100);
  q.pending -= 100; // 100 bytes left: the handshake's, not a's
  pool.reclaim();
  t.not(pool.take(), a, 'a stays in flight');
  q.pending = 0;
  pool.reclaim();
  t.equal(pool.take(), a, 'a comes back once everything queued has left');
});
