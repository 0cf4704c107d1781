import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { KafkaQueue } from "../../internal/queue/kafka.js";
import { ConsumerGroups, topicSpecs, Topics } from "../../internal/pipeline/topics.js";
import { engineConfig } from "../support/engines.js";
import { groupMembers, holdGroup, joinForeign } from "../support/kafka-groups.js";
import { runToExit, useDeployment } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

// A notifier that could not join its consumer group ended on an uncaught stack trace (its top-level
// await rejected), burying the cause an operator needs; the pipeline says it in one line.
describe("notifier: starting", function () {
  this.timeout(180_000);
  // The notifier writes its VAPID key pair in the deployment's keys.
  const deployment = useDeployment("nstart");
  const ns = deployment.scope.env.CHAT_KAFKA_NAMESPACE!;

  it("exits 1 with one line naming why", async () => {
    const queue = new KafkaQueue({ brokers: engineConfig().kafkaBrokers, namespace: ns });
    await queue.ensureTopics(topicSpecs(1));
    await queue.close();
    // A member of another protocol holds the notifier's group: Kafka refuses the notifier's consumer.
    const foreign = await joinForeign(`${ns}.${ConsumerGroups.notifier}`, `${ns}.${Topics.notifications}`);
    assert.ok(foreign, "the foreign member took the notifier's group");
    try {
      const { code, stderr } = await runToExit("notifier", deployment.env);
      assert.equal(code, 1, stderr);
      assert.match(stderr, /^notifier: cannot start consuming: .*stopped for good/m);
      assert.doesNotMatch(stderr, /uncaught|^\s+at /m, "no stack trace");
    } finally {
      await foreign.disconnect();
    }
  });

  // It said "notifier listening" once the join it was stopped during had ended, and went on to
  // stop only the subscription the queue's close found.
  it("a SIGTERM while it joins its consumer group: no 'listening', it leaves the group and exits 0", async () => {
    // A member of the group holding a batch keeps the notifier joining until the test lets it go.
    const group = `${ns}.${ConsumerGroups.notifier}`;
    const holder = await holdGroup(ns, ConsumerGroups.notifier, Topics.notifications);
    let notifier: ChildProcess | undefined;
    try {
      const exited = runToExit("notifier", deployment.env, (child) => (notifier = child));
      await waitFor(() => holder.revoked.aborted || notifier!.exitCode !== null, "the notifier to begin joining the group", 120_000);
      if (notifier!.exitCode !== null) assert.fail(`the notifier exited before joining: ${(await exited).stderr}`);
      const joinsBefore = holder.joins();
      notifier!.kill("SIGTERM");
      holder.release();
      const { code, stderr, stdout } = await exited;
      await waitFor(() => holder.joins() > joinsBefore, "the holder back in the group");
      assert.equal(code, 0, stderr);
      assert.doesNotMatch(stdout, /notifier listening/);
      // Right after the exit: a member that had joined stays in its group until the session timeout.
      assert.deepEqual(await groupMembers([group]), { [group]: 1 }, "the notifier left behind in the group");
    } finally {
      if (notifier && notifier.exitCode === null) notifier.kill("SIGKILL");
      await holder.close();
    }
  });
});
