/**
 * The party side of /qmpc/job/1: one request per stream. A submission is
 * answered with `accepted`, `progress` messages as the job moves through its
 * stages, then `result` (this party's output shares) or `error`. `fetch`
 * returns a stored result; `cancel` stops a running job.
 */
import type { Stream } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import type { PartyIndex } from '../../protocols/transport.ts';
import { QmpcError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { JobService } from './service.ts';
import { MAX_HEADER_BYTES, decodeMessage, encodeMessage, type Header } from './wire.ts';

export interface JobProtocolOptions {
  party: PartyIndex;
  maxRequestBytes: number;
  /** How long a client may take to send its request once the stream is open. */
  requestTimeoutMs: number;
}

export function jobStreamHandler(service: JobService, opts: JobProtocolOptions, deps: { logger: Logger }) {
  return async (stream: Stream): Promise<void> => {
    const lp = lpStream(stream, { maxDataLength: opts.maxRequestBytes + MAX_HEADER_BYTES + 6 });
    let jobId: string | undefined;
    const reply = (bytes: Uint8Array) => lp.write(bytes, { signal: AbortSignal.timeout(opts.requestTimeoutMs) });
    try {
      const frame = await lp.read({ signal: AbortSignal.timeout(opts.requestTimeoutMs) });
      const msg = decodeMessage(frame.subarray());
      jobId = 'job_id' in msg.header ? (msg.header.job_id as string) : undefined;
      if (msg.type === 'submit') {
        const h = msg.header as Header<'submit'>;
        await reply(encodeMessage('accepted', { job_id: h.job_id, party: opts.party }));
        const outcome = await service.submit(h, msg.body, (stage) => {
          reply(encodeMessage('progress', { job_id: h.job_id, party: opts.party, stage })).catch(() => {});
        });
        await reply(encodeMessage('result', { job_id: h.job_id, party: opts.party, outputs: outcome.outputs }, outcome.body));
      } else if (msg.type === 'fetch') {
        const outcome = await service.fetch(jobId!);
        await reply(encodeMessage('result', { job_id: jobId!, party: opts.party, outputs: outcome.outputs }, outcome.body));
      } else if (msg.type === 'cancel') {
        if (!service.cancel(jobId!)) throw new QmpcError('ERR_JOB_NOT_RUNNING', `job ${jobId} is not running on party ${opts.party}`);
        await reply(encodeMessage('accepted', { job_id: jobId!, party: opts.party }));
      } else {
        throw new QmpcError('ERR_JOB_WIRE', `a client may send submit, fetch or cancel, not ${msg.type}`);
      }
      await stream.close();
    } catch (e) {
      const code = e instanceof QmpcError ? e.code : 'ERR_JOB_WIRE';
      const message = e instanceof Error ? e.message : String(e);
      deps.logger.debug({ job: jobId, code, error: message }, 'job request ended with an error');
      try {
        await reply(encodeMessage('error', { ...(jobId ? { job_id: jobId } : {}), party: opts.party, code, message: message.slice(0, 4000) }));
        await stream.close();
      } catch {
        stream.abort(e instanceof Error ? e : new Error(message));
      }
    }
  };
}
