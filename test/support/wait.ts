/** Polls `check` (sync or async) until it is truthy; fails with `what` after the deadline. Never a fixed sleep. */
export async function waitFor<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 30_000,
  intervalMs = 10,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Waits out a server's `retry_after_ms`: at least `ms` by the monotonic clock. A timer counts
 * from the event loop's cached time, already behind when the loop has been busy, so a bare
 * setTimeout(ms) can fire early and come back to a server that is still refusing.
 */
export async function waitOut(ms: number): Promise<void> {
  const until = performance.now() + ms;
  for (let left = ms; left > 0; left = until - performance.now()) await new Promise((r) => setTimeout(r, Math.ceil(left)));
}
