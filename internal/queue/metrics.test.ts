import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { consumerLagGauge } from "./metrics.js";
import type { MessageQueue } from "./port.js";

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
