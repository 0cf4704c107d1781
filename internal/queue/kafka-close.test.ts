// KafkaQueue's close() with its Kafka gone: a private broker (test/support/own-kafka.ts) the test
// kills, never the shared one. A process stopped on SIGTERM then must end within its stop bound
// (internal/observability/lifecycle.ts), not wait on kafkajs' retries for good.
import assert from "node:assert/strict";
import type { Producer } from "kafkajs";
import { OwnKafka } from "../../test/support/own-kafka.js";
import { waitFor } from "../../test/support/wait.js";
import { KafkaQueue } from "./kafka.js";
import type { QueueRecord } from "./port.js";

const enc = (s: string) => new TextEncoder().encode(s);

describe("KafkaQueue.close() with Kafka away", function () {
  this.timeout(180_000);
  const kafka = new OwnKafka();
  before(async () => {
    await kafka.start();
  });
  after(async () => {
    await kafka.stop();
  });

  it("ends within its bound: publishes Kafka never acked fail, the consumer is given up at its deadline", async () => {
    const CLOSE_TIMEOUT_MS = 3_000;
    const queue = new KafkaQueue({ brokers: kafka.brokers, clientId: "close-test", closeTimeoutMs: CLOSE_TIMEOUT_MS });
    try {
      await queue.ensureTopics([{ topic: "events", partitions: 2 }]);
      const got: QueueRecord[] = [];
      await queue.subscribe("pipeline", "events", async (rs) => void got.push(...rs));
      await queue.publish("events", [{ key: "a", value: enc("acked") }]);
      await waitFor(() => got.length === 1, "the acked record consumed", 60_000);

      await kafka.stop();
      // The publish below in flight, in kafkajs' retries, when close() comes.
      const producer = (queue as unknown as { producer: Producer }).producer;
      const sendBatch = producer.sendBatch.bind(producer);
      let sent = 0;
      producer.sendBatch = (batch) => (sent++, sendBatch(batch));
      let outcome: "acked" | Error | undefined;
      const pending = queue.publish("events", [{ key: "b", value: enc("never acked") }]).then(
        () => void (outcome = "acked"),
        (err: Error) => void (outcome = err),
      );
      await waitFor(() => sent === 1, "the publish sent");
      const started = performance.now();
      await queue.close();
      const tookMs = performance.now() - started;
      await pending;
      assert.ok(outcome instanceof Error, `a publish Kafka never acked was ${String(outcome)}`);
      assert.match(outcome.message, /the queue closed before Kafka acked it/);
      // The subscription's stop and the pending publishes wait side by side; then a second to disconnect at most.
      // Bounded loosely (a loaded CI machine): unbounded, it took 16 s and more, Kafka's retries running out.
      assert.ok(tookMs < CLOSE_TIMEOUT_MS + 7_000, `close() took ${Math.round(tookMs)} ms`);
    } finally {
      await queue.close();
    }
  });
});
