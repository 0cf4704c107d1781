import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { appendMetrics } from "./metrics.js";

describe("appendMetrics", () => {
  it("exposes each log's append counters as they stand at scrape time", async () => {
    const registry = new Registry();
    const messages = { stats: { overtaken: 0, helped: 0, groups: 3 } };
    const inbox = { stats: { overtaken: 2, helped: 1, groups: 5 } };
    appendMetrics(registry, { messages, inbox });
    const value = async (name: string, log: string) =>
      (await registry.getSingleMetric(name)!.get()).values.find((v) => v.labels.log === log)?.value;
    assert.equal(await value("chat_append_groups_total", "messages"), 3);
    assert.equal(await value("chat_append_overtaken_total", "inbox"), 2);
    messages.stats.groups = 10;
    inbox.stats.helped = 4;
    assert.equal(await value("chat_append_groups_total", "messages"), 10);
    assert.equal(await value("chat_append_helped_total", "inbox"), 4);
    assert.match(await registry.metrics(), /chat_append_overtaken_total\{log="messages"\} 0/);
  });
});
