import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { KafkaQueue } from "../../internal/queue/kafka.js";
import { ConsumerGroups, topicSpecs, Topics } from "../../internal/pipeline/topics.js";
import { engineScope } from "../support/engine-scope.js";
import { engineConfig } from "../support/engines.js";
import { groupMembers, holdGroup, joinForeign } from "../support/kafka-groups.js";
import { freePort } from "../support/ports.js";
import { runToExit } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

// A pipeline worker whose second stage cannot join its consumer group used to leave the first
// stage's consumer in its group: Kafka kept that stage's partitions on a process that was gone (or
// going) until the session timeout, and every message on them stalled.
describe("pipeline: starting its stages", function () {
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

  it("a SIGTERM while a stage joins its group: the stage leaves the group before the process exits, and no further stage starts; meanwhile /readyz fails (stopping) and /livez passes", async () => {
    // A member of the sequencer's group holding a batch keeps the pipeline's sequencer joining until the test lets it go.
    const group = `${ns}.${ConsumerGroups.sequencer}`;
    const holder = await holdGroup(ns, ConsumerGroups.sequencer, Topics.submitted);
    let pipeline: ChildProcess | undefined;
    try {
      const ops = `http://127.0.0.1:${await freePort()}`;
      const exited = runToExit("pipeline", { ...scope.env, CHAT_KAFKA_PARTITIONS: "1", CHAT_PIPELINE_STAGES: "sequencer,inbox-writer", CHAT_OPS_PORT: ops.split(":")[2]! }, (child) => (pipeline = child));
      await waitFor(() => holder.revoked.aborted, "the pipeline's sequencer to begin joining the group", 120_000);
      const joinsBefore = holder.joins();
      pipeline!.kill("SIGTERM");
      // The stop waits on the join the holder keeps going: a drain. Not ready, and alive, or a
      // supervisor's liveness probe would kill the drain (and leave the stage in its group).
      const ready = await waitFor(async () => {
        const body = await (await fetch(`${ops}/readyz`)).text();
        return body.includes('"stopping"') && body;
      }, "/readyz to say the pipeline is stopping");
      assert.match(ready, /"status":"unavailable"/);
      const live = await fetch(`${ops}/livez`);
      assert.equal(live.status, 200, await live.text());
      holder.release();
      const { code, stderr } = await exited;
      await waitFor(() => holder.joins() > joinsBefore, "the holder back in the group");
      // Right after the exit: a member that had joined stays in its group until the session timeout.
      assert.deepEqual(await groupMembers([group]), { [group]: 1 }, "the pipeline's sequencer left behind in the group");
      // Nor does it go on to start the next stage, on a queue closed by then.
      assert.equal(code, 0, stderr);
      assert.doesNotMatch(stderr, /cannot start/);
      assert.deepEqual(await groupMembers([`${ns}.${ConsumerGroups.inboxWriter}`]), { [`${ns}.${ConsumerGroups.inboxWriter}`]: 0 });
    } finally {
      if (pipeline && pipeline.exitCode === null) pipeline.kill("SIGKILL");
      await holder.close();
    }
  });
});
