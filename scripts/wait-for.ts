/** Bounded polling, shared by the demo's cluster runner and the tests. */

/**
 * Calls `probe` every `everyMs` until it returns something other than null or
 * undefined (errors count as "not yet"); throws after `timeoutMs` naming
 * `what` and the last error, or at once when `signal` aborts.
 */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | null | undefined> | T | null | undefined,
  everyMs = 100,
  signal?: AbortSignal,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    if (signal?.aborted) throw new Error(`${what}: stopped waiting (${String(signal.reason ?? 'aborted')})`);
    try {
      const v = await probe();
      if (v !== null && v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
