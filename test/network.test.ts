/**
 * The daemon's network layer against real libp2p nodes on 127.0.0.1: the MPC
 * transport carries the engine end to end, keeps sessions apart, refuses
 * outsiders, fails sessions promptly when a party goes away, and survives
 * malformed and oversized frames from a committee peer. Codec and option
 * checks run without sockets.
 */
import tap from 'tap';
const t = tap;
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { createLibp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { PrivateKey, Stream } from '@libp2p/interface';
import { Party } from '../protocols/party.ts';
import { dealShares, fromPair, reveal } from '../protocols/arith.ts';
import { encode, decode } from '../protocols/fixed.ts';
import { mulFx } from '../protocols/truncation.ts';
import { SessionClosedError, TimeoutError, PartyError } from '../protocols/errors.ts';
import type { PartyIndex, Transport } from '../protocols/transport.ts';
import { silentLogger } from '../daemon/logger.ts';
import { ConfigError } from '../daemon/errors.ts';
import { createPartyNode, type PartyNode, type PartyNodeDeps } from '../daemon/network/node.ts';
import { createMpcNetwork, SessionIdError, type MpcNetwork } from '../daemon/network/mpc-transport.ts';
import { FrameDecoder, FrameError, encodeFrame, encodeHeader, encodeCloseReason, sessionKey, type Frame } from '../daemon/network/frames.ts';
import { FRAME_HEADER_BYTES, FRAME_KIND, MAX_CLOSE_REASON_BYTES, MAX_FRAME_BYTES, MPC_PROTOCOL } from '../daemon/network/constants.ts';
import { resolveNetworkOptions, type NetworkOptionsInput } from '../daemon/network/options.ts';

const log = silentLogger();
const PARTIES: PartyIndex[] = [0, 1, 2];

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

interface Cluster {
  nodes: PartyNode[];
  nets: MpcNetwork[];
  keys: PrivateKey[];
  refused: { peerId: string; reason: string; protocol: string | null }[];
  stop(): Promise<void>;
}

/** Three parties on loopback; the committee lists each one's address (dial by address). */
async function cluster(extra: NetworkOptionsInput = {}, { wait = true } = {}): Promise<Cluster> {
  const keys = await Promise.all(PARTIES.map(() => generateKeyPair('Ed25519')));
  const ports = await Promise.all(PARTIES.map(() => freePort()));
  const committee = PARTIES.map((i) => ({ index: i, peerId: peerIdFromPrivateKey(keys[i]).toString(), addrs: [`/ip4/127.0.0.1/tcp/${ports[i]}`] }));
  const refused: Cluster['refused'] = [];
  const nodes = await Promise.all(PARTIES.map((i) => createPartyNode(
    { listen: [`/ip4/127.0.0.1/tcp/${ports[i]}`], mdns: { enabled: false }, committee, redialMinMs: 50, redialMaxMs: 500, dialTimeoutMs: 3000, recvTimeoutMs: 10_000, ...extra },
    { logger: log, privateKey: keys[i], onRefused: (peerId, reason, protocol) => refused.push({ peerId, reason, protocol }) },
  )));
  const nets = await Promise.all(nodes.map((n) => createMpcNetwork(n, { logger: log })));
  if (wait) await Promise.all(nodes.map((n) => n.waitForCommittee({ timeoutMs: 10_000 })));
  return {
    nodes, nets, keys, refused,
    async stop() {
      await Promise.allSettled(nets.map((n) => n.close('test done')));
      await Promise.allSettled(nodes.map((n) => n.stop()));
    },
  };
}

function openAll(c: Cluster, sid: Uint8Array = randomBytes(16), timeoutMs?: number): Transport[] {
  return PARTIES.map((i) => c.nets[i].openSession(sid, i, { timeoutMs }));
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection, got a value');
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** mulFx of dealt shares over the given transports, revealed: what every party computes. */
async function mulOver(ts: Transport[], xs: number[], ys: number[]): Promise<Float64Array[]> {
  const X = dealShares(encode(xs)), Y = dealShares(encode(ys));
  return Promise.all(ts.map(async (tr, i) => {
    const p = await Party.setup(tr, { timeoutMs: 10_000 });
    const z = await mulFx(p, fromPair(X[i]), fromPair(Y[i]));
    return decode(await reveal(p, z));
  }));
}

function near(t: Pick<typeof tap, 'equal'>, got: Float64Array, want: number[], tol: number, msg: string): void {
  const bad = want.findIndex((w, k) => !(Math.abs(got[k] - w) <= tol));
  t.equal(bad, -1, bad < 0 ? msg : `${msg}: element ${bad} is ${got[bad]}, expected ${want[bad]}`);
}

// ------------------------------------------------------------------- codec

t.test('frame codec: round trip, including a payload split over many chunks', async (t) => {
  const sid = sessionKey(randomBytes(16));
  const payload = randomBytes(200_000);
  const f = encodeFrame(FRAME_KIND.data, sid, 7, payload);
  t.equal(f.byteLength, FRAME_HEADER_BYTES + payload.byteLength);
  const d = new FrameDecoder();
  const out: (Frame | FrameError)[] = [];
  for (let i = 0; i < f.byteLength; i += 997) out.push(...d.push(f.subarray(i, Math.min(f.byteLength, i + 997))));
  t.equal(out.length, 1);
  const fr = out[0] as Frame;
  t.equal(fr.kind, FRAME_KIND.data);
  t.equal(fr.session, sid);
  t.equal(fr.seq, 7);
  t.ok(Buffer.from(fr.payload).equals(payload), 'payload intact');
  t.equal(fr.payload.buffer.byteLength, payload.byteLength, 'the payload owns exactly its bytes');
  t.equal(d.bufferedBytes, 0);
  t.equal(d.end(), null, 'a clean end');

  // Several frames in one chunk, one of them a close with a reason.
  const two = Buffer.concat([encodeFrame(FRAME_KIND.data, sid, 0, Uint8Array.of(1)), encodeFrame(FRAME_KIND.close, sid, 1, encodeCloseReason('done'))]);
  const got = new FrameDecoder().push(two) as Frame[];
  t.same(got.map((x) => [x.kind, x.seq, Buffer.from(x.payload).toString()]), [[1, 0, '\x01'], [2, 1, 'done']]);
  // A long reason is cut at a character boundary.
  const r = encodeCloseReason('é'.repeat(500));
  t.ok(r.byteLength <= MAX_CLOSE_REASON_BYTES && new TextDecoder('utf-8', { fatal: true }).decode(r).length > 0);
  t.throws(() => encodeHeader(FRAME_KIND.data, sid, 0, MAX_FRAME_BYTES), { code: 'ERR_FRAME_TOO_LARGE' });
  t.throws(() => encodeHeader(FRAME_KIND.data, sid, -1, 0), { code: 'ERR_FRAME_ARGUMENT' });
  t.throws(() => sessionKey(new Uint8Array(15)), { code: 'ERR_FRAME_ARGUMENT' });
});

t.test('(f) an oversized length prefix is refused from its four bytes, nothing allocated', async (t) => {
  for (const len of [0xffffffff, MAX_FRAME_BYTES - 4 + 1, 2 ** 31]) {
    const d = new FrameDecoder();
    const before = process.memoryUsage().arrayBuffers;
    const pre = Buffer.alloc(4);
    pre.writeUInt32BE(len >>> 0);
    const out = d.push(pre);
    t.equal(out.length, 1);
    t.ok(out[0] instanceof FrameError && out[0].code === 'ERR_FRAME_TOO_LARGE' && out[0].fatal, `length ${len}: ERR_FRAME_TOO_LARGE, fatal`);
    t.match((out[0] as FrameError).message, /exceeds the limit/);
    t.equal(d.bufferedBytes, 0);
    t.same(d.push(randomBytes(1000)), [], 'nothing more is read from a failed stream');
    t.ok(process.memoryUsage().arrayBuffers - before < 1 << 20, 'no buffer of the announced size');
  }
  const short = Buffer.alloc(4);
  short.writeUInt32BE(3);
  t.equal((new FrameDecoder().push(short)[0] as FrameError).code, 'ERR_FRAME_TOO_SHORT');
});

t.test('(e) decoder fuzz: 3000 malformed frames, each rejected with a FrameError, never a throw', async (t) => {
  const sid = sessionKey(randomBytes(16));
  const good = () => encodeFrame(FRAME_KIND.data, sid, 0, randomBytes(1 + (Math.random() * 300) | 0));
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  type Case = { bytes: Uint8Array; want: string; end?: boolean };
  const makers: (() => Case)[] = [
    () => { const f = good(); f[4] = 2 + rnd(254); return { bytes: f, want: 'ERR_FRAME_VERSION' }; },
    () => { const f = good(); f[5] = [0, 3, 4, 0x7f, 0xff][rnd(5)]; return { bytes: f, want: 'ERR_FRAME_KIND' }; },
    () => { const f = good(); f[6 + rnd(2)] = 1 + rnd(255); return { bytes: f, want: 'ERR_FRAME_FLAGS' }; },
    () => { const f = good(); Buffer.from(f.buffer).writeUInt32BE(MAX_FRAME_BYTES + rnd(1e6), 0); return { bytes: f, want: 'ERR_FRAME_TOO_LARGE' }; },
    () => { const f = good(); Buffer.from(f.buffer).writeUInt32BE(rnd(FRAME_HEADER_BYTES - 4), 0); return { bytes: f, want: 'ERR_FRAME_TOO_SHORT' }; },
    () => { const f = good(); return { bytes: f.subarray(0, 1 + rnd(f.byteLength - 1)), want: 'ERR_FRAME_TRUNCATED', end: true }; },
    () => ({ bytes: encodeFrame(FRAME_KIND.close, sid, 0, Uint8Array.of(0xc3, 0x28, 0xff)), want: 'ERR_FRAME_CLOSE_REASON' }),
    () => ({ bytes: encodeFrame(FRAME_KIND.close, sid, 0, new Uint8Array(MAX_CLOSE_REASON_BYTES + 1 + rnd(100)).fill(0x61)), want: 'ERR_FRAME_CLOSE_REASON' }),
    () => { // random bytes whose first word is a length beyond the limit
      const b = randomBytes(8 + rnd(64));
      b[0] |= 0x10;
      return { bytes: b, want: 'ERR_FRAME_TOO_LARGE' };
    },
  ];
  const seen: Record<string, number> = {};
  let rejected = 0;
  const N = 3000;
  for (let i = 0; i < N; i++) {
    const c = makers[i % makers.length]();
    const d = new FrameDecoder();
    let out: (Frame | FrameError)[] = [];
    // Fed in random-sized pieces: a rejection must not depend on how TCP cut the bytes.
    for (let k = 0; k < c.bytes.byteLength;) {
      const n = 1 + rnd(40);
      out = out.concat(d.push(c.bytes.subarray(k, k + n)));
      k += n;
    }
    if (c.end) {
      const e = d.end();
      if (e) out.push(e);
    }
    const errs = out.filter((x): x is FrameError => x instanceof FrameError);
    if (errs.length === 1 && errs[0].code === c.want && out.length === 1) rejected++;
    else t.fail(`case ${i % makers.length}: expected one ${c.want}, got ${out.map((x) => (x instanceof FrameError ? x.code : 'frame')).join(',')}`);
    seen[c.want] = (seen[c.want] ?? 0) + 1;
    if (d.bufferedBytes > MAX_FRAME_BYTES) t.fail('decoder buffered beyond the frame limit');
  }
  t.equal(rejected, N, `all ${N} rejected with the expected code`);
  t.same(Object.keys(seen).sort(), ['ERR_FRAME_CLOSE_REASON', 'ERR_FRAME_FLAGS', 'ERR_FRAME_KIND', 'ERR_FRAME_TOO_LARGE', 'ERR_FRAME_TOO_SHORT', 'ERR_FRAME_TRUNCATED', 'ERR_FRAME_VERSION']);

  // A non-fatal rejection skips just that frame: the next one on the stream still decodes,
  // even when the skipped body arrives later in pieces.
  const bad = good();
  bad[5] = 9;
  const next = encodeFrame(FRAME_KIND.data, sid, 1, Uint8Array.of(42));
  const d = new FrameDecoder();
  const both = Buffer.concat([bad, next]);
  const out = [...d.push(both.subarray(0, 30)), ...d.push(both.subarray(30))];
  t.same(out.map((x) => (x instanceof FrameError ? x.code : (x as Frame).payload[0])), ['ERR_FRAME_KIND', 42]);
});

t.test('options: defaults, and errors that name the key', async (t) => {
  const k = await generateKeyPair('Ed25519');
  const ids = await Promise.all([0, 1, 2].map(async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()));
  const committee = [0, 1, 2].map((i) => ({ index: i as PartyIndex, peerId: ids[i] }));
  const o = resolveNetworkOptions({ committee });
  t.same(o.listen, ['/ip4/0.0.0.0/tcp/7400']);
  t.equal(o.maxFrameBytes, MAX_FRAME_BYTES);
  t.throws(() => resolveNetworkOptions({ committee: committee.slice(0, 2) }), { code: 'ERR_CONFIG', message: /network\.committee: expected exactly 3/ });
  t.throws(() => resolveNetworkOptions({ committee: [committee[0], committee[1], { ...committee[2], peerId: 'nope' }] }), { message: /network\.committee\[2\]\.peerId/ });
  t.throws(() => resolveNetworkOptions({ committee, listen: ['not an addr'] }), { message: /network\.listen\[0\]/ });
  t.throws(() => resolveNetworkOptions({ committee, bootstrap: ['/ip4/1.2.3.4/tcp/1'] }), { message: /network\.bootstrap\[0\]: expected a multiaddr ending in \/p2p/ });
  t.throws(() => resolveNetworkOptions({ committee, redialMinMs: 10, redialMaxMs: 5 }), { message: /network\.redialMaxMs/ });
  t.throws(() => resolveNetworkOptions({ committee, maxFrameBytes: 10 }), { message: /network\.maxFrameBytes/ });
  await t.rejects(createPartyNode({ committee, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: { enabled: false } }, { logger: log, privateKey: k }), ConfigError, 'a node outside its own committee is a config error');
});

// ------------------------------------------------------------------- three nodes

t.test('three libp2p parties', async (t) => {
  const c = await cluster();
  t.teardown(() => c.stop());

  t.test('committee view: everyone connected, events and indices', async (t) => {
    for (const n of c.nodes) t.same(n.connectedParties(), PARTIES.filter((i) => i !== n.index));
  });

  t.test('(a) mulFx of dealt shares, end to end over libp2p, matches plaintext', async (t) => {
    const xs = [1.5, -2.25, 3, 0.125, -7.5, 100], ys = [2, 4, -0.5, 8, -1.25, 0.0625];
    const res = await mulOver(openAll(c), xs, ys);
    for (const r of res) near(t, r, xs.map((x, i) => x * ys[i]), 2 ** -14, 'product');
    const st = c.nets[0].stats();
    t.ok(st.framesSent > 0 && st.framesReceived > 0);
    t.same(st.frameErrors, {});
  });

  t.test('(b) two concurrent sessions on the same nodes do not mix', async (t) => {
    const a = openAll(c), b = openAll(c);
    const xa = [1, 2, 3, 4], ya = [5, 6, 7, 8], xb = [-1, 0.5, 9, 10], yb = [3, 3, 3, -3];
    const [ra, rb] = await Promise.all([mulOver(a, xa, ya), mulOver(b, xb, yb)]);
    for (const r of ra) near(t, r, xa.map((x, i) => x * ya[i]), 2 ** -14, 'session a');
    for (const r of rb) near(t, r, xb.map((x, i) => x * yb[i]), 2 ** -14, 'session b');
    // Interleaved tagged messages: each session sees only its own, in order.
    for (let k = 0; k < 50; k++) {
      a[0].send(1, Uint8Array.of(0xa, k));
      b[0].send(1, Uint8Array.of(0xb, k));
    }
    for (let k = 0; k < 50; k++) {
      t.same(await a[1].recv(0), Uint8Array.of(0xa, k), '', { diagnostic: false });
      t.same(await b[1].recv(0), Uint8Array.of(0xb, k), '', { diagnostic: false });
    }
    for (const x of [...a, ...b]) x.close('done');
  });

  t.test('a 64 MiB message arrives intact; stats count payload bytes', async (t) => {
    const [s0, s1, s2] = openAll(c);
    const big = randomBytes(64 * 1024 * 1024 - 64);
    const want = Buffer.from(big.subarray(0, 4096)).toString('hex') + big.byteLength;
    const t0 = performance.now();
    s0.send(1, big);
    big.fill(0); // the transport owns what was sent
    const got = await s1.recv(0, { timeoutMs: 20_000 });
    const ms = performance.now() - t0;
    t.equal(Buffer.from(got.subarray(0, 4096)).toString('hex') + got.byteLength, want);
    t.equal(s0.stats.bytesSent, 64 * 1024 * 1024 - 64);
    t.equal(s1.stats.bytesReceived, 64 * 1024 * 1024 - 64);
    t.comment(`64 MiB in ${ms.toFixed(0)} ms (${(64 / (ms / 1000)).toFixed(0)} MiB/s, one process)`);
    t.throws(() => s0.send(1, new Uint8Array(MAX_FRAME_BYTES)), { code: 'ERR_FRAME_TOO_LARGE' });
    for (const x of [s0, s1, s2]) x.close('done');
  });

  t.test('close reaches the peer after what was sent; messages before open are held', async (t) => {
    const sid = randomBytes(16);
    const s0 = c.nets[0].openSession(sid, 0);
    s0.send(1, Uint8Array.of(1));
    s0.send(1, Uint8Array.of(2));
    s0.close('finished early');
    t.throws(() => s0.send(1, Uint8Array.of(3)), SessionClosedError);
    await until(() => c.nets[1].stats().early.sessions > 0, 5000, 'the frames to be held');
    await new Promise((r) => setTimeout(r, 50));
    const s1 = c.nets[1].openSession(sid, 1); // opened after everything arrived
    t.same(await s1.recv(0), Uint8Array.of(1));
    t.same(await s1.recv(0), Uint8Array.of(2));
    const e = await rejection(s1.recv(0));
    t.ok(e instanceof SessionClosedError, 'then SessionClosedError');
    t.match((e as Error).message, /party 0 closed the session: finished early/);
    s1.close();
    t.throws(() => c.nets[0].openSession(sid, 0), SessionIdError, 'a used id is not reopened');
    t.throws(() => c.nets[0].openSession(randomBytes(15), 0), SessionIdError);
    t.throws(() => c.nets[0].openSession(randomBytes(16), 1), PartyError, 'the node is party 0');
    const x = c.nets[2].openSession(randomBytes(16), 2, { timeoutMs: 100 });
    t.ok((await rejection(x.recv(0))) instanceof TimeoutError, 'receives time out');
    x.close();
  });

  t.test('(c) a node outside the committee is refused on /qmpc/mpc/1', async (t) => {
    const intruder = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] });
    t.teardown(() => intruder.stop());
    const before = c.nodes[1].stats().refused;
    const target = c.nodes[1].getMultiaddrs()[0];
    const conn = await intruder.dial(target);
    t.equal(conn.status, 'open', 'the connection itself is allowed (clients use /qmpc/job/1)');
    let stream: Stream | null = null;
    try {
      stream = await conn.newStream(MPC_PROTOCOL);
    } catch {
      // refused during negotiation is fine too
    }
    if (stream) {
      const s = stream;
      await until(() => s.status !== 'open', 5000, 'the stream to be reset');
      t.ok(['reset', 'aborted', 'closed'].includes(s.status), `stream ended (${s.status})`);
      t.throws(() => s.send(encodeFrame(FRAME_KIND.data, sessionKey(randomBytes(16)), 0, Uint8Array.of(1))), 'nothing can be written');
    }
    await until(() => c.refused.length > 0, 5000, 'onRefused');
    const intruderId = intruder.peerId.toString();
    t.ok(c.refused.some((r) => r.peerId === intruderId && r.reason === 'not_in_committee' && r.protocol === MPC_PROTOCOL), 'onRefused names the peer, the reason and the protocol');
    t.equal(c.nodes[1].stats().refused, before + 1, 'counted');
    t.same(c.nodes[1].connectedParties(), [0, 2], 'the committee is unaffected');
  });

  t.test('(e) 3000 malformed frames on a live stream from a committee peer are counted, then sessions still work', async (t) => {
    const raw = await c.nodes[0].libp2p.dialProtocol(c.nodes[1].peerId, MPC_PROTOCOL);
    const before = c.nets[1].stats();
    const sid = sessionKey(randomBytes(16));
    const kinds: ((f: Uint8Array) => void)[] = [
      (f) => { f[4] = 7; }, // version
      (f) => { f[5] = 0x55; }, // kind
      (f) => { f[7] = 1; }, // flags
    ];
    const N = 3000;
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < N; i++) {
      const f = i % 4 === 3
        ? encodeFrame(FRAME_KIND.close, sid, 0, Uint8Array.of(0xff, 0xfe)) // bad UTF-8 reason
        : encodeFrame(FRAME_KIND.data, sid, i, randomBytes(i % 50));
      if (i % 4 !== 3) kinds[i % 3](f);
      chunks.push(f);
    }
    raw.send(Buffer.concat(chunks));
    const counted = () => {
      const e = c.nets[1].stats().frameErrors;
      return (e.ERR_FRAME_VERSION ?? 0) + (e.ERR_FRAME_KIND ?? 0) + (e.ERR_FRAME_FLAGS ?? 0) + (e.ERR_FRAME_CLOSE_REASON ?? 0)
        - ((before.frameErrors.ERR_FRAME_VERSION ?? 0) + (before.frameErrors.ERR_FRAME_KIND ?? 0) + (before.frameErrors.ERR_FRAME_FLAGS ?? 0) + (before.frameErrors.ERR_FRAME_CLOSE_REASON ?? 0));
    };
    await until(() => counted() === N, 10_000, 'all frames to be rejected');
    t.equal(counted(), N, `${N} rejected and counted`);
    t.equal(c.nets[1].stats().early.sessions, before.early.sessions, 'none of them was held as a session');
    t.equal(raw.status, 'open', 'non-fatal errors keep the stream');
    // (f) over the wire: an oversized prefix ends the stream without allocating the announced size.
    const mem = process.memoryUsage().arrayBuffers;
    const pre = Buffer.alloc(8);
    pre.writeUInt32BE(0xfffffff0);
    raw.send(pre);
    await until(() => raw.status !== 'open', 5000, 'the stream to be reset');
    t.equal((c.nets[1].stats().frameErrors.ERR_FRAME_TOO_LARGE ?? 0) - (before.frameErrors.ERR_FRAME_TOO_LARGE ?? 0), 1, 'oversized prefix counted');
    t.ok(process.memoryUsage().arrayBuffers - mem < 64 << 20, 'no 4 GiB (or 64 MiB) allocation');
    // The parties' own streams were not disturbed: a session still computes.
    const xs = [2, 3], ys = [4, -5];
    for (const r of await mulOver(openAll(c), xs, ys)) near(t, r, [8, -15], 2 ** -14, 'product after the fuzz');
  });

  t.test('a sequence gap from a peer fails that session towards it', async (t) => {
    const raw = await c.nodes[2].libp2p.dialProtocol(c.nodes[0].peerId, MPC_PROTOCOL);
    const sid = randomBytes(16);
    const s0 = c.nets[0].openSession(sid, 0);
    raw.send(encodeFrame(FRAME_KIND.data, sessionKey(sid), 5, Uint8Array.of(1)));
    const e = await rejection(s0.recv(2, { timeoutMs: 5000 }));
    t.ok(e instanceof SessionClosedError);
    t.match((e as Error).message, /message 5 from party 2 where 0 was due/);
    t.ok((c.nets[0].stats().frameErrors.ERR_FRAME_SEQUENCE ?? 0) >= 1);
    s0.close();
    raw.abort(new Error('test done'));
  });
});

t.test('early messages beyond the bound are refused, and the session says so', async (t) => {
  const c = await cluster({ maxEarlyBytes: 4096 });
  t.teardown(() => c.stop());
  const sid = randomBytes(16);
  const s0 = c.nets[0].openSession(sid, 0);
  s0.send(1, new Uint8Array(1000));
  s0.send(1, new Uint8Array(5000)); // over the bound: refused
  await until(() => c.nets[1].stats().dropped.earlyRefused > 0, 5000, 'the refusal');
  const s1 = c.nets[1].openSession(sid, 1);
  const e = await rejection(s1.recv(0));
  t.ok(e instanceof SessionClosedError);
  t.match((e as Error).message, /maxEarlyBytes/);
  t.equal(c.nets[1].stats().early.bytes, 0, 'nothing held any more');
  s0.close();
  s1.close();
});

t.test('too many sessions held before open: refused, and the session says so', async (t) => {
  const c = await cluster({ maxEarlySessions: 2 });
  t.teardown(() => c.stop());
  const ids = [randomBytes(16), randomBytes(16), randomBytes(16)];
  const senders = ids.map((id) => c.nets[0].openSession(id, 0));
  for (const s of senders) s.send(1, Uint8Array.of(7));
  await until(() => c.nets[1].stats().dropped.earlyRefused > 0, 5000, 'the refusal');
  t.equal(c.nets[1].stats().early.sessions, 2);
  const late = c.nets[1].openSession(ids[2], 1);
  t.match((await rejection(late.recv(0))) as Error, { name: 'SessionClosedError', message: /maxEarlySessions/ });
  const ok = c.nets[1].openSession(ids[0], 1);
  t.same(await ok.recv(0), Uint8Array.of(7), 'held sessions still get their messages');
  for (const s of [...senders, late, ok]) s.close();
});

t.test('waitForCommittee names who is missing', async (t) => {
  const keys = await Promise.all(PARTIES.map(() => generateKeyPair('Ed25519')));
  const committee = PARTIES.map((i) => ({ index: i, peerId: peerIdFromPrivateKey(keys[i]).toString() }));
  const n = await createPartyNode({ listen: ['/ip4/127.0.0.1/tcp/0'], mdns: { enabled: false }, committee, redialMinMs: 50, redialMaxMs: 100 }, { logger: log, privateKey: keys[0] });
  t.teardown(() => n.stop());
  const e = await rejection(n.waitForCommittee({ timeoutMs: 200 }));
  t.ok(e instanceof TimeoutError);
  t.match((e as Error).message, new RegExp(`party 1 \\(${committee[1].peerId}\\), party 2`));
  t.same(n.connectedParties(), []);
});

t.test('(d) a party that stops mid-session: the others fail fast, not hang', async (t) => {
  const c = await cluster();
  t.teardown(() => c.stop());
  const ts = openAll(c, randomBytes(16), 8000);
  // A round in progress: parties 0 and 1 wait for party 2, which has already spoken once.
  ts[2].send(0, Uint8Array.of(1));
  t.same(await ts[0].recv(2), Uint8Array.of(1));
  const t0 = Date.now();
  const p0 = rejection(ts[0].recv(2));
  const p1 = rejection(ts[1].recv(2));
  await c.nodes[2].stop();
  const [e0, e1] = await Promise.all([p0, p1]);
  const ms = Date.now() - t0;
  for (const e of [e0, e1]) t.ok(e instanceof SessionClosedError || e instanceof TimeoutError, `failed with ${(e as Error).name}: ${(e as Error).message}`);
  t.ok(e0 instanceof SessionClosedError && /party 2/.test((e0 as Error).message), 'party 0 learns it was party 2');
  t.ok(ms < 8000, `within the receive timeout (${ms} ms)`);
  // Later receives fail too, and the remaining pair still talks.
  t.ok((await rejection(ts[0].recv(2))) instanceof SessionClosedError);
  ts[0].send(1, Uint8Array.of(9));
  t.same(await ts[1].recv(0), Uint8Array.of(9));
  await until(() => c.nodes[0].connectedParties().length === 1, 5000, 'the disconnect');
  t.same(c.nodes[0].connectedParties(), [1]);
  for (const x of ts) x.close();
});

t.test('a peer that stops reading: the stream is aborted after writeStallTimeoutMs, the session fails', async (t) => {
  const c = await cluster({ writeStallTimeoutMs: 500 });
  t.teardown(() => c.stop());
  const [s0, s1, s2] = openAll(c, randomBytes(16), 10_000);
  s0.send(1, Uint8Array.of(1));
  t.same(await s1.recv(0), Uint8Array.of(1), 'stream established');
  const inbound = c.nodes[1].libp2p.getConnections(c.nodes[0].peerId).flatMap((x) => x.streams).find((x) => x.protocol === MPC_PROTOCOL && x.direction === 'inbound');
  t.ok(inbound, 'party 1 holds an inbound MPC stream from party 0');
  inbound!.pause(); // no more window updates: party 0's writes stall
  const t0 = Date.now();
  s0.send(1, new Uint8Array(32 * 1024 * 1024));
  const e = await rejection(s0.recv(1));
  t.ok(e instanceof SessionClosedError, 'the sender\'s session fails towards the stalled peer');
  t.match((e as Error).message, /accepted no MPC bytes/);
  t.ok(Date.now() - t0 < 5000, `promptly (${Date.now() - t0} ms)`);
  t.ok((await rejection(s1.recv(0))) instanceof SessionClosedError, 'and the receiver\'s too');
  // A new session opens a fresh stream.
  for (const r of await mulOver(openAll(c), [2], [2])) near(t, r, [4], 2 ** -14, 'product after the stall');
  for (const x of [s0, s1, s2]) x.close();
});

t.test('refuseNonCommittee gates outsiders at the connection', async (t) => {
  const c = await cluster({ refuseNonCommittee: true });
  t.teardown(() => c.stop());
  const intruder = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] });
  t.teardown(() => intruder.stop());
  let open = false;
  try {
    const conn = await intruder.dial(c.nodes[0].getMultiaddrs()[0], { signal: AbortSignal.timeout(5000) });
    await until(() => conn.status !== 'open', 3000, 'the connection to be closed');
  } catch {
    // denied during the upgrade
  }
  open = intruder.getConnections().some((x) => x.status === 'open');
  t.notOk(open, 'no connection survives');
  await until(() => c.refused.length > 0, 5000, 'onRefused');
  t.equal(c.refused[0].protocol, null, 'refused at connection level');
  // The committee itself still computes.
  for (const r of await mulOver(openAll(c), [3], [3])) near(t, r, [9], 2 ** -14, 'product');
});

t.test('redial: a party that restarts is reconnected and new sessions work', async (t) => {
  const c = await cluster();
  t.teardown(() => c.stop());
  const addr = c.nodes[2].getMultiaddrs()[0].toString();
  const committee = c.nodes[2].options.committee;
  await c.nets[2].close();
  await c.nodes[2].stop();
  await until(() => c.nodes[0].connectedParties().length === 1, 5000, 'the disconnect');
  const n2 = await createPartyNode({ ...c.nodes[2].options, listen: [addr.replace(/\/p2p\/.*/, '')], committee }, { logger: log, privateKey: c.keys[2] });
  c.nodes[2] = n2;
  c.nets[2] = await createMpcNetwork(n2, { logger: log });
  await Promise.all(c.nodes.map((n) => n.waitForCommittee({ timeoutMs: 10_000 })));
  for (const r of await mulOver(openAll(c), [1.5], [-2])) near(t, r, [-3], 2 ** -14, 'product after the restart');
});

/** Whether a multicast datagram sent on this host comes back to a local socket. */
async function multicastWorks(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket({ type: 'udp4', reuseAddr: true });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      try {
        s.close();
      } catch { /* already closed */ }
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1000);
    s.on('error', () => done(false));
    s.on('message', (m) => {
      if (m.toString() === 'qmpc-probe') done(true);
    });
    s.bind(0, () => {
      try {
        s.addMembership('224.0.0.251');
        s.setMulticastLoopback(true);
        s.send('qmpc-probe', s.address().port, '224.0.0.251');
      } catch {
        done(false);
      }
    });
  });
}

const multicast = await multicastWorks();
t.test('mDNS discovery on this host (no addresses in the committee)', {
  skip: multicast ? false : 'multicast datagrams do not loop back on this host (no multicast route or interface), so mDNS cannot work here',
}, async (t) => {
  const keys = await Promise.all(PARTIES.map(() => generateKeyPair('Ed25519')));
  const committee = PARTIES.map((i) => ({ index: i, peerId: peerIdFromPrivateKey(keys[i]).toString() }));
  const tag = `qmpc-test-${randomBytes(4).toString('hex')}`;
  const deps = (i: number): PartyNodeDeps => ({ logger: log, privateKey: keys[i] });
  const nodes = await Promise.all(PARTIES.map((i) => createPartyNode({ listen: ['/ip4/0.0.0.0/tcp/0'], mdns: { enabled: true, serviceTag: tag, intervalMs: 500 }, committee, redialMinMs: 100, redialMaxMs: 1000 }, deps(i))));
  t.teardown(() => Promise.allSettled(nodes.map((n) => n.stop())));
  try {
    await Promise.all(nodes.map((n) => n.waitForCommittee({ timeoutMs: 15_000 })));
  } catch (e) {
    t.fail(`committee not found by mDNS: ${(e as Error).message}`);
    return;
  }
  const nets = await Promise.all(nodes.map((n) => createMpcNetwork(n, { logger: log })));
  t.teardown(() => Promise.allSettled(nets.map((n) => n.close())));
  const sid = randomBytes(16);
  const ts = PARTIES.map((i) => nets[i].openSession(sid, i));
  for (const r of await mulOver(ts, [0.5], [0.5])) near(t, r, [0.25], 2 ** -14, 'product over mDNS-found peers');
});

