/**
 * Pseudorandom streams from AES-128-CTR (node:crypto, AES-NI where present).
 * Two parties holding the same key and consuming the same amounts in the same
 * order see the same stream; that is how replicated sharing gets correlated
 * randomness without communication after setup.
 */
import { createCipheriv, type Cipheriv } from 'node:crypto';
import { PartyError } from './errors.ts';

const ZERO = new Uint8Array(1 << 16);

export class PrfStream {
  private readonly cipher: Cipheriv;

  constructor(key: Uint8Array, label: string) {
    if (key.length !== 16) throw new PartyError(`PRF key must be 16 bytes, got ${key.length}`);
    // The label separates streams derived from one key (distinct 16-byte IVs = disjoint counter ranges in practice).
    const iv = new Uint8Array(16);
    new TextEncoder().encodeInto(label.slice(0, 8), iv);
    this.cipher = createCipheriv('aes-128-ctr', key, iv);
  }

  /** The next `byteLength` pseudorandom bytes, written into `out`. */
  fill(out: Uint8Array): Uint8Array {
    for (let off = 0; off < out.length; off += ZERO.length) {
      const n = Math.min(ZERO.length, out.length - off);
      const ks = this.cipher.update(ZERO.subarray(0, n));
      out.set(ks, off);
    }
    return out;
  }

  ring(n: number): BigInt64Array {
    const out = new BigInt64Array(n);
    this.fill(new Uint8Array(out.buffer));
    return out;
  }

  words(n: number): Uint32Array {
    const out = new Uint32Array(n);
    this.fill(new Uint8Array(out.buffer));
    return out;
  }
}
