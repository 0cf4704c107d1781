import assert from "node:assert/strict";
import { once } from "node:events";
import type { ChildProcess } from "node:child_process";
import { grpcSignUpsInFlight } from "../support/api.js";
import { startRole, useDeployment } from "../support/processes.js";

/**
 * Sign-ups in flight on three native connections (each under its 100 streams), SIGTERM once the first
 * is answered: every one must be answered. Each hashes a password on the thread pool, so the last
 * come a few seconds after the stop (about 2.3 s on this project's machines): past the 2 s the gRPC
 * listener once allowed. The cut ones were stored with their replies lost. The grace is raised to the
 * most CHAT_DRAIN_GRACE_MS takes, so that a busy machine's hashes stay within it: what is pinned is
 * that the gRPC listener keeps the grace the HTTP one does, not how fast this machine hashes.
 */
const GRACE_MS = 20_000;

async function signUpsThroughStop(grpcUrl: string, child: ChildProcess): Promise<void> {
  // Under the api's 256 hashes pending at once, past which a sign-up is refused.
  const count = 240;
  const inFlight = grpcSignUpsInFlight(grpcUrl, count, 3);
  await Promise.race(inFlight);
  const exited = once(child, "exit") as Promise<[number | null]>;
  child.kill("SIGTERM");
  const answers = await Promise.all(inFlight);
  const failed = answers.filter((a) => a !== "OK");
  assert.deepEqual(failed, [], `${failed.length} of ${count} sign-ups cut by the stop`);
  const [code] = await exited;
  assert.equal(code, 0);
}

describe("api: SIGTERM with native gRPC calls in flight", function () {
  this.timeout(180_000);
  const deployment = useDeployment("apidraingrpc");

  it("answers every call it holds for as long as it answers HTTP requests, then exits 0", async () => {
    const api = await startRole("api", { ...deployment.env, CHAT_DRAIN_GRACE_MS: String(GRACE_MS) });
    await signUpsThroughStop(String(api.info.grpc), api.child);
  });
});
