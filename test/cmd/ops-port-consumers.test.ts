import assert from "node:assert/strict";
import { groupMembers } from "../support/kafka-groups.js";
import { exitOnTakenPort, useDeployment } from "../support/processes.js";

// A pipeline worker or notifier whose CHAT_OPS_PORT is taken exits 1. It used to join its consumer
// groups first: Kafka left it their partitions for the session timeout (10 s), every message on
// them stalled for the whole cluster, though the process was gone.
describe("pipeline and notifier: CHAT_OPS_PORT in use", function () {
  this.timeout(180_000);
  // The notifier writes its VAPID key pair in the deployment's keys.
  const deployment = useDeployment("opsport");
  const ns = deployment.scope.env.CHAT_KAFKA_NAMESPACE!;

  const onTakenOpsPort = (role: string) => exitOnTakenPort(role, (port) => ({ ...deployment.env, CHAT_OPS_PORT: String(port) }));

  for (const [role, groups] of [
    ["pipeline", ["chat-sequencer", "chat-inbox-writer"]],
    ["notifier", ["chat-notifier"]],
  ] as const) {
    it(`${role}: exits 1 naming it, before joining a consumer group`, async () => {
      const { port, code, stderr } = await onTakenOpsPort(role);
      assert.equal(code, 1, stderr);
      assert.match(stderr, new RegExp(`^${role}: cannot listen on 127\\.0\\.0\\.1:${port} \\(CHAT_OPS_PORT\\): the port is in use`, "m"));
      // Right after the exit: a member that had joined stays in its group until the session timeout.
      const names = groups.map((g) => `${ns}.${g}`);
      assert.deepEqual(await groupMembers(names), Object.fromEntries(names.map((n) => [n, 0])));
    });
  }
});
