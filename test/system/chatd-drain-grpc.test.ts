import assert from "node:assert/strict";
import { once } from "node:events";
import { grpcSignUpsInFlight } from "../support/api.js";
import { removeDataDir, startChatd } from "../support/chatd.js";

/**
 * chatd's gRPC listener serves the public API's unary calls beside the native
 * sessions: sign-ups in flight on three native connections, SIGTERM once the
 * first is answered, must all be answered, as over HTTP (chatd-drain.test.ts)
 * and on the api's gRPC listener (api-drain-grpc.test.ts). Each hashes a
 * password on the thread pool, so the last come seconds after the stop: past
 * the 2 s the gRPC listener once allowed. The grace is raised to 20 s, the
 * most CHAT_DRAIN_GRACE_MS takes, so that a busy machine's hashes (2.3 s on
 * an idle one) stay within it: what is pinned is that the gRPC listener keeps
 * the grace the HTTP one does, not how fast this machine hashes.
 */
const GRACE_MS = 20_000;
describe("chatd: SIGTERM with native gRPC calls in flight", function () {
  this.timeout(180_000);

  it("answers every call it holds for as long as it answers HTTP requests, then exits 0", async () => {
    const chatd = await startChatd({ env: { CHAT_DRAIN_GRACE_MS: String(GRACE_MS) } });
    try {
      // Under the 256 hashes pending at once past which a sign-up is refused.
      const count = 240;
      const inFlight = grpcSignUpsInFlight(chatd.grpcUrl, count, 3);
      await Promise.race(inFlight);
      const exited = once(chatd.child, "exit") as Promise<[number | null]>;
      const stoppedAt = Date.now();
      chatd.child.kill("SIGTERM");
      const answers = await Promise.all(inFlight);
      const lastAnswerMs = Date.now() - stoppedAt;
      const failed = answers.filter((a) => a !== "OK");
      assert.deepEqual(failed, [], `${failed.length} of ${count} sign-ups cut by the stop (the last answered ${lastAnswerMs} ms after it)`);
      const [code] = await exited;
      assert.equal(code, 0);
    } finally {
      await chatd.kill();
      removeDataDir(chatd.dataDir);
    }
  });
});
