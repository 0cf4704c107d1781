import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { metricIn } from "../../test/support/metrics.js";
import { seriesAt, seriesOf } from "../../test/support/series.js";
import { presenceMetrics, PRESENCE_STATUSES } from "./metrics.js";
import { PRESENCE_ENGINE_OPS } from "./tracker.js";

describe("presenceMetrics", () => {
  it("scrapes every series of its counters at 0 before any flip: a process's first one moves increase()", async () => {
    const registry = new Registry();
    presenceMetrics(registry);
    assert.deepEqual(await seriesOf(registry, "chat_presence_changes_total", ["status"]), seriesAt(0, { status: PRESENCE_STATUSES }));
    assert.deepEqual(await seriesOf(registry, "chat_presence_engine_errors_total", ["op"]), seriesAt(0, { op: PRESENCE_ENGINE_OPS }));
    assert.equal(metricIn(await registry.metrics(), "chat_presence_sweeps_total"), 0);
  });
});
