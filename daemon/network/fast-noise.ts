/**
 * libp2p-noise (Noise_XX_25519_ChaChaPoly_SHA256, unchanged on the wire)
 * tuned for bulk MPC traffic, where the stock stream spends most of a
 * transfer's CPU around the cipher rather than in it:
 *
 * - The cipher is libsodium's ChaCha20-Poly1305 (sodium-native) writing into
 *   buffers we choose: a received message is decrypted in place in the socket's
 *   read buffer, and a sent chunk is sealed straight into the one buffer that
 *   goes to the socket. node:crypto can do neither — each message would cost a
 *   cipher object, a fresh output buffer and its garbage. Where the native
 *   module cannot load, node:crypto with keys imported once per session key
 *   takes over (`noiseCipher` says which).
 * - The receive side splits the byte stream into messages without copying
 *   (NoiseMessageSplitter); the send side lays the Noise messages of a chunk
 *   out back to back, in wire slabs of about 1 MiB that are written again once
 *   the socket has sent them (wire-slabs.ts), so one socket write per slab
 *   instead of three per 64 KiB message, and no fresh memory per chunk.
 *
 * Nonces, keys and the tag check stay Noise's own (its CipherState builds the
 * nonce and the handshake object calls the cipher); only where bytes live
 * changes.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import { noise, type ICryptoInterface } from '@chainsafe/libp2p-noise';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { Uint8ArrayList } from 'uint8arraylist';
import { gather, NOISE_MSG_MAX, sodiumAead, sodiumLoadError, TAG_BYTES, type SodiumAead } from './sodium-aead.ts';
import { WireSlabs, type WireQueue } from './wire-slabs.ts';

const NOISE_PLAINTEXT_MAX = NOISE_MSG_MAX - TAG_BYTES;
const LENGTH_BYTES = 2;
const NOISE_MSG_MAX_WIRE = LENGTH_BYTES + NOISE_MSG_MAX;

type NoiseBytes = ReturnType<ICryptoInterface['chaCha20Poly1305Encrypt']>;
/** Bytes in one piece or several (either of the two uint8arraylist copies in the tree). */
type Bytes = Uint8Array | ByteList;
interface ByteList extends Iterable<Uint8Array> {
  readonly byteLength: number;
  sublist(start?: number, end?: number): ByteList;
}

/** Which ChaCha20-Poly1305 implementation Noise uses here, and why not libsodium if not. */
export const noiseCipher: { impl: 'libsodium' | 'node:crypto'; reason: string | null } = { impl: sodiumAead ? 'libsodium' : 'node:crypto', reason: sodiumLoadError };

/**
 * What the stream hooks below tell the cipher about the one Noise call they
 * are about to make (synchronous, so nothing interleaves): where to seal, and
 * that a message in pieces may be opened where it lies. The cipher interface
 * has no parameters for either; without them the cipher allocates and never
 * writes into its input (the handshake hashes a ciphertext after opening it).
 */
const hint: { sealInto: Uint8Array | null; openInPlace: boolean } = { sealInto: null, openInPlace: false };

function takeSealTarget(plaintextBytes: number): Uint8Array | null {
  const t = hint.sealInto;
  hint.sealInto = null;
  return t !== null && t.byteLength === plaintextBytes + TAG_BYTES ? t : null;
}

function takeOpenInPlace(): boolean {
  const ok = hint.openInPlace;
  hint.openInPlace = false;
  return ok;
}

function sodiumCrypto(aead: SodiumAead): ICryptoInterface {
  return {
    ...defaultCrypto,
    chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
      const out = takeSealTarget(plaintext.byteLength) ?? Buffer.allocUnsafe(plaintext.byteLength + TAG_BYTES);
      aead.seal(out, plaintext, ad, nonce, k);
      return out;
    },
    chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
      const n = ciphertext.byteLength - TAG_BYTES;
      if (n < 0) throw new Error(`Noise message of ${ciphertext.byteLength} bytes is shorter than its ${TAG_BYTES}-byte tag`);
      if (ciphertext instanceof Uint8Array) {
        // In place only when dst starts where the ciphertext does (Noise's convention): libsodium allows m == c, not a shifted overlap.
        const inPlace = dst !== undefined && dst.byteLength === n && dst.buffer === ciphertext.buffer && dst.byteOffset === ciphertext.byteOffset;
        const out = inPlace ? dst : Buffer.allocUnsafe(n);
        aead.open(out, ciphertext, ad, nonce, k);
        return out;
      }
      // A message split across socket reads: opened where its pieces lie when the stream allows it, else in a copy.
      if (takeOpenInPlace() && ciphertext.byteLength <= aead.maxPiecesBytes) {
        aead.openPiecesInPlace(ciphertext, ad, nonce, k);
        return ciphertext.sublist(0, n);
      }
      const joined = Buffer.allocUnsafe(ciphertext.byteLength);
      gather(ciphertext, joined);
      aead.open(joined.subarray(0, n), joined, ad, nonce, k);
      return joined.subarray(0, n);
    },
  };
}

/** Below this, the WebAssembly cipher of the default set is faster than node:crypto's setup cost. */
const SMALL_MESSAGE = 1200;
const CHACHA = 'chacha20-poly1305';
const keyObjects = new WeakMap<Uint8Array, KeyObject>();

/** Noise's cipher key object, imported once per key rather than once per 64 KiB message. */
function keyObject(k: Uint8Array): KeyObject {
  let ko = keyObjects.get(k);
  if (ko === undefined) keyObjects.set(k, (ko = createSecretKey(k)));
  return ko;
}

/** The fallback: node:crypto with the key imported once per session key (libp2p-noise's default re-imports it per message). */
export const nodeNoiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    if (plaintext.byteLength < SMALL_MESSAGE) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k);
    const c = createCipheriv(CHACHA, keyObject(k), nonce, { authTagLength: TAG_BYTES });
    c.setAAD(ad, { plaintextLength: plaintext.byteLength });
    const out = new Uint8ArrayList();
    if (plaintext instanceof Uint8Array) out.append(c.update(plaintext));
    else for (const b of plaintext) out.append(c.update(b));
    c.final();
    out.append(c.getAuthTag());
    // Noise bundles its own uint8arraylist 2.x: the same class at run time (lists are recognised by a shared symbol), another one to tsc.
    return out as unknown as NoiseBytes;
  },
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
    if (ciphertext.byteLength < SMALL_MESSAGE) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst);
    const n = ciphertext.byteLength - TAG_BYTES;
    const d = createDecipheriv(CHACHA, keyObject(k), nonce, { authTagLength: TAG_BYTES });
    d.setAAD(ad, { plaintextLength: n });
    d.setAuthTag(ciphertext.subarray(n));
    if (ciphertext instanceof Uint8Array) {
      const out = d.update(ciphertext.subarray(0, n));
      d.final(); // throws on a bad tag: Noise aborts the connection
      return out;
    }
    // Piece by piece: joining them first would copy (and allocate) the whole message again.
    const list = new Uint8ArrayList();
    for (const b of ciphertext.sublist(0, n)) list.append(d.update(b));
    d.final();
    return list as unknown as NoiseBytes;
  },
};

/** ChaCha20-Poly1305 for Noise: libsodium when it loads, else node:crypto. */
export const fastNoiseCrypto: ICryptoInterface = sodiumAead ? sodiumCrypto(sodiumAead) : nodeNoiseCrypto;

/** The parts of @chainsafe/libp2p-noise's encrypted stream (17.x) that tuneNoiseStream replaces or uses. */
interface NoiseStreamInternals {
  encrypt?: unknown;
  decrypt?: unknown;
  /** The connection underneath (libp2p's TCP one: a message stream over a net.Socket). */
  stream?: unknown;
  wireSlabs?: WireSlabs;
  decoder?: unknown;
  handshake?: { encrypt?: unknown; decrypt?: unknown };
  metrics?: { encryptedPackets?: { increment(): void }; decryptedPackets?: { increment(): void }; decryptErrors?: { increment(): void } };
}

interface TunedStream {
  handshake: { encrypt(p: Bytes): Bytes; decrypt(c: Bytes, dst?: Uint8Array): Bytes };
  metrics?: NoiseStreamInternals['metrics'];
  /** Present when the connection's send queue can be watched (see wire-slabs.ts). */
  wireSlabs?: WireSlabs;
}

/** Noise messages per wire slab: about 1 MiB of sealed bytes. */
const SLAB_MESSAGES = 16;
const SLAB_PLAINTEXT = SLAB_MESSAGES * NOISE_PLAINTEXT_MAX;
const SLAB_BYTES = SLAB_MESSAGES * NOISE_MSG_MAX_WIRE;
/** Slabs per connection: enough for what a 16 MiB Yamux window keeps in flight; beyond it, one-off buffers. */
const MAX_SLABS = 24;
/** Below this a sealed chunk gets a buffer of its own size; a slab would hold little and stay in flight as long. */
const MIN_SLAB_FILL = 128 * 1024;

/** The underlying connection's queue and its socket's, when they are the shapes this knows (libp2p TCP). */
function wireQueueOf(s: NoiseStreamInternals): WireQueue | null {
  const conn = s.stream as { writeBufferLength?: unknown; socket?: { writableLength?: unknown } } | undefined;
  const socket = conn?.socket;
  if (typeof conn?.writeBufferLength !== 'number' || typeof socket?.writableLength !== 'number') return null;
  return { pendingBytes: () => (conn.writeBufferLength as number) + (socket.writableLength as number) };
}

/** Seals plaintext [from, to) of the chunk as Noise messages laid out back to back in `wire`; returns the bytes written. */
function sealRange(s: TunedStream, chunk: Bytes, from: number, to: number, wire: Uint8Array): number {
  let w = 0;
  for (let i = from; i < to; i += NOISE_PLAINTEXT_MAX) {
    const end = Math.min(i + NOISE_PLAINTEXT_MAX, to);
    const sealed = end - i + TAG_BYTES;
    wire[w] = sealed >>> 8;
    wire[w + 1] = sealed & 0xff;
    const slot = wire.subarray(w + LENGTH_BYTES, w + LENGTH_BYTES + sealed);
    hint.sealInto = slot;
    let got: Bytes;
    try {
      got = s.handshake.encrypt(chunk instanceof Uint8Array ? chunk.subarray(i, end) : chunk.sublist(i, end));
    } finally {
      hint.sealInto = null;
    }
    if (got !== slot) gather(got instanceof Uint8Array ? [got] : got, slot); // a cipher that made its own buffer (node:crypto)
    s.metrics?.encryptedPackets?.increment();
    w += LENGTH_BYTES + sealed;
  }
  return w;
}

function wireBytes(plaintext: number): number {
  return plaintext + Math.ceil(plaintext / NOISE_PLAINTEXT_MAX) * (LENGTH_BYTES + TAG_BYTES);
}

/**
 * Noise's encrypt for a chunk the muxer sends: its messages (2-byte length,
 * ciphertext, tag) laid out back to back and sealed where they lie — in
 * reused slabs of about 1 MiB for a bulk chunk, else in one buffer — so the
 * socket gets one write per slab rather than three per 64 KiB message.
 */
function sealNoiseMessages(this: TunedStream, chunk: Bytes): Uint8ArrayList {
  const total = chunk.byteLength;
  const out = new Uint8ArrayList();
  const slabs = this.wireSlabs;
  slabs?.reclaim(); // the previous chunk's output is in the connection's queue by now; this one's is not yet
  const step = slabs !== undefined && total >= MIN_SLAB_FILL ? SLAB_PLAINTEXT : total;
  for (let from = 0; from < total; from += step) {
    const to = Math.min(from + step, total);
    const wire = slabs !== undefined && to - from >= MIN_SLAB_FILL ? slabs.take() : Buffer.allocUnsafe(wireBytes(to - from));
    const n = sealRange(this, chunk, from, to, wire);
    slabs?.hand(wire, n);
    out.append(wire.subarray(0, n));
  }
  return out;
}

/**
 * Noise's decrypt for one message from the splitter, in place: once read,
 * the socket's bytes are ours alone, whether the message lies within one read
 * or across two.
 */
function openNoiseMessage(this: TunedStream, message: Bytes): Bytes {
  if (message.byteLength < TAG_BYTES) throw new Error(`Noise message of ${message.byteLength} bytes is shorter than its ${TAG_BYTES}-byte tag`);
  try {
    const dst = message instanceof Uint8Array ? message.subarray(0, message.byteLength - TAG_BYTES) : undefined;
    hint.openInPlace = dst === undefined;
    const plaintext = this.handshake.decrypt(message, dst);
    this.metrics?.decryptedPackets?.increment();
    return plaintext;
  } catch (e) {
    this.metrics?.decryptErrors?.increment();
    throw e;
  } finally {
    hint.openInPlace = false;
  }
}

/**
 * Splits the socket's byte stream into Noise messages (2-byte big-endian
 * length, then that many bytes), as Noise's LengthPrefixedDecoder does, but
 * over plain arrays: a message inside one socket read comes out as a view of
 * it, one that straddles reads as a list of views — never a copy, and no
 * Uint8ArrayList bookkeeping per read. A 16-bit length bounds what it holds to
 * one message.
 */
export class NoiseMessageSplitter {
  /** 0: before the length, 1: after its first byte, 2: in the body. */
  private state = 0;
  private len = 0;
  private parts: Uint8Array[] = [];
  private have = 0;

  decode(data: Uint8Array | Iterable<Uint8Array>): Array<Uint8Array | Uint8ArrayList> {
    const out: Array<Uint8Array | Uint8ArrayList> = [];
    if (data instanceof Uint8Array) this.push(data, out);
    else for (const c of data) this.push(c, out);
    return out;
  }

  private push(c: Uint8Array, out: Array<Uint8Array | Uint8ArrayList>): void {
    const n = c.byteLength;
    let off = 0;
    while (off < n) {
      if (this.state === 0) {
        if (n - off < 2) {
          this.len = c[off++] << 8;
          this.state = 1;
          continue;
        }
        this.len = (c[off] << 8) | c[off + 1];
        off += 2;
        this.state = 2;
      } else if (this.state === 1) {
        this.len |= c[off++];
        this.state = 2;
      }
      if (this.len === 0) {
        this.state = 0; // an empty message carries nothing, as in Noise's decoder
        continue;
      }
      if (this.have === 0 && n - off >= this.len) {
        out.push(c.subarray(off, off + this.len));
        off += this.len;
        this.state = 0;
        continue;
      }
      const k = Math.min(this.len - this.have, n - off);
      if (k === 0) break;
      this.parts.push(c.subarray(off, off + k));
      this.have += k;
      off += k;
      if (this.have === this.len) {
        out.push(new Uint8ArrayList(...this.parts));
        this.parts = [];
        this.have = 0;
        this.state = 0;
      }
    }
  }
}

/** Installs the sealing, opening and splitting above on a Noise-secured stream when it has the expected shape; otherwise leaves Noise's own. */
function tuneNoiseStream<T extends { connection: unknown }>(secured: T): T {
  const s = secured.connection as NoiseStreamInternals;
  if (typeof s.encrypt === 'function' && typeof s.handshake?.encrypt === 'function') {
    s.encrypt = sealNoiseMessages;
    const queue = wireQueueOf(s);
    if (queue !== null) s.wireSlabs = new WireSlabs(SLAB_BYTES, MAX_SLABS, queue);
  }
  if (typeof s.decrypt === 'function' && typeof s.handshake?.decrypt === 'function') {
    s.decrypt = openNoiseMessage;
    // Bytes already buffered by Noise's decoder would be lost with it: swap only while it holds none.
    const d = s.decoder as { decode?: unknown; buffer?: { byteLength?: number } } | undefined;
    if (typeof d?.decode === 'function' && d.buffer?.byteLength === 0) s.decoder = new NoiseMessageSplitter();
  }
  return secured;
}

/** libp2p-noise with fastNoiseCrypto and tuneNoiseStream. */
export function fastNoise(): ReturnType<typeof noise> {
  const make = noise({ crypto: fastNoiseCrypto });
  return (components) => {
    const enc = make(components);
    const inbound = enc.secureInbound.bind(enc);
    const outbound = enc.secureOutbound.bind(enc);
    enc.secureInbound = async (connection, options) => tuneNoiseStream(await inbound(connection, options));
    enc.secureOutbound = async (connection, options) => tuneNoiseStream(await outbound(connection, options));
    return enc;
  };
}
