import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KafkaQueue } from "../../internal/queue/kafka.js";
import { ConsumerGroups, topicSpecs, Topics } from "../../internal/pipeline/topics.js";
import { engineScope } from "../support/engine-scope.js";
import { engineConfig } from "../support/engines.js";
import { joinForeign } from "../support/kafka-groups.js";
import { runToExit } from "../support/processes.js";

// A notifier that could not join its consumer group ended on an uncaught stack trace (its top-level
// await rejected), burying the cause an operator needs; the pipeline says it in one line.
describe("notifier: cannot start consuming", function () {
  this.timeout(180_000);
  const scope = engineScope(engineConfig(), "nstart");
  const ns = scope.env.CHAT_KAFKA_NAMESPACE!;
  // The notifier writes its VAPID key pair there.
  const keysDir = mkdtempSync(join(tmpdir(), "chat-notifier-start-keys-"));
  after(async () => {
    rmSync(keysDir, { recursive: true, force: true });
    await scope.drop();
  });

  it("exits 1 with one line naming why", async () => {
    const queue = new KafkaQueue({ brokers: engineConfig().kafkaBrokers, namespace: ns });
    await queue.ensureTopics(topicSpecs(1));
    await queue.close();
    // A member of another protocol holds the notifier's group: Kafka refuses the notifier's consumer.
    const foreign = await joinForeign(`${ns}.${ConsumerGroups.notifier}`, `${ns}.${Topics.notifications}`);
    assert.ok(foreign, "the foreign member took the notifier's group");
    try {
      const { code, stderr } = await runToExit("notifier", { ...scope.env, CHAT_KEYS_DIR: keysDir });
      assert.equal(code, 1, stderr);
      assert.match(stderr, /^notifier: cannot start consuming: .*stopped for good/m);
      assert.doesNotMatch(stderr, /uncaught|^\s+at /m, "no stack trace");
    } finally {
      await foreign.disconnect();
    }
  });
});
