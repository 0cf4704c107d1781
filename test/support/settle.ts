/**
 * For tests on a faked clock (node:test's mock.timers): waits on setImmediate turns, which the
 * mock leaves alone, so what is due runs without the faked time moving.
 */

/** Resolves once `check` holds, running pending promise chains meanwhile; fails if they settle without it. */
export async function settled(check: () => boolean, what: string): Promise<void> {
  for (let round = 0; round < 200; round++) {
    if (check()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`did not happen on its own: ${what}`);
}

/** Runs pending promise chains without advancing the faked clock. */
export async function drain(): Promise<void> {
  for (let round = 0; round < 50; round++) await new Promise((r) => setImmediate(r));
}
