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
import { createPartyNode } from '../../daemon/network/node.ts';
import { capFrameBytes } from '../../daemon/network/yamux-frames.ts';
import type { PartyIndex } from '../../protocols/transport.ts';

/** A TCP relay that records what crosses it in each direction. */
async function tap2(targetPort: number): Promise<{ port: number; up: Buffer[]; down: Buffer[]; close(): Promise<void> }> {
  const up: Buffer[] = [], down: Buffer[] = [];
  const sockets = new Set<Socket>();
  const srv = createServer((client) => {
    const server = connect(targetPort, '127.0.0.1');
    for (const s of [client, server]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => { client.destroy(); server.destroy(); });
    }
    client.on('data', (d) => { up.push(d); server.write(d); });
    server.on('data', (d) => { down.push(d); client.write(d); });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as { port: number }).port, up, down,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); srv.close(() => r()); }),
  };
}

/** Everything a stream delivers until it has `n` bytes. */
function readBytes(s: Stream, n: number, ms: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Uint8Array[] = [];
    let have = 0;
    const timer = setTimeout(() => reject(new Error(`${have} of ${n} bytes after ${ms} ms`)), ms);
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

/**
 * A party node (whatever cipher this process picked) echoes 3 MiB for a stock
 * libp2p peer (stock Noise and Yamux) through a relay that records the wire.
 */
export async function checkStockInterop(t: Test): Promise<void> {
  const keys = await Promise.all([0, 1, 2].map(() => generateKeyPair('Ed25519')));
  const committee = ([0, 1, 2] as PartyIndex[]).map((i) => ({ index: i, peerId: peerIdFromPrivateKey(keys[i]).toString() }));
  const party = await createPartyNode({ listen: ['/ip4/127.0.0.1/tcp/0'], mdns: { enabled: false }, committee }, { logger: silentLogger(), privateKey: keys[0] });
  t.teardown(() => party.stop());
  await party.libp2p.handle('/qmpc-test/echo/1', (stream: Stream) => {
    stream.addEventListener('message', (e) => stream.send(e.data));
  });
  const port = Number(party.getMultiaddrs()[0].toString().match(/\/tcp\/(\d+)/)![1]);
  const relay = await tap2(port);
  t.teardown(() => relay.close());
  const stock = await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] });
  t.teardown(() => stock.stop());
  const conn = await stock.dial(multiaddr(`/ip4/127.0.0.1/tcp/${relay.port}/p2p/${party.peerId}`), { signal: AbortSignal.timeout(10_000) });
  const s = await conn.newStream('/qmpc-test/echo/1', { signal: AbortSignal.timeout(10_000) });
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
