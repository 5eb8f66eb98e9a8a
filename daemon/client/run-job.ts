/** `qmpc run`: share inputs, submit to the committee in a cluster file, reconstruct and return the outputs. */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { UsageError } from '../errors.ts';
import { JobClient } from './job-client.ts';
import { prepareJob, reconstructOutputs, type PlainTensor } from './job-request.ts';
import { committeeMemberSchema } from '../config/schema.ts';

export interface RunClientJobOptions {
  clusterFile: string;
  kind: string;
  inputs: PlainTensor[];
  timeoutMs?: number;
  /** Print per-party progress to stderr. */
  progress?: boolean;
}

export function readCommittee(file: string) {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`cannot read cluster file ${file}: ${(e as Error).message}`);
  }
  const r = z.strictObject({ committee: z.array(committeeMemberSchema).length(3) }).safeParse(doc);
  if (!r.success) throw new UsageError(`cluster file ${file}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data.committee;
}

export async function runClientJob(o: RunClientJobOptions): Promise<{ name: string; shape: number[]; values: Float64Array }[]> {
  const committee = readCommittee(o.clusterFile);
  const job = prepareJob(o.kind, o.inputs);
  const client = await JobClient.create(committee, { timeoutMs: o.timeoutMs });
  // Ctrl-C stops the job on the parties too, instead of leaving them computing for nobody.
  const interrupted = new AbortController();
  const onInt = () => {
    process.stderr.write(`  cancelling job ${job.header.job_id}…\n`);
    void client.cancel(job.header.job_id).finally(() => interrupted.abort(new Error('interrupted')));
  };
  process.once('SIGINT', onInt);
  try {
    const results = await client.run(job, {
      signal: interrupted.signal,
      onProgress: o.progress ? (party, stage) => process.stderr.write(`  party ${party}: ${stage}\n`) : undefined,
    });
    return reconstructOutputs(results, job.header.frac_bits);
  } finally {
    process.off('SIGINT', onInt);
    await client.close();
  }
}
