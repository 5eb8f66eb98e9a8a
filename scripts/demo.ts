/**
 * npm run demo: three qmpcd daemons on loopback compute softmax(x @ w) on a
 * client's private x and w, and the result is printed next to the plaintext.
 *
 *   1. `qmpc cluster init` in a temporary directory (keys, configs)
 *   2. three daemons as child processes; wait until each answers on its admin socket
 *      and sees both peers
 *   3. the client secret-shares x and w, submits the job to all three parties,
 *      shows their progress, reconstructs the output
 *   4. compare with the plaintext computation; stop the daemons (SIGTERM)
 */
import { startLocalCluster } from './local-cluster.ts';
import { JobClient } from '../daemon/client/job-client.ts';
import { prepareJob, reconstructOutputs } from '../daemon/client/job-request.ts';

const m = 4, k = 16, n = 6;
// Deterministic "private" inputs so the run is reproducible.
const x = Array.from({ length: m * k }, (_, i) => Math.sin(i * 0.7) * 2);
const w = Array.from({ length: k * n }, (_, i) => Math.cos(i * 0.3) * 0.5);

function plaintext(): Float64Array {
  const out = new Float64Array(m * n);
  for (let r = 0; r < m; r++) {
    const row = Array.from({ length: n }, (_, j) => x.slice(r * k, (r + 1) * k).reduce((s, v, q) => s + v * w[q * n + j], 0));
    const mx = Math.max(...row);
    const e = row.map((v) => Math.exp(v - mx));
    const z = e.reduce((a, b) => a + b, 0);
    e.forEach((v, j) => (out[r * n + j] = v / z));
  }
  return out;
}

const step = (s: string) => process.stdout.write(`\n== ${s}\n`);
const t0 = performance.now();
step('qmpc cluster init + starting three party daemons');
const cluster = await startLocalCluster();
let code = 0;
try {
  for (const mbr of cluster.layout.committee) process.stdout.write(`   party ${mbr.index}  ${mbr.peer_id}  ${mbr.addrs[0]}\n`);
  await cluster.waitConnected();
  for (let i = 0; i < 3; i++) {
    const s = (await cluster.admin(i, 'status')) as { peersConnected: number[]; backend: string };
    process.stdout.write(`   party ${i} ready: peers ${s.peersConnected.join(', ')} connected, backend ${s.backend}\n`);
  }

  step(`client: secret-sharing x [${m}×${k}] and w [${k}×${n}], submitting softmax(x @ w)`);
  const job = prepareJob('matmul-softmax', [{ name: 'x', shape: [m, k], values: x }, { name: 'w', shape: [k, n], values: w }]);
  const client = await JobClient.create(cluster.layout.committee, { timeoutMs: 60_000 });
  const stages = ['…', '…', '…'];
  const results = await client.run(job, {
    onProgress: (party, stage) => {
      stages[party] = stage;
      process.stdout.write(`   job ${job.header.job_id.slice(0, 8)}  ${stages.map((s, i) => `party ${i}: ${s.padEnd(9)}`).join('  ')}\n`);
    },
  });
  await client.close();
  const [y] = reconstructOutputs(results, job.header.frac_bits);
  const want = plaintext();

  step('result (secure) vs plaintext');
  let worst = 0;
  for (let r = 0; r < m; r++) {
    const got = [...y.values.subarray(r * n, (r + 1) * n)].map((v) => v.toFixed(4).padStart(7)).join(' ');
    const ref = [...want.subarray(r * n, (r + 1) * n)].map((v) => v.toFixed(4).padStart(7)).join(' ');
    process.stdout.write(`   row ${r}  secure ${got}\n          plain  ${ref}\n`);
    for (let j = 0; j < n; j++) worst = Math.max(worst, Math.abs(y.values[r * n + j] - want[r * n + j]));
  }
  const ok = worst <= 1e-2;
  process.stdout.write(`\n   max |secure − plaintext| = ${worst.toExponential(2)} ${ok ? '(within 1e-2)' : 'TOO LARGE'}\n`);
  for (let i = 0; i < 3; i++) {
    const jobs = (await cluster.admin(i, 'job', { id: job.header.job_id })) as { state: string; stats?: { bytesSent: number; durationMs: number } };
    process.stdout.write(`   party ${i}: job ${jobs.state}, sent ${jobs.stats?.bytesSent ?? 0} bytes, ${jobs.stats?.durationMs ?? 0} ms\n`);
  }
  if (!ok) code = 1;
} catch (e) {
  process.stderr.write(`demo failed: ${(e as Error).message}\n(daemon logs in ${cluster.dir}/party-*/daemon.log)\n`);
  code = 1;
} finally {
  step('stopping the daemons (SIGTERM)');
  const how = await Promise.all([0, 1, 2].map((i) => cluster.stop(i)));
  process.stdout.write(`   exit codes: ${how.join(', ')}\n`);
  await cluster.close();
}
process.stdout.write(`\ndone in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
process.exitCode = code;
