/**
 * A client of the three parties: its own ephemeral libp2p identity, Noise
 * channels to each party whose peer id it checks (the dial address carries
 * /p2p/<peer id>, so a wrong or impersonating host fails the handshake), and
 * /qmpc/job/1 requests sent to all three at once.
 */
import { createLibp2p, type Libp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { multiaddr } from '@multiformats/multiaddr';
import { lpStream } from '@libp2p/utils';
import { QmpcError } from '../errors.ts';
import { JOB_PROTOCOL, JobWireError, MAX_HEADER_BYTES, decodeMessage, encodeMessage, type Header, type MsgType } from '../jobs/wire.ts';
import type { PartyResult, PreparedJob } from './job-request.ts';

export interface CommitteeEntry {
  index: number;
  peer_id: string;
  addrs: string[];
}

export interface JobClientOptions {
  /** Limit for one whole job, submission to result (default 5 minutes). */
  timeoutMs?: number;
  maxResponseBytes?: number;
}

export class JobFailedError extends QmpcError {
  readonly party: number;
  constructor(party: number, code: string, message: string) {
    super(code, `party ${party}: ${message}`);
    this.party = party;
  }
}

export class JobClient {
  private readonly node: Libp2p;
  private readonly committee: CommitteeEntry[];
  private readonly opts: Required<JobClientOptions>;

  private constructor(node: Libp2p, committee: CommitteeEntry[], opts: JobClientOptions) {
    this.node = node;
    this.committee = [...committee].sort((a, b) => a.index - b.index);
    this.opts = { timeoutMs: opts.timeoutMs ?? 300_000, maxResponseBytes: opts.maxResponseBytes ?? 256 * 1024 * 1024 };
  }

  static async create(committee: CommitteeEntry[], opts: JobClientOptions = {}): Promise<JobClient> {
    if (committee.length !== 3) throw new QmpcError('ERR_USAGE', `a committee has 3 parties, got ${committee.length}`);
    for (const m of committee) if (m.addrs.length === 0) throw new QmpcError('ERR_USAGE', `party ${m.index} has no address to dial`);
    const node = await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] });
    return new JobClient(node, committee, opts);
  }

  /** One request/response exchange with one party; progress messages go to onMessage. */
  private async exchange(m: CommitteeEntry, request: Uint8Array, signal: AbortSignal, onMessage: (type: MsgType, header: unknown) => void): Promise<PartyResult> {
    const addrs = m.addrs.map((a) => multiaddr(a.includes('/p2p/') ? a : `${a}/p2p/${m.peer_id}`));
    let stream;
    try {
      stream = await this.node.dialProtocol(addrs, JOB_PROTOCOL, { signal });
    } catch (e) {
      throw new JobFailedError(m.index, 'ERR_UNAVAILABLE', `cannot reach ${m.addrs.join(', ')} as ${m.peer_id}: ${(e as Error).message}`);
    }
    const lp = lpStream(stream, { maxDataLength: this.opts.maxResponseBytes + MAX_HEADER_BYTES + 6 });
    try {
      await lp.write(request, { signal });
      for (;;) {
        const msg = decodeMessage((await lp.read({ signal })).subarray());
        onMessage(msg.type, msg.header);
        if (msg.type === 'error') {
          const h = msg.header as Header<'error'>;
          throw new JobFailedError(m.index, h.code, h.message);
        }
        if (msg.type === 'result') {
          const h = msg.header as Header<'result'>;
          if (h.party !== m.index) throw new JobFailedError(m.index, 'ERR_PROTOCOL', `answered as party ${h.party}`);
          return { party: m.index, outputs: h.outputs, body: new Uint8Array(msg.body) };
        }
      }
    } catch (e) {
      if (e instanceof JobFailedError) throw e;
      if (signal.aborted) {
        if (signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError') throw new JobFailedError(m.index, 'ERR_JOB_TIMEOUT', `no result within ${this.opts.timeoutMs / 1000} s`);
        throw new JobFailedError(m.index, 'ERR_CANCELLED', 'the client stopped waiting (cancelled)');
      }
      if (e instanceof JobWireError) throw new JobFailedError(m.index, 'ERR_PROTOCOL', e.message);
      // The stream ended or was reset: the party went away (crash, restart, network).
      throw new JobFailedError(m.index, 'ERR_PARTY_LOST', `the connection closed before the party answered (${(e as Error).message})`);
    } finally {
      stream.abort(new Error('request finished'));
    }
  }

  private async all(build: (m: CommitteeEntry) => Uint8Array, onProgress?: (party: number, stage: string) => void, signal?: AbortSignal): Promise<PartyResult[]> {
    const sig = AbortSignal.any([AbortSignal.timeout(this.opts.timeoutMs), ...(signal ? [signal] : [])]);
    const settled = await Promise.allSettled(
      this.committee.map((m) =>
        this.exchange(m, build(m), sig, (type, header) => {
          if (type === 'progress') onProgress?.(m.index, (header as Header<'progress'>).stage);
          if (type === 'accepted') onProgress?.(m.index, 'accepted');
        }),
      ),
    );
    const failed = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed.length) {
      // Report the most telling failure: a party that is gone or unreachable explains the others' session errors.
      const errs = failed.map((f) => f.reason as JobFailedError);
      const rank = (e: JobFailedError) => (e.code === 'ERR_PARTY_LOST' || e.code === 'ERR_UNAVAILABLE' ? 0 : e.code === 'ERR_SESSION_CLOSED' || e.code === 'ERR_TIMEOUT' ? 2 : 1);
      throw errs.sort((a, b) => rank(a) - rank(b))[0];
    }
    return settled.map((s) => (s as PromiseFulfilledResult<PartyResult>).value);
  }

  /** Submits a prepared job to all three parties and returns their output shares. */
  run(job: PreparedJob, opts: { onProgress?: (party: number, stage: string) => void; signal?: AbortSignal } = {}): Promise<PartyResult[]> {
    return this.all((m) => encodeMessage('submit', job.header, job.bodies[m.index]), opts.onProgress, opts.signal);
  }

  /** Fetches the stored output shares of a finished job. */
  fetch(jobId: string): Promise<PartyResult[]> {
    return this.all(() => encodeMessage('fetch', { job_id: jobId }));
  }

  /**
   * Asks every party to stop a running job. Resolves with the parties that
   * stopped it; the others had already finished it or never held it.
   */
  async cancel(jobId: string): Promise<number[]> {
    const sig = AbortSignal.timeout(Math.min(this.opts.timeoutMs, 30_000));
    const settled = await Promise.allSettled(this.committee.map(async (m) => {
      const addrs = m.addrs.map((a) => multiaddr(a.includes('/p2p/') ? a : `${a}/p2p/${m.peer_id}`));
      const stream = await this.node.dialProtocol(addrs, JOB_PROTOCOL, { signal: sig });
      try {
        const lp = lpStream(stream, { maxDataLength: MAX_HEADER_BYTES + 6 });
        await lp.write(encodeMessage('cancel', { job_id: jobId }), { signal: sig });
        const msg = decodeMessage((await lp.read({ signal: sig })).subarray());
        if (msg.type !== 'accepted') throw new Error(msg.type === 'error' ? (msg.header as Header<'error'>).message : msg.type);
        return m.index;
      } finally {
        stream.abort(new Error('request finished'));
      }
    }));
    return settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  }

  async close(): Promise<void> {
    await this.node.stop();
  }
}
