import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { consumerLagGauge, recordsLostCounter } from "./metrics.js";
import type { MessageQueue, RecordsLost } from "./port.js";

/** A queue with only what the gauge reads: the lag, answered by `lag`. */
function queueWithLag(lag: () => Promise<number>): MessageQueue {
  return { consumerLag: async () => lag() } as unknown as MessageQueue;
}

describe("consumerLagGauge", () => {
  it("answers a scrape within about a second when the lag read hangs (an unreachable Kafka), keeping the last value", async function () {
    this.timeout(5_000);
    let hang = false;
    const registry = new Registry();
    consumerLagGauge(registry, queueWithLag(() => (hang ? new Promise<number>(() => {}) : Promise.resolve(7))), [["g", "t"]]);
    assert.match(await registry.metrics(), /^chat_queue_consumer_lag\{group="g",topic="t"\} 7$/m);

    hang = true;
    const started = Date.now();
    const text = await registry.metrics();
    const ms = Date.now() - started;
    assert.ok(ms < 1_500, `the scrape took ${ms} ms`);
    assert.match(text, /^chat_queue_consumer_lag\{group="g",topic="t"\} 7$/m, "the last value stays");
  });

  it("keeps the last value when the lag read fails", async () => {
    let fail = false;
    const registry = new Registry();
    consumerLagGauge(registry, queueWithLag(() => (fail ? Promise.reject(new Error("broker down")) : Promise.resolve(3))), [["g", "t"]], {
      timeoutMs: 50,
    });
    await registry.metrics();
    fail = true;
    assert.match(await registry.metrics(), /^chat_queue_consumer_lag\{group="g",topic="t"\} 3$/m);
  });
});

describe("recordsLostCounter", () => {
  it("counts the records a queue lost by topic, each topic's series at 0 from the start", async () => {
    let tell: ((loss: RecordsLost) => void) | undefined;
    const queue = { onRecordsLost: (listener: (loss: RecordsLost) => void) => void (tell = listener) } as unknown as MessageQueue;
    const registry = new Registry();
    recordsLostCounter(registry, queue, ["a", "b"]);
    assert.match(await registry.metrics(), /^chat_queue_records_lost_total\{topic="a"\} 0$/m);
    assert.match(await registry.metrics(), /^chat_queue_records_lost_total\{topic="b"\} 0$/m);
    tell!({ topic: "a", partition: 2, committedOffset: 3n, logStartOffset: 10n, records: 7 });
    assert.match(await registry.metrics(), /^chat_queue_records_lost_total\{topic="a"\} 7$/m);
  });

  it("registers it beside the lag gauge, and none for a queue that loses nothing unread", async () => {
    const kafkaLike = { consumerLag: async () => 0, onRecordsLost: () => {} } as unknown as MessageQueue;
    const withLoss = new Registry();
    consumerLagGauge(withLoss, kafkaLike, [["g", "t"]]);
    assert.match(await withLoss.metrics(), /^chat_queue_records_lost_total\{topic="t"\} 0$/m);
    const sqliteLike = new Registry();
    consumerLagGauge(sqliteLike, queueWithLag(async () => 0), [["g", "t"]]);
    assert.doesNotMatch(await sqliteLike.metrics(), /chat_queue_records_lost_total/);
  });
});
