import assert from "node:assert/strict";
import { join } from "node:path";
import Database from "better-sqlite3";
import { signUp } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { scrapeMetric } from "../support/metrics.js";
import { waitFor } from "../support/wait.js";

// cmd/notifier counts the failed engine reads it retries or gets by without (chat_push_engine_errors_total);
// chatd's embedded notifier counted none, so a chat.db failing them showed in no metric.
describe("chatd: the push notifier's failed store reads are counted", function () {
  this.timeout(60_000);
  const suite = useChatd({ env: { CHAT_PUSH_COLLAPSE_MS: "0", CHAT_PUSH_BACKOFF_MS: "50" } });
  const errors = (op: string) => scrapeMetric(`${suite.chatd.httpUrl}/metrics`, "chat_push_engine_errors_total", `op="${op}"`);

  it("as chat_push_engine_errors_total{op}, 0 from the start, and one more for each failed read of the push endpoints", async () => {
    for (const op of ["endpoints", "device", "mutes", "online"]) assert.equal(await errors(op), 0, op);
    const alice = await signUp(suite.chatd.httpUrl, "alice");
    const bob = await signUp(suite.chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    // Another connection takes the endpoints' table away: chatd's reads of it fail from now on.
    const db = new Database(join(suite.chatd.dataDir, "chat.db"), { timeout: 10_000 });
    try {
      db.exec("ALTER TABLE push_endpoints RENAME TO push_endpoints_away");
    } finally {
      db.close();
    }
    const a = new TestDevice(suite.chatd.wsUrl, alice.devices[0]!.token);
    suite.devices.push(a);
    await a.connect();
    await a.send(channel!.channelId, "bob is offline: a push is due");
    await waitFor(async () => ((await errors("endpoints")) ?? 0) >= 1, "a failed read of the push endpoints counted");
  });
});
