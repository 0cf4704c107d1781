import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { engineScope } from "../support/engine-scope.js";
import { engineConfig } from "../support/engines.js";
import { OwnKafka } from "../support/own-kafka.js";
import { freePort } from "../support/ports.js";
import { runToExit } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

// A SIGTERM with Kafka gone: the stop waited on kafkajs' retries (the consumers' leave and
// restarts, a publish in flight), past the 25 s stop bound, and the process exited 1 ("did not
// stop within 25000 ms"). A Kafka of the test's own, which it kills; never the shared one.
describe("pipeline: stopped with Kafka away", function () {
  this.timeout(240_000);
  const scope = engineScope(engineConfig(), "pkafkaaway");
  const kafka = new OwnKafka();
  before(() => kafka.start());
  after(async () => {
    await kafka.stop();
    await scope.drop();
  });

  it("exits 0 within its stop bound, the queue's waits on Kafka given up at their deadlines", async () => {
    let pipeline: ChildProcess | undefined;
    try {
      const ops = `http://127.0.0.1:${await freePort()}`;
      const env = { ...scope.env, CHAT_KAFKA_BROKERS: kafka.brokers.join(","), CHAT_KAFKA_PARTITIONS: "2", CHAT_OPS_PORT: ops.split(":")[2]! };
      const exited = runToExit("pipeline", env, (child) => (pipeline = child));
      await waitFor(async () => (await fetch(`${ops}/readyz`).catch(() => undefined))?.status === 200, "the pipeline's stages started", 120_000, 200);
      await kafka.stop();
      const stopAt = performance.now();
      pipeline!.kill("SIGTERM");
      const { code, stdout, stderr } = await exited;
      const tookMs = performance.now() - stopAt;
      assert.doesNotMatch(stdout + stderr, /did not stop within/);
      assert.equal(code, 0, stderr);
      // The queue's share of the 25 s bound: its subscriptions' stops, then its close, 8 s each at most.
      assert.ok(tookMs < 18_000, `stopped in ${Math.round(tookMs)} ms`);
    } finally {
      if (pipeline && pipeline.exitCode === null) pipeline.kill("SIGKILL");
    }
  });
});
