import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { bucketOf } from "../../test/support/metrics.js";
import { PIPELINE_GROUPS, pipelineGroupsOf, pipelineMetrics } from "./metrics.js";
import { ConsumerGroups, Topics } from "./topics.js";

describe("pipelineGroupsOf", () => {
  it("reports the lag of the consumer groups of the stages the process runs, no other", () => {
    assert.deepEqual(pipelineGroupsOf(["sequencer"]), [[ConsumerGroups.sequencer, Topics.submitted]]);
    assert.deepEqual(pipelineGroupsOf(["inbox-writer"]), [[ConsumerGroups.inboxWriter, Topics.inbox]]);
    assert.deepEqual(pipelineGroupsOf(["sequencer", "inbox-writer"]), PIPELINE_GROUPS);
  });
});

describe("chat_delivery_latency_seconds", () => {
  it("tells a delivery held 20 s or 45 s from one held 3 s, as histogram_quantile reads its buckets", async () => {
    const bucketOfDelay = async (seconds: number) => {
      const registry = new Registry();
      pipelineMetrics(registry).deliveryLatency.observe(seconds);
      return bucketOf(await registry.metrics(), "chat_delivery_latency_seconds");
    };
    const [three, twenty, fortyFive] = await Promise.all([3, 20, 45].map(bucketOfDelay));
    assert.ok(three < 20, `3 s read as ${three} s`);
    assert.ok(twenty >= 20 && twenty < 45, `20 s read as ${twenty} s`);
    assert.ok(fortyFive >= 45, `45 s read as ${fortyFive} s`);
  });

  it("keeps the millisecond a delivery in one process takes apart from a cluster's tens of milliseconds", async () => {
    const registry = new Registry();
    pipelineMetrics(registry).deliveryLatency.observe(0.001);
    assert.equal(bucketOf(await registry.metrics(), "chat_delivery_latency_seconds"), 0.001);
  });
});
