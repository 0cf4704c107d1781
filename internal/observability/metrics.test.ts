import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { metricIn } from "../../test/support/metrics.js";
import { chatServerMetrics } from "../chatserver/metrics.js";
import { pipelineMetrics } from "../pipeline/metrics.js";
import { presenceMetrics } from "../presence/metrics.js";

describe("engine error counters", () => {
  it("are scraped at 0 before any failure, so increase() over them sees the first one", async () => {
    const registry = new Registry();
    const pipeline = pipelineMetrics(registry);
    const presence = presenceMetrics(registry);
    chatServerMetrics(registry);
    const zero = await registry.metrics();
    const expected: [string, string][] = [
      ...["deliver", "online_users", "notify"].map((op): [string, string] => ["chat_pipeline_engine_errors_total", `op="${op}"`]),
      ...["update", "get", "sweep", "announce", "tell"].map((op): [string, string] => ["chat_presence_engine_errors_total", `op="${op}"`]),
      ...["new", "held", "failed"].map((outcome): [string, string] => ["chat_send_claims_total", `outcome="${outcome}"`]),
    ];
    for (const [name, labels] of expected) assert.equal(metricIn(zero, name, labels), 0, `${name}{${labels}}`);
    pipeline.engineErrors.inc({ op: "deliver" });
    presence.onEngineError!("sweep");
    const one = await registry.metrics();
    assert.equal(metricIn(one, "chat_pipeline_engine_errors_total", 'op="deliver"'), 1);
    assert.equal(metricIn(one, "chat_presence_engine_errors_total", 'op="sweep"'), 1);
  });
});
