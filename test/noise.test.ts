/**
 * The tuned Noise channel (daemon/network/fast-noise.ts, sodium-aead.ts):
 * libsodium's ChaCha20-Poly1305 agrees with node:crypto's byte for byte,
 * whether bytes come whole or in pieces; a forged message is refused without
 * touching its bytes; the cipher never writes into a ciphertext it was not
 * told it may (the handshake hashes a ciphertext after opening it); and a
 * party node speaks standard libp2p Noise with a stock libp2p peer, with no
 * plaintext on the wire.
 */
import tap from 'tap';
const t = tap;
import { createCipheriv, randomBytes } from 'node:crypto';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import type { Stream } from '@libp2p/interface';
import { Uint8ArrayList } from 'uint8arraylist';
import { fastNoiseCrypto, NoiseMessageSplitter, noiseCipher, nodeNoiseCrypto } from '../daemon/network/fast-noise.ts';
import { gather, sodiumAead, TAG_BYTES } from '../daemon/network/sodium-aead.ts';
import { capFrameBytes } from '../daemon/network/yamux-frames.ts';
import { checkStockInterop, checkTamperingRefused, checkWireSlabsReused } from './helpers/noise-wire.ts';

/** The reference: node:crypto's (OpenSSL's) ChaCha20-Poly1305, ciphertext then tag. */
function referenceSeal(pt: Uint8Array, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Buffer {
  const c = createCipheriv('chacha20-poly1305', k, nonce, { authTagLength: TAG_BYTES });
  c.setAAD(ad, { plaintextLength: pt.byteLength });
  return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
}

const flat = (x: Uint8Array | Iterable<Uint8Array>) => Buffer.concat(x instanceof Uint8Array ? [x] : [...x]);

/** Deterministic cut points, so a failure names a reproducible case. */
function cutter(seed: number) {
  return (n: number): number[] => {
    const k = (seed = (seed * 1103515245 + 12345) >>> 0) % 4;
    const cuts = new Set([0, n]);
    for (let i = 0; i < k; i++) cuts.add((seed = (seed * 1103515245 + 12345) >>> 0) % (n + 1));
    return [...cuts].sort((a, b) => a - b);
  };
}

function piecesOf(b: Uint8Array, cuts: number[]): Uint8Array[] {
  return cuts.slice(1).map((c, i) => b.subarray(cuts[i], c));
}

t.test('libsodium is what Noise uses here', async (t) => {
  t.equal(noiseCipher.impl, 'libsodium', `sodium-native loads (${noiseCipher.reason ?? 'no error'})`);
  t.ok(sodiumAead);
});

t.test('sodium AEAD: seal and open agree with node:crypto, whole, in one piece or in many, and refuse forgeries untouched', async (t) => {
  const aead = sodiumAead!;
  const cuts = cutter(7);
  let checked = 0;
  for (const n of [0, 1, 15, 16, 63, 64, 65, 1000, 4096, 65519]) {
    for (let rep = 0; rep < 8; rep++) {
      const k = randomBytes(32), nonce = randomBytes(12), ad = randomBytes(rep * 5), pt = randomBytes(n);
      const ref = referenceSeal(pt, nonce, ad, k);
      const cut = cuts(n);
      const whole = Buffer.alloc(n + TAG_BYTES);
      aead.seal(whole, pt, ad, nonce, k);
      const fromPieces = Buffer.alloc(n + TAG_BYTES);
      aead.seal(fromPieces, piecesOf(pt, cut), ad, nonce, k);
      const fromOnePiece = Buffer.alloc(n + TAG_BYTES);
      aead.seal(fromOnePiece, [pt], ad, nonce, k);
      // In place: c starts where m does.
      const inPlace = Buffer.alloc(n + TAG_BYTES);
      pt.copy(inPlace);
      aead.seal(inPlace, inPlace.subarray(0, n), ad, nonce, k);
      if (!whole.equals(ref) || !fromPieces.equals(ref) || !fromOnePiece.equals(ref) || !inPlace.equals(ref)) {
        t.fail(`seal of ${n} bytes (cuts ${cut}) differs from node:crypto`);
        return;
      }
      const opened = Buffer.from(ref);
      aead.open(opened.subarray(0, n), opened, ad, nonce, k);
      const split = Buffer.from(ref);
      aead.openPiecesInPlace(piecesOf(split, cuts(n + TAG_BYTES)), ad, nonce, k);
      if (!opened.subarray(0, n).equals(pt) || !split.subarray(0, n).equals(pt)) {
        t.fail(`open of ${n} bytes does not give the plaintext back`);
        return;
      }
      // One flipped bit anywhere (ciphertext, tag) or a wrong ad: refused, and the pieces are as they were.
      const forged = Buffer.from(ref);
      forged[(rep * 7919) % forged.length] ^= 1 << rep % 8;
      for (const [bytes, withAd] of [[forged, ad], [Buffer.from(ref), Buffer.concat([ad, Buffer.of(1)])]] as const) {
        const before = Buffer.from(bytes);
        t.throws(() => aead.openPiecesInPlace(piecesOf(bytes, cuts(bytes.length)), withAd, nonce, k), `${n} bytes: forgery refused`);
        if (!bytes.equals(before)) {
          t.fail(`${n} bytes: a refused message was modified`);
          return;
        }
        t.throws(() => aead.open(Buffer.alloc(n), bytes, withAd, nonce, k));
      }
      checked++;
    }
  }
  t.equal(checked, 80, '80 cases: sealed, opened and forged');
});

t.test('Noise cipher interfaces (libsodium and the node:crypto fallback) are the standard ChaCha20-Poly1305', async (t) => {
  const k = randomBytes(32), nonce = randomBytes(12), ad = randomBytes(32);
  for (const [name, crypto] of [['libsodium', fastNoiseCrypto], ['node:crypto', nodeNoiseCrypto]] as const) {
    for (const n of [0, 100, 1199, 1200, 5000, 65519]) {
      const pt = randomBytes(n);
      const mine = flat(crypto.chaCha20Poly1305Encrypt(pt, nonce, ad, k) as Uint8Array);
      t.ok(mine.equals(referenceSeal(pt, nonce, ad, k)), `${name}, ${n} bytes: same ciphertext and tag as node:crypto`);
      const theirs = flat(defaultCrypto.chaCha20Poly1305Encrypt(new Uint8ArrayList(pt.subarray(0, n >> 1), pt.subarray(n >> 1)) as never, nonce, ad, k) as Uint8Array);
      t.ok(theirs.equals(mine), `${name}, ${n} bytes: libp2p-noise's default agrees (plaintext in pieces)`);
      // Split input, as Noise passes a message that spans socket reads. Without a hint
      // from the stream the cipher must not write into it: Noise's handshake hashes the
      // ciphertext after opening it.
      const wire = Buffer.from(mine);
      const list = new Uint8ArrayList(wire.subarray(0, n >> 1), wire.subarray(n >> 1));
      const viaList = flat(crypto.chaCha20Poly1305Decrypt(list as never, nonce, ad, k) as Uint8Array);
      t.ok(viaList.equals(pt), `${name}, ${n} bytes: decrypts from pieces`);
      t.ok(wire.equals(mine), `${name}, ${n} bytes: the ciphertext it was given is unchanged`);
      const whole = Buffer.from(mine);
      t.ok(flat(crypto.chaCha20Poly1305Decrypt(whole, nonce, ad, k) as Uint8Array).equals(pt) && whole.equals(mine), `${name}, ${n} bytes: whole, and not in place without dst`);
      const bad = Buffer.from(mine);
      bad[bad.length - 1] ^= 1;
      t.throws(() => crypto.chaCha20Poly1305Decrypt(bad, nonce, ad, k), `${name}, ${n} bytes: a forged tag is refused`);
    }
    t.throws(() => crypto.chaCha20Poly1305Decrypt(new Uint8Array(TAG_BYTES - 1), nonce, ad, k), `${name}: a message shorter than its tag is refused`);
  }
});

t.test('gather refuses pieces that do not fit', async (t) => {
  t.equal(gather([Uint8Array.of(1, 2), Uint8Array.of(3)], new Uint8Array(3)), 3);
  t.throws(() => gather([Uint8Array.of(1, 2), Uint8Array.of(3)], new Uint8Array(2)), RangeError);
});

t.test('the Noise message splitter returns every length-prefixed message whatever the read boundaries', async (t) => {
  let seed = 99;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
  for (let trial = 0; trial < 200; trial++) {
    const messages = Array.from({ length: 1 + rnd(6) }, () => Uint8Array.from({ length: [0, 1, 2, 300, 65535][rnd(5)] }, () => rnd(256)));
    const wire = new Uint8Array(messages.reduce((s, m) => s + 2 + m.length, 0));
    let off = 0;
    for (const m of messages) {
      wire[off] = m.length >> 8;
      wire[off + 1] = m.length & 0xff;
      wire.set(m, off + 2);
      off += 2 + m.length;
    }
    const splitter = new NoiseMessageSplitter();
    const got: Uint8Array[] = [];
    for (let at = 0; at < wire.length;) {
      const step = 1 + rnd(70_000);
      for (const piece of splitter.decode(wire.subarray(at, at + step))) got.push(piece instanceof Uint8Array ? piece : piece.subarray());
      at += step;
    }
    const want = messages.filter((m) => m.length > 0);
    if (got.length !== want.length || got.some((g, i) => g.length !== want[i].length || g.some((b, k) => b !== want[i][k]))) {
      t.fail(`trial ${trial}: ${got.length} messages decoded, ${want.length} sent`);
      return;
    }
  }
  t.pass('200 random message sequences split at random points decode exactly (empty messages skipped)');
});

t.test('a party node and a stock libp2p peer talk standard Noise both ways, and the wire carries no plaintext', (t) => checkStockInterop(t));

t.test('one bit flipped on the wire: the party refuses the message, drops that connection and serves the next', (t) => checkTamperingRefused(t));

t.test('the party seals into reused wire slabs under backpressure, and every byte arrives', (t) => checkWireSlabsReused(t));

t.test('capFrameBytes caps what a Yamux stream sends per frame, and leaves other streams alone', async (t) => {
  const fake = { maxMessageSize: 16 * 1024 * 1024 };
  t.ok(capFrameBytes(fake as unknown as Stream, 4 * 1024 * 1024));
  t.equal(fake.maxMessageSize, 4 * 1024 * 1024, 'capped');
  fake.maxMessageSize = 1000;
  t.equal(fake.maxMessageSize, 1000, 'a smaller window still rules');
  fake.maxMessageSize = 64 * 1024 * 1024;
  t.equal(fake.maxMessageSize, 4 * 1024 * 1024, 'a window update does not lift the cap');
  t.notOk(capFrameBytes({} as unknown as Stream, 1024), 'a stream without the field is left as it is');
});
