/**
 * ChaCha20-Poly1305 (IETF, RFC 8439) from libsodium through sodium-native,
 * writing where the caller says: into the input itself, or into a buffer it
 * has laid out. node:crypto can do neither — every call there returns a fresh
 * buffer, and fresh memory costs more than the cipher on a bulk transfer.
 *
 * Bytes in several pieces (a message split across socket reads, a plaintext
 * gathered from frame headers and payloads) are gathered first — into the
 * output when sealing, into a reused scratch buffer when opening — so that
 * libsodium's one-shot AEAD does all the cryptography, including the tag check
 * before any plaintext is released.
 */
import { createRequire } from 'node:module';

export const TAG_BYTES = 16;
/** Noise's transport message limit (ciphertext and tag): the largest message opened from pieces. */
export const NOISE_MSG_MAX = 65535;

/** The slice of sodium-native used here (the package ships no types). */
interface Sodium {
  crypto_aead_chacha20poly1305_ietf_encrypt(c: Uint8Array, m: Uint8Array, ad: Uint8Array | null, nsec: null, npub: Uint8Array, k: Uint8Array): number;
  crypto_aead_chacha20poly1305_ietf_decrypt(m: Uint8Array, nsec: null, c: Uint8Array, ad: Uint8Array | null, npub: Uint8Array, k: Uint8Array): number;
}

/** Bytes in pieces, as Uint8ArrayList (either copy of the package in the tree) iterates them. */
export type Pieces = Iterable<Uint8Array>;

export interface SodiumAead {
  /** Seals m into c (m's length + 16 bytes: ciphertext, then tag); c may start where m does, must not overlap it otherwise. */
  seal(c: Uint8Array, m: Uint8Array | Pieces, ad: Uint8Array, nonce: Uint8Array, k: Uint8Array): void;
  /** Opens c (ciphertext and tag) into m (c's length − 16 bytes), which may start where c does; throws on a bad tag. */
  open(m: Uint8Array, c: Uint8Array, ad: Uint8Array, nonce: Uint8Array, k: Uint8Array): void;
  /**
   * Opens a message of at most `maxPiecesBytes` given in pieces (ciphertext
   * then tag), writing the plaintext over the ciphertext's bytes where they
   * lie; on a bad tag it throws and leaves the pieces unchanged.
   */
  openPiecesInPlace(message: Pieces, ad: Uint8Array, nonce: Uint8Array, k: Uint8Array): void;
  readonly maxPiecesBytes: number;
}

/** Copies pieces back to back into `into`, returning how many bytes they held. */
export function gather(pieces: Pieces, into: Uint8Array): number {
  let off = 0;
  for (const p of pieces) {
    if (off + p.byteLength > into.byteLength) throw new RangeError(`${into.byteLength}-byte buffer is too small for the pieces`);
    into.set(p, off);
    off += p.byteLength;
  }
  return off;
}

/** The one piece when there is exactly one (a Noise message inside one muxer payload, the usual case), else null. */
function onlyPiece(pieces: Pieces): Uint8Array | null {
  let only: Uint8Array | null = null;
  for (const p of pieces) {
    if (only !== null) return null;
    only = p;
  }
  return only;
}

function makeAead(s: Sodium, maxPiecesBytes: number): SodiumAead {
  // Reused for every message in pieces: hot in cache, where a fresh buffer would not be. Calls are synchronous.
  const scratch = new Uint8Array(maxPiecesBytes);
  return {
    maxPiecesBytes,
    seal(c, m, ad, nonce, k) {
      let whole = m instanceof Uint8Array ? m : onlyPiece(m);
      if (whole === null) {
        const n = gather(m as Pieces, c.subarray(0, c.byteLength - TAG_BYTES));
        if (n !== c.byteLength - TAG_BYTES) throw new RangeError(`seal: ${n} bytes of plaintext for a ${c.byteLength}-byte output`);
        whole = c.subarray(0, n);
      }
      s.crypto_aead_chacha20poly1305_ietf_encrypt(c, whole, ad, null, nonce, k);
    },
    open(m, c, ad, nonce, k) {
      s.crypto_aead_chacha20poly1305_ietf_decrypt(m, null, c, ad, nonce, k);
    },
    openPiecesInPlace(message, ad, nonce, k) {
      const total = gather(message, scratch);
      if (total < TAG_BYTES) throw new RangeError(`a ${total}-byte message is shorter than its ${TAG_BYTES}-byte tag`);
      const n = total - TAG_BYTES;
      s.crypto_aead_chacha20poly1305_ietf_decrypt(scratch.subarray(0, n), null, scratch.subarray(0, total), ad, nonce, k);
      let off = 0;
      for (const p of message) {
        if (off >= n) break;
        const take = Math.min(p.byteLength, n - off);
        p.set(scratch.subarray(off, off + take));
        off += take;
      }
    },
  };
}

function load(): { aead: SodiumAead | null; loadError: string | null } {
  if (process.env.QMPC_NOISE_CIPHER === 'node') return { aead: null, loadError: 'QMPC_NOISE_CIPHER=node' };
  try {
    return { aead: makeAead(createRequire(import.meta.url)('sodium-native') as Sodium, NOISE_MSG_MAX), loadError: null };
  } catch (e) {
    return { aead: null, loadError: e instanceof Error ? e.message : String(e) };
  }
}

const loaded = load();

/** libsodium's ChaCha20-Poly1305, or null where sodium-native cannot load here (see sodiumLoadError). */
export const sodiumAead: SodiumAead | null = loaded.aead;
/** Why sodiumAead is null (the loader's error, or the override that asked for node:crypto). */
export const sodiumLoadError: string | null = loaded.loadError;
