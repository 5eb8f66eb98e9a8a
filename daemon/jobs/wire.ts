/**
 * Messages of the client↔party job protocol (/qmpc/job/1). Each message is
 * one length-prefixed frame (it-length-prefixed) holding
 *
 *   u8 version (1) | u8 type | u32 LE header length | header (JSON) | body
 *
 * The header is validated against the schema of its type; the body carries
 * share components as little-endian int64, inputs in header order, each as
 * the party's (x_i, x_{i+1}) pair. Anything else is a JobWireError naming
 * what was wrong.
 */
import { z } from 'zod';
import { QmpcError } from '../errors.ts';
import type { SharePair } from '../../protocols/arith.ts';

export const JOB_PROTOCOL = '/qmpc/job/1';
export const WIRE_VERSION = 1;
export const MAX_HEADER_BYTES = 64 * 1024;

export class JobWireError extends QmpcError {
  constructor(message: string) {
    super('ERR_JOB_WIRE', message);
  }
}

export const MSG = { submit: 1, accepted: 2, progress: 3, result: 4, error: 5, fetch: 6, cancel: 7 } as const;
export type MsgType = keyof typeof MSG;
const TYPE_NAMES = Object.fromEntries(Object.entries(MSG).map(([k, v]) => [v, k])) as Record<number, MsgType>;

const jobId = z.string().regex(/^[0-9a-f]{32}$/, '32 lowercase hex digits');
const tensorSpec = z.strictObject({
  name: z.string().regex(/^[a-z][a-z0-9_]{0,31}$/),
  shape: z.array(z.number().int().min(1).max(1 << 24)).min(1).max(8),
});
export type TensorSpec = z.output<typeof tensorSpec>;

export const headers = {
  submit: z.strictObject({
    job_id: jobId,
    kind: z.string().regex(/^[a-z][a-z0-9-]{0,63}$/),
    params: z.record(z.string(), z.union([z.number(), z.string(), z.boolean()])).default({}),
    frac_bits: z.number().int().min(0).max(30),
    inputs: z.array(tensorSpec).min(1).max(16),
  }),
  accepted: z.strictObject({ job_id: jobId, party: z.number().int().min(0).max(2) }),
  progress: z.strictObject({ job_id: jobId, party: z.number().int().min(0).max(2), stage: z.string().max(64) }),
  result: z.strictObject({ job_id: jobId, party: z.number().int().min(0).max(2), outputs: z.array(tensorSpec).min(1).max(16) }),
  error: z.strictObject({ job_id: jobId.optional(), party: z.number().int().min(0).max(2).optional(), code: z.string().max(64), message: z.string().max(4096) }),
  fetch: z.strictObject({ job_id: jobId }),
  cancel: z.strictObject({ job_id: jobId }),
};
export type Header<T extends MsgType> = z.output<(typeof headers)[T]>;

export interface JobMessage<T extends MsgType = MsgType> {
  type: T;
  header: Header<T>;
  body: Uint8Array;
}

export function encodeMessage<T extends MsgType>(type: T, header: Header<T>, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(header));
  if (h.length > MAX_HEADER_BYTES) throw new JobWireError(`${type} header of ${h.length} bytes exceeds ${MAX_HEADER_BYTES}`);
  const out = new Uint8Array(6 + h.length + body.length);
  const v = new DataView(out.buffer);
  out[0] = WIRE_VERSION;
  out[1] = MSG[type];
  v.setUint32(2, h.length, true);
  out.set(h, 6);
  out.set(body, 6 + h.length);
  return out;
}

export function decodeMessage(frame: Uint8Array): JobMessage {
  if (frame.length < 6) throw new JobWireError(`job message of ${frame.length} bytes is shorter than its 6-byte preamble`);
  if (frame[0] !== WIRE_VERSION) throw new JobWireError(`job message version ${frame[0]} is not supported (this party speaks version ${WIRE_VERSION})`);
  const type = TYPE_NAMES[frame[1]];
  if (!type) throw new JobWireError(`unknown job message type ${frame[1]}`);
  const len = new DataView(frame.buffer, frame.byteOffset, frame.length).getUint32(2, true);
  if (len > MAX_HEADER_BYTES || 6 + len > frame.length) throw new JobWireError(`${type} header length ${len} does not fit the ${frame.length}-byte message`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(frame.subarray(6, 6 + len)));
  } catch (e) {
    throw new JobWireError(`${type} header is not UTF-8 JSON: ${(e as Error).message}`);
  }
  const r = headers[type].safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new JobWireError(`${type} header: ${i.path.join('.') || '(top level)'}: ${i.message}`);
  }
  return { type, header: r.data, body: frame.subarray(6 + len) } as JobMessage;
}

export function elementsOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Concatenates share pairs as the body of a submit or result message. */
export function encodePairs(pairs: readonly SharePair[]): Uint8Array {
  const n = pairs.reduce((s, p) => s + p.a.length + p.b.length, 0);
  const out = new BigInt64Array(n);
  let off = 0;
  for (const p of pairs) {
    out.set(p.a, off);
    out.set(p.b, off + p.a.length);
    off += p.a.length + p.b.length;
  }
  return new Uint8Array(out.buffer);
}

/** Splits a body into share pairs of the given shapes; the size must match exactly. */
export function decodePairs(body: Uint8Array, specs: readonly TensorSpec[]): SharePair[] {
  const total = specs.reduce((s, t) => s + 2 * elementsOf(t.shape), 0);
  if (body.length !== total * 8) throw new JobWireError(`share body has ${body.length} bytes; the declared tensors need ${total * 8}`);
  const words = body.byteOffset % 8 === 0 ? new BigInt64Array(body.buffer, body.byteOffset, total) : new BigInt64Array(new Uint8Array(body).buffer); // a copy: Buffer#slice would be a view
  let off = 0;
  return specs.map((t) => {
    const n = elementsOf(t.shape);
    const pair = { shape: [...t.shape], a: words.slice(off, off + n), b: words.slice(off + n, off + 2 * n) };
    off += 2 * n;
    return pair;
  });
}
