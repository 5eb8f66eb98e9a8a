/**
 * The MPC frame codec (layout in constants.ts). The decoder is incremental and
 * never throws: whatever a peer sends becomes either a frame or a FrameError
 * value, so a malformed stream costs that stream, never the process.
 *
 * A length prefix outside [header, limit] is fatal for the stream — framing is
 * lost — and is refused as soon as its four bytes are in, before anything is
 * buffered or allocated. A frame whose length is sound but whose header is not
 * (version, kind, flags, close reason) is skipped without buffering its body;
 * the stream stays usable.
 */
import { QmpcError } from '../../protocols/errors.ts';
import {
  FRAME_HEADER_BYTES, FRAME_KIND, FRAME_LENGTH_BYTES, FRAME_VERSION, MAX_CLOSE_REASON_BYTES, MAX_FRAME_BYTES,
  SESSION_ID_BYTES, type FrameKind,
} from './constants.ts';

/** Stable codes of FrameError; `fatal` ones end the stream they came from. */
export type FrameErrorCode =
  | 'ERR_FRAME_TOO_LARGE' // length prefix above the limit (fatal)
  | 'ERR_FRAME_TOO_SHORT' // length prefix below the header size (fatal)
  | 'ERR_FRAME_TRUNCATED' // the stream ended inside a frame (fatal)
  | 'ERR_FRAME_VERSION' // a frame version this build does not speak
  | 'ERR_FRAME_KIND' // an unknown frame kind
  | 'ERR_FRAME_FLAGS' // flags set that version 1 does not define
  | 'ERR_FRAME_CLOSE_REASON' // a close reason that is too long or not UTF-8
  | 'ERR_FRAME_SEQUENCE' // a data frame out of order within its session
  | 'ERR_FRAME_UNEXPECTED' // bytes on a stream that must not carry any
  | 'ERR_FRAME_ARGUMENT'; // a local encode call with an impossible value

const FATAL: ReadonlySet<FrameErrorCode> = new Set(['ERR_FRAME_TOO_LARGE', 'ERR_FRAME_TOO_SHORT', 'ERR_FRAME_TRUNCATED', 'ERR_FRAME_UNEXPECTED']);

/** A frame that does not have the form of the protocol; `code` says which part was wrong. */
export class FrameError extends QmpcError {
  declare readonly code: FrameErrorCode;
  /** The stream's framing is lost (or ended): nothing more can be read from it. */
  readonly fatal: boolean;
  constructor(code: FrameErrorCode, message: string) {
    super(code, message);
    this.fatal = FATAL.has(code);
  }
}

export interface Frame {
  kind: FrameKind;
  /** Session id as 32 lowercase hex digits (the dispatcher's map key). */
  session: string;
  seq: number;
  /** Data: the engine message. Close: the UTF-8 reason (already validated). */
  payload: Uint8Array;
}

export function sessionKey(sessionId: Uint8Array): string {
  if (!(sessionId instanceof Uint8Array) || sessionId.byteLength !== SESSION_ID_BYTES) {
    throw new FrameError('ERR_FRAME_ARGUMENT', `a session id is ${SESSION_ID_BYTES} bytes, got ${describe(sessionId)}`);
  }
  return Buffer.from(sessionId.buffer, sessionId.byteOffset, SESSION_ID_BYTES).toString('hex');
}

function describe(x: unknown): string {
  return x instanceof Uint8Array ? `${x.byteLength} bytes` : typeof x;
}

/**
 * The 28 header bytes of a frame whose payload is `payloadBytes` long; the
 * caller writes the payload after it (so a 64 MiB message is never copied).
 */
export function encodeHeader(kind: FrameKind, session: string, seq: number, payloadBytes: number, maxFrameBytes: number = MAX_FRAME_BYTES): Uint8Array {
  if (!Number.isInteger(seq) || seq < 0 || seq > 0xffffffff) throw new FrameError('ERR_FRAME_ARGUMENT', `seq must be a 32-bit unsigned integer, got ${seq}`);
  if (!/^[0-9a-f]{32}$/.test(session)) throw new FrameError('ERR_FRAME_ARGUMENT', `session must be ${SESSION_ID_BYTES * 2} lowercase hex digits, got ${JSON.stringify(session.slice(0, 40))}`);
  const total = FRAME_HEADER_BYTES + payloadBytes;
  if (!Number.isInteger(payloadBytes) || payloadBytes < 0) throw new FrameError('ERR_FRAME_ARGUMENT', `payload length must be a non-negative integer, got ${payloadBytes}`);
  if (total > maxFrameBytes) {
    throw new FrameError('ERR_FRAME_TOO_LARGE', `a ${payloadBytes}-byte message does not fit in one frame: the limit is ${maxFrameBytes} bytes including the ${FRAME_HEADER_BYTES}-byte header`);
  }
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h.writeUInt32BE(total - FRAME_LENGTH_BYTES, 0);
  h[4] = FRAME_VERSION;
  h[5] = kind;
  h.writeUInt16BE(0, 6);
  h.write(session, 8, SESSION_ID_BYTES, 'hex');
  h.writeUInt32BE(seq, 24);
  return h;
}

/** Header and payload in one buffer (tests, raw tools); the transport sends the two parts separately. */
export function encodeFrame(kind: FrameKind, session: string, seq: number, payload: Uint8Array, maxFrameBytes?: number): Uint8Array {
  const h = encodeHeader(kind, session, seq, payload.byteLength, maxFrameBytes);
  const out = new Uint8Array(h.byteLength + payload.byteLength);
  out.set(h, 0);
  out.set(payload, h.byteLength);
  return out;
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** A close reason as sent: UTF-8, cut at a character boundary to MAX_CLOSE_REASON_BYTES. */
export function encodeCloseReason(reason: string): Uint8Array {
  let bytes = utf8.encode(reason);
  if (bytes.byteLength <= MAX_CLOSE_REASON_BYTES) return bytes;
  let end = MAX_CLOSE_REASON_BYTES;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--; // back up to the start of a character
  bytes = bytes.subarray(0, end);
  return bytes;
}

export function decodeCloseReason(payload: Uint8Array): string | FrameError {
  if (payload.byteLength > MAX_CLOSE_REASON_BYTES) return new FrameError('ERR_FRAME_CLOSE_REASON', `close reason of ${payload.byteLength} bytes exceeds ${MAX_CLOSE_REASON_BYTES}`);
  try {
    return utf8Strict.decode(payload);
  } catch {
    return new FrameError('ERR_FRAME_CLOSE_REASON', 'close reason is not valid UTF-8');
  }
}

type State = 'length' | 'header' | 'payload' | 'skip' | 'failed';

/**
 * Incremental decoder for one stream. `push` returns the frames and errors
 * completed by a chunk, in stream order; after a fatal error it returns
 * nothing more (the caller aborts the stream).
 */
export class FrameDecoder {
  readonly maxFrameBytes: number;
  private readonly chunks: Uint8Array[] = [];
  private offset = 0; // into chunks[0]
  private buffered = 0;
  private state: State = 'length';
  /** Bytes after the length field of the current frame. */
  private rest = 0;
  private header: { kind: FrameKind; session: string; seq: number } | null = null;
  /** The payload being filled, and how much of it is. */
  private body: Uint8Array | null = null;
  private bodyAt = 0;
  private failure: FrameError | null = null;

  constructor(maxFrameBytes: number = MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes held for an incomplete frame (bounded by maxFrameBytes). */
  get bufferedBytes(): number {
    return this.buffered + (this.body === null ? 0 : this.bodyAt);
  }

  get failed(): FrameError | null {
    return this.failure;
  }

  push(chunk: Uint8Array | Iterable<Uint8Array>): Array<Frame | FrameError> {
    const out: Array<Frame | FrameError> = [];
    if (this.failure) return out;
    if (chunk instanceof Uint8Array) this.append(chunk);
    else for (const c of chunk) this.append(c);
    this.drain(out);
    return out;
  }

  /** The stream ended: a frame left incomplete is an error. */
  end(): FrameError | null {
    if (this.failure) return null;
    if (this.state === 'length' && this.buffered === 0) return null;
    const have = this.state === 'length' ? this.buffered : this.state === 'header' ? this.buffered + FRAME_LENGTH_BYTES : -1;
    const e = new FrameError('ERR_FRAME_TRUNCATED', have >= 0
      ? `stream ended inside a frame header (${have} of ${FRAME_HEADER_BYTES} bytes)`
      : `stream ended inside a frame body (${this.bufferedBytes} of ${this.rest} bytes)`);
    this.fail(e);
    return e;
  }

  private append(c: Uint8Array): void {
    if (c.byteLength === 0) return;
    if (this.state === 'skip') {
      // Bodies of refused frames are dropped as they arrive, never buffered.
      const n = Math.min(this.rest, c.byteLength);
      this.rest -= n;
      if (this.rest === 0) this.state = 'length';
      if (n === c.byteLength) return;
      c = c.subarray(n);
    }
    this.chunks.push(c);
    this.buffered += c.byteLength;
  }

  private fail(e: FrameError): void {
    this.failure = e;
    this.state = 'failed';
    this.body = null;
    this.chunks.length = 0;
    this.offset = 0;
    this.buffered = 0;
  }

  private drain(out: Array<Frame | FrameError>): void {
    for (;;) {
      switch (this.state) {
        case 'length': {
          if (this.buffered < FRAME_LENGTH_BYTES) return;
          const len = readU32(this.take(FRAME_LENGTH_BYTES), 0);
          if (len + FRAME_LENGTH_BYTES > this.maxFrameBytes) {
            const e = new FrameError('ERR_FRAME_TOO_LARGE', `frame length prefix ${len} exceeds the limit of ${this.maxFrameBytes - FRAME_LENGTH_BYTES} bytes`);
            this.fail(e);
            out.push(e);
            return;
          }
          if (len < FRAME_HEADER_BYTES - FRAME_LENGTH_BYTES) {
            const e = new FrameError('ERR_FRAME_TOO_SHORT', `frame length prefix ${len} is below the ${FRAME_HEADER_BYTES - FRAME_LENGTH_BYTES}-byte header`);
            this.fail(e);
            out.push(e);
            return;
          }
          this.rest = len;
          this.state = 'header';
          break;
        }
        case 'header': {
          const hl = FRAME_HEADER_BYTES - FRAME_LENGTH_BYTES;
          if (this.buffered < hl) return;
          const h = this.take(hl);
          this.rest -= hl;
          const err = checkHeader(h);
          if (err) {
            out.push(err);
            this.skip();
            break;
          }
          const session = Buffer.from(h.buffer, h.byteOffset + 4, SESSION_ID_BYTES).toString('hex');
          this.header = { kind: h[1] as FrameKind, session, seq: readU32(h, 20) };
          this.state = 'payload';
          break;
        }
        case 'payload': {
          // Bytes move into the payload as they arrive, while they are still in
          // cache: copying a 64 MiB message in one go at the end reads it back from memory.
          if (this.body === null) {
            if (this.rest <= this.buffered) {
              this.fillBody(this.take(this.rest, true));
            } else {
              // Untouched pages of a fresh allocation are not resident: a peer that
              // announces a large frame and stalls costs address space, not memory.
              this.body = new Uint8Array(Buffer.allocUnsafeSlow(this.rest).buffer, 0, this.rest);
              this.bodyAt = 0;
            }
          }
          const body = this.body!;
          if (this.bodyAt < body.byteLength) {
            const n = Math.min(this.buffered, body.byteLength - this.bodyAt);
            this.copyInto(body, this.bodyAt, n);
            this.bodyAt += n;
            if (this.bodyAt < body.byteLength) return;
          }
          const payload = body;
          this.body = null;
          const hdr = this.header!;
          this.header = null;
          this.state = 'length';
          if (hdr.kind === FRAME_KIND.close) {
            const r = decodeCloseReason(payload);
            if (r instanceof FrameError) {
              out.push(r);
              break;
            }
          }
          out.push({ kind: hdr.kind, session: hdr.session, seq: hdr.seq, payload });
          break;
        }
        case 'skip':
          return; // append() consumes skipped bytes
        case 'failed':
          return;
      }
    }
  }

  private fillBody(b: Uint8Array): void {
    this.body = b;
    this.bodyAt = b.byteLength;
  }

  /** Moves the next n buffered bytes into `dst` at `at`. */
  private copyInto(dst: Uint8Array, at: number, n: number): void {
    this.buffered -= n;
    while (n > 0) {
      const c = this.chunks[0];
      const k = Math.min(c.byteLength - this.offset, n);
      dst.set(this.offset === 0 && k === c.byteLength ? c : c.subarray(this.offset, this.offset + k), at);
      at += k;
      n -= k;
      if (this.offset + k === c.byteLength) {
        this.chunks.shift();
        this.offset = 0;
      } else this.offset += k;
    }
  }

  /** Drops the rest of the current frame: what is buffered now, the remainder as it arrives. */
  private skip(): void {
    const n = Math.min(this.rest, this.buffered);
    this.discard(n);
    this.rest -= n;
    if (this.rest === 0) {
      this.state = 'length';
      return;
    }
    this.state = 'skip';
  }

  private discard(n: number): void {
    this.buffered -= n;
    while (n > 0) {
      const c = this.chunks[0];
      const avail = c.byteLength - this.offset;
      if (avail > n) {
        this.offset += n;
        return;
      }
      n -= avail;
      this.chunks.shift();
      this.offset = 0;
    }
  }

  /**
   * The next n buffered bytes: a view when they lie in one chunk, else a copy.
   * With `own`, always a copy in a buffer of exactly n bytes: a payload must
   * not keep alive, or expose, the bytes of other frames around it.
   */
  private take(n: number, own = false): Uint8Array {
    this.buffered -= n;
    if (n === 0) return new Uint8Array(0);
    const first = this.chunks[0];
    if (!own && first.byteLength - this.offset >= n) {
      const v = first.subarray(this.offset, this.offset + n);
      this.offset += n;
      if (this.offset === first.byteLength) {
        this.chunks.shift();
        this.offset = 0;
      }
      return v;
    }
    // Own, 8-aligned buffer (the engine reads ring elements in place), every byte overwritten below.
    const out = new Uint8Array(Buffer.allocUnsafeSlow(n).buffer, 0, n);
    let pos = 0;
    while (pos < n) {
      const c = this.chunks[0];
      const start = this.offset;
      const k = Math.min(c.byteLength - start, n - pos);
      out.set(start === 0 && k === c.byteLength ? c : c.subarray(start, start + k), pos);
      pos += k;
      if (start + k === c.byteLength) {
        this.chunks.shift();
        this.offset = 0;
      } else this.offset = start + k;
    }
    return out;
  }
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) >>> 0) + (b[at + 1] << 16) + (b[at + 2] << 8) + b[at + 3];
}

/** Header after the length field: version, kind, flags. */
function checkHeader(h: Uint8Array): FrameError | null {
  if (h[0] !== FRAME_VERSION) return new FrameError('ERR_FRAME_VERSION', `frame version ${h[0]} is not supported (this build speaks ${FRAME_VERSION})`);
  if (h[1] !== FRAME_KIND.data && h[1] !== FRAME_KIND.close) return new FrameError('ERR_FRAME_KIND', `unknown frame kind ${h[1]}`);
  const flags = (h[2] << 8) | h[3];
  if (flags !== 0) return new FrameError('ERR_FRAME_FLAGS', `frame flags 0x${flags.toString(16).padStart(4, '0')} are not defined in version ${FRAME_VERSION}`);
  return null;
}
