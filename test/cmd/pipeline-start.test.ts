import assert from "node:assert/strict";
import { KafkaQueue } from "../../internal/queue/kafka.js";
import { ConsumerGroups, topicSpecs, Topics } from "../../internal/pipeline/topics.js";
import { engineScope } from "../support/engine-scope.js";
import { engineConfig } from "../support/engines.js";
import { groupMembers, joinForeign } from "../support/kafka-groups.js";
import { runToExit } from "../support/processes.js";

// A pipeline worker whose second stage cannot join its consumer group used to leave the first
// stage's consumer in its group: Kafka kept that stage's partitions on a process that was gone (or
// going) until the session timeout, and every message on them stalled.
describe("pipeline: a stage that cannot start", function () {
  this.timeout(180_000);
  const scope = engineScope(engineConfig(), "pstart");
  const ns = scope.env.CHAT_KAFKA_NAMESPACE!;
  after(() => scope.drop());

  it("leaves the stages already started out of their groups, and exits 1 naming the stage and why", async () => {
    const partitions = 2;
    const queue = new KafkaQueue({ brokers: engineConfig().kafkaBrokers, namespace: ns });
    await queue.ensureTopics(topicSpecs(partitions));
    await queue.close();
    // A member of another protocol holds the inbox writer's group: Kafka refuses the stage's consumer.
    const foreign = await joinForeign(`${ns}.${ConsumerGroups.inboxWriter}`, `${ns}.${Topics.inbox}`);
    assert.ok(foreign, "the foreign member took the inbox writer's group");
    try {
      const { code, stderr } = await runToExit("pipeline", { ...scope.env, CHAT_KAFKA_PARTITIONS: String(partitions), CHAT_PIPELINE_STAGES: "sequencer,inbox-writer" });
      assert.equal(code, 1, stderr);
      assert.match(stderr, /^pipeline: cannot start the inbox-writer stage: .*stopped for good/m);
      // Right after the exit: a member that had joined stays in its group until the session timeout.
      assert.deepEqual(await groupMembers([`${ns}.${ConsumerGroups.sequencer}`]), { [`${ns}.${ConsumerGroups.sequencer}`]: 0 });
    } finally {
      await foreign.disconnect();
    }
  });
});
