/**
 * Running one admitted job on one party over its MPC session: first the
 * admission round — every party sends the digest of the job header it holds
 * to the other two and waits for theirs, so a job runs only when all three
 * hold the same request — then key setup and the job kind's protocol.
 */
import { createHash } from 'node:crypto';
import { toPair, type SharePair } from '../../protocols/arith.ts';
import { Party } from '../../protocols/party.ts';
import { TimeoutError } from '../../protocols/errors.ts';
import type { ComputeBackend } from '../../protocols/backend.ts';
import type { PartyIndex, Transport } from '../../protocols/transport.ts';
import { QmpcError } from '../errors.ts';
import { jobKind, sharesOf } from './kinds.ts';
import type { Header } from './wire.ts';

export class AdmissionError extends QmpcError {
  constructor(message: string, cause?: unknown) {
    super('ERR_ADMISSION', message, { cause });
  }
}

/** A canonical digest of what the client asked for (key order and whitespace do not matter). */
export function jobDigest(h: Header<'submit'>): Uint8Array {
  const params = Object.fromEntries(Object.entries(h.params).sort(([a], [b]) => (a < b ? -1 : 1)));
  const canonical = JSON.stringify([h.job_id, h.kind, params, h.frac_bits, h.inputs.map((i) => [i.name, i.shape])]);
  return createHash('sha256').update(canonical).digest();
}

export interface RunJobOptions {
  transport: Transport;
  header: Header<'submit'>;
  inputs: readonly SharePair[];
  backend: ComputeBackend;
  roundTimeoutMs: number;
  admissionTimeoutMs: number;
  signal?: AbortSignal;
  onStage?: (stage: string) => void;
}

export async function admit(transport: Transport, header: Header<'submit'>, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const me = transport.party;
  const others = ([0, 1, 2] as PartyIndex[]).filter((j) => j !== me);
  const digest = jobDigest(header);
  for (const j of others) transport.send(j, digest);
  await Promise.all(
    others.map(async (j) => {
      let theirs: Uint8Array;
      try {
        theirs = await transport.recv(j, { timeoutMs, signal });
      } catch (e) {
        if (e instanceof TimeoutError) {
          throw new AdmissionError(`job ${header.job_id}: party ${j} did not confirm the job within ${timeoutMs / 1000} s (not connected, or the client did not submit to it)`, e);
        }
        throw e;
      }
      if (theirs.length !== digest.length || !theirs.every((b, k) => b === digest[k])) {
        throw new AdmissionError(`job ${header.job_id}: party ${j} holds a different request for this job id; refusing to run`);
      }
    }),
  );
}

export interface JobRun {
  outputs: SharePair[];
  /** Communication rounds of the job's protocol (setup included, admission not). */
  rounds: number;
}

export async function runJob(o: RunJobOptions): Promise<JobRun> {
  const kind = jobKind(o.header.kind);
  o.onStage?.('admission');
  await admit(o.transport, o.header, o.admissionTimeoutMs, o.signal);
  o.onStage?.('setup');
  const p = await Party.setup(o.transport, { backend: o.backend, fracBits: o.header.frac_bits, timeoutMs: o.roundTimeoutMs, signal: o.signal });
  o.onStage?.('compute');
  const outs = await kind.run(p, sharesOf(o.inputs), o.header.params);
  return { outputs: outs.map(toPair), rounds: p.cost.rounds };
}
