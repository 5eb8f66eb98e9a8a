/**
 * A qmpc client as a separate process, so that a test can run it inside a
 * network namespace (`ip netns exec NS node test/helpers/netns-client.ts FILE`).
 *
 * FILE holds a ClientRequest (JSON). The process prints one ClientReply (JSON)
 * on stdout and exits 0 whether the job succeeded or failed; a non-zero exit
 * means the client itself could not run.
 */
import { readFileSync } from 'node:fs';
import { JobClient, type CommitteeEntry } from '../../daemon/client/job-client.ts';
import { prepareJob, reconstructOutputs, type PlainTensor } from '../../daemon/client/job-request.ts';

export interface ClientRequest {
  committee: CommitteeEntry[];
  kind: string;
  inputs: { name: string; shape: number[]; values: number[] }[];
  /** Set by the test so that it knows the id even when the job fails. */
  jobId: string;
  /** The client's limit for the whole job. */
  timeoutMs: number;
}

export type ClientReply =
  | { ok: true; jobId: string; ms: number; outputs: { name: string; shape: number[]; values: number[] }[] }
  | { ok: false; jobId: string; ms: number; code: string; party: number | null; message: string };

async function main(file: string): Promise<ClientReply> {
  const req = JSON.parse(readFileSync(file, 'utf8')) as ClientRequest;
  const job = prepareJob(req.kind, req.inputs as PlainTensor[]);
  // The digest every party checks covers the header (job id included); the share bodies do not depend on it.
  job.header.job_id = req.jobId;
  const started = performance.now();
  const ms = () => Math.round(performance.now() - started);
  const client = await JobClient.create(req.committee, { timeoutMs: req.timeoutMs });
  try {
    const results = await client.run(job);
    const outputs = reconstructOutputs(results, job.header.frac_bits).map((o) => ({ name: o.name, shape: o.shape, values: [...o.values] }));
    return { ok: true, jobId: req.jobId, ms: ms(), outputs };
  } catch (e) {
    const err = e as Error & { code?: string; party?: number };
    return { ok: false, jobId: req.jobId, ms: ms(), code: err.code ?? 'ERR_UNKNOWN', party: typeof err.party === 'number' ? err.party : null, message: err.message };
  } finally {
    await client.close().catch(() => {});
  }
}

if (import.meta.main) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node test/helpers/netns-client.ts REQUEST.json\n');
    process.exit(64);
  }
  const reply = await main(file);
  process.stdout.write(JSON.stringify(reply) + '\n');
  // libp2p may leave timers behind a failed dial; the answer is out, so do not wait for them.
  process.exit(0);
}
