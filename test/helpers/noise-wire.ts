/**
 * Wire-level checks of the party node's Noise channel against a stock libp2p
 * peer, shared by the libsodium and the node:crypto-fallback test files.
 */
import type { Test } from 'tap';
import { createServer, connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { createLibp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import type { Stream } from '@libp2p/interface';
import { silentLogger } from '../../daemon/logger.ts';
import { createPartyNode, type PartyNode } from '../../daemon/network/node.ts';
import { capFrameBytes } from '../../daemon/network/yamux-frames.ts';
import { wireSlabStats } from '../../daemon/network/wire-slabs.ts';
import type { PartyIndex } from '../../protocols/transport.ts';

interface Relay {
  port: number;
  /** Bytes the dialer sent, and bytes the party sent back. */
  up: Buffer[];
  down: Buffer[];
  close(): Promise<void>;
}

/** A TCP relay that records what crosses it in each direction; with flipUpAt, it flips one bit of the dialer's byte at that offset. */
async function recordingRelay(targetPort: number, flipUpAt = -1): Promise<Relay> {
  const up: Buffer[] = [], down: Buffer[] = [];
  const sockets = new Set<Socket>();
  let upBytes = 0;
  const srv = createServer((client) => {
    const server = connect(targetPort, '127.0.0.1');
    for (const s of [client, server]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => { client.destroy(); server.destroy(); });
    }
    client.on('data', (d) => {
      if (flipUpAt >= upBytes && flipUpAt < upBytes + d.length) d[flipUpAt - upBytes] ^= 0x10;
      upBytes += d.length;
      up.push(d);
      server.write(d);
    });
    server.on('data', (d) => { down.push(d); client.write(d); });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as { port: number }).port, up, down,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); srv.close(() => r()); }),
  };
}

/** Everything a stream delivers until it has `n` bytes; rejects when the stream closes first or `ms` pass. */
function readBytes(s: Stream, n: number, ms: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Uint8Array[] = [];
    let have = 0;
    const timer = setTimeout(() => reject(new Error(`${have} of ${n} bytes after ${ms} ms`)), ms);
    s.addEventListener('close', (e) => {
      clearTimeout(timer);
      reject(new Error(`stream closed after ${have} of ${n} bytes${e.error ? `: ${e.error.message}` : ''}`));
    });
    s.addEventListener('message', (e) => {
      for (const b of e.data instanceof Uint8Array ? [e.data] : e.data) got.push(Uint8Array.prototype.slice.call(b));
      have += e.data.byteLength;
      if (have >= n) {
        clearTimeout(timer);
        resolve(Buffer.concat(got));
      }
    });
  });
}

/** A party node that echoes whatever arrives on /qmpc-test/echo/1. */
async function echoParty(t: Test): Promise<PartyNode> {
  const keys = await Promise.all([0, 1, 2].map(() => generateKeyPair('Ed25519')));
  const committee = ([0, 1, 2] as PartyIndex[]).map((i) => ({ index: i, peerId: peerIdFromPrivateKey(keys[i]).toString() }));
  const party = await createPartyNode({ listen: ['/ip4/127.0.0.1/tcp/0'], mdns: { enabled: false }, committee }, { logger: silentLogger(), privateKey: keys[0] });
  t.teardown(() => party.stop());
  await party.libp2p.handle('/qmpc-test/echo/1', (stream: Stream) => {
    stream.addEventListener('message', (e) => stream.send(e.data));
  });
  return party;
}

/** A stream from a new stock libp2p peer (stock Noise and Yamux) to the party's echo protocol, through a recording relay. */
async function stockStream(t: Test, party: PartyNode, flipUpAt = -1): Promise<{ relay: Relay; stream: Stream }> {
  const port = Number(party.getMultiaddrs()[0].toString().match(/\/tcp\/(\d+)/)![1]);
  const relay = await recordingRelay(port, flipUpAt);
  t.teardown(() => relay.close());
  const stock = await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] });
  t.teardown(() => stock.stop());
  const conn = await stock.dial(multiaddr(`/ip4/127.0.0.1/tcp/${relay.port}/p2p/${party.peerId}`), { signal: AbortSignal.timeout(10_000) });
  const stream = await conn.newStream('/qmpc-test/echo/1', { signal: AbortSignal.timeout(10_000) });
  return { relay, stream };
}

/**
 * The party node (whatever cipher this process picked) echoes 3 MiB for a
 * stock libp2p peer: standard Noise both ways, and no plaintext on the wire.
 */
export async function checkStockInterop(t: Test): Promise<void> {
  const { relay, stream: s } = await stockStream(t, await echoParty(t));
  t.ok(capFrameBytes(s, 256 * 1024), 'a real Yamux stream has the field capFrameBytes caps');
  // 3 MiB: many full Noise messages each way, split across socket reads at every offset.
  const payload = randomBytes(3 * 1024 * 1024 + 12345);
  const echoed = readBytes(s, payload.length, 20_000);
  s.send(payload);
  const back = await echoed;
  t.ok(back.equals(payload), 'the payload comes back intact (stock seal → our open, our seal → stock open)');

  const up = Buffer.concat(relay.up), down = Buffer.concat(relay.down);
  t.ok(up.length > payload.length && down.length > payload.length, 'both directions carried the payload and Noise overhead');
  let seen = 0;
  for (let i = 0; i < 64; i++) {
    const probe = payload.subarray(i * 49_157, i * 49_157 + 24);
    if (up.includes(probe) || down.includes(probe)) seen++;
  }
  t.equal(seen, 0, 'none of 64 probes of the plaintext appears on the wire in either direction');
  await s.close();
}

/**
 * One bit flipped on the wire in the middle of a bulk transfer: the party
 * refuses the message (its tag fails), drops the connection instead of
 * delivering anything altered, and goes on serving new connections.
 */
export async function checkTamperingRefused(t: Test): Promise<void> {
  const party = await echoParty(t);
  const { stream: s } = await stockStream(t, party, 2 * 1024 * 1024);
  const payload = randomBytes(3 * 1024 * 1024);
  const echoed = readBytes(s, payload.length, 10_000).then((b) => ({ ok: true as const, b }), (e: Error) => ({ ok: false as const, e }));
  s.send(payload);
  const r = await echoed;
  t.notOk(r.ok && r.b.equals(payload), 'the tampered transfer does not complete');
  const start = Date.now();
  while (party.libp2p.getConnections().length > 0 && Date.now() - start < 5000) await new Promise((res) => setTimeout(res, 20));
  t.equal(party.libp2p.getConnections().length, 0, 'the party dropped the connection');
  const { stream: again } = await stockStream(t, party);
  const small = randomBytes(200_000);
  const back = readBytes(again, small.length, 10_000);
  again.send(small);
  t.ok((await back).equals(small), 'a new connection is served as before');
}

/**
 * 32 MiB echoed by the party: its sealed output goes out through reused wire
 * slabs, and every byte comes back as sent. The stock peer reads while the
 * party writes, so the party's socket backs up and slabs wait in flight.
 */
export async function checkWireSlabsReused(t: Test): Promise<void> {
  const { stream: s } = await stockStream(t, await echoParty(t));
  const before = { ...wireSlabStats };
  const payload = randomBytes(32 * 1024 * 1024);
  const echoed = readBytes(s, payload.length, 60_000);
  for (let i = 0; i < payload.length; i += 1024 * 1024) s.send(payload.subarray(i, i + 1024 * 1024));
  const back = await echoed;
  t.ok(back.equals(payload), '32 MiB come back intact');
  t.ok(wireSlabStats.made > before.made, `the party sealed into slabs (${wireSlabStats.made - before.made} made)`);
  t.ok(wireSlabStats.reused > before.reused, `and wrote them again once sent (${wireSlabStats.reused - before.reused} reuses)`);
  await s.close();
}
