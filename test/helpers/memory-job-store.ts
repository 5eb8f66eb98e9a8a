/** An in-memory JobStore for service-logic tests (the daemon uses daemon/store on LevelDB). */
import type { JobRecord, JobStore } from '../../daemon/jobs/service.ts';
import type { TensorSpec } from '../../daemon/jobs/wire.ts';

export class MemoryJobStore implements JobStore {
  readonly jobs = new Map<string, JobRecord>();
  readonly results = new Map<string, { outputs: TensorSpec[]; body: Uint8Array; expiresAt: number }>();
  async getJob(id: string) {
    const r = this.jobs.get(id);
    return r ? structuredClone(r) : null;
  }
  async putJob(rec: JobRecord) {
    this.jobs.set(rec.id, structuredClone(rec));
  }
  async listJobs(opts: { state?: JobRecord['state']; limit?: number } = {}) {
    return [...this.jobs.values()].filter((r) => !opts.state || r.state === opts.state).slice(0, opts.limit ?? Infinity);
  }
  async putResult(id: string, outputs: TensorSpec[], body: Uint8Array, expiresAt: number) {
    this.results.set(id, { outputs, body, expiresAt });
  }
  async takeResult(id: string) {
    const r = this.results.get(id);
    this.results.delete(id);
    return r && r.expiresAt > Date.now() ? { outputs: r.outputs, body: r.body } : null;
  }
}
