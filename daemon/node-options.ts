/**
 * Node options the daemon runs with, wherever it is started: the systemd
 * unit, the Docker image, /usr/bin/qmpc, the CLI's shebang, the demo's local
 * cluster and the network benchmark (a test keeps the static ones in step).
 *
 * --max-semi-space-size=2 (MiB): a small young generation. What an MPC
 * transfer leaves behind is mostly buffers outside V8's heap (socket reads,
 * message bodies) held by a few small objects. With V8's default young
 * generation (up to 16 MiB) those objects seldom fill it, so the buffers pile
 * up until their external size starts a full collection, which marks the
 * whole heap every few tens of MiB received. With 2 MiB, scavenges come often
 * enough to free the buffers while they are young, at a fraction of the cost:
 * receiving 1 MiB messages took 2.0–2.3 instead of 3.4–3.7 CPU s/GiB
 * (npm run bench:net), and the engine benchmark did not change.
 */
export const DAEMON_NODE_OPTIONS: readonly string[] = ['--max-semi-space-size=2'];

/** Which of DAEMON_NODE_OPTIONS this process was started without (its exec arguments and NODE_OPTIONS). */
export function missingNodeOptions(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)]);
  return DAEMON_NODE_OPTIONS.filter((o) => !given.has(o));
}
