import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { namingProblems } from "../../test/support/metrics.js";
import { apiMetrics } from "../api/metrics.js";
import { chatServerMetrics } from "../chatserver/metrics.js";
import { pipelineMetrics } from "../pipeline/metrics.js";
import { presenceMetrics } from "../presence/metrics.js";
import { notifierEngineErrors, pushMetrics } from "../push/metrics.js";
import type { MessageQueue } from "../queue/port.js";
import { appendMetrics } from "../storage/cassandra/metrics.js";
import { processMetricsRegistry } from "./process-metrics.js";

describe("metric names", () => {
  it("follow Prometheus conventions in every role's registry: _total on counters only, base units", async () => {
    const registry = processMetricsRegistry();
    const other = new Registry();
    apiMetrics(other);
    chatServerMetrics(other);
    pipelineMetrics(other, { consumerLag: async () => 0 } as unknown as MessageQueue);
    presenceMetrics(other);
    pushMetrics(other, () => 0);
    notifierEngineErrors(other);
    appendMetrics(other, { inbox: { stats: { overtaken: 0, helped: 0, groups: 0 } } });
    const text = (await registry.metrics()) + (await other.metrics());
    assert.deepEqual(namingProblems(text), []);
  });

  it("are checked: a gauge named as a counter, a counter without _total and milliseconds are named", () => {
    const text = ["# TYPE a_total gauge", "# TYPE b counter", "# TYPE c_ms histogram", "# TYPE d_seconds histogram", "# TYPE e_total counter"].join("\n");
    assert.deepEqual(namingProblems(text), [
      "a_total: a gauge named as a counter (_total)",
      "b: a counter whose name does not end in _total",
      "c_ms: not in base units (seconds, bytes)",
    ]);
  });
});
