import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { metricIn } from "../../test/support/metrics.js";
import { seriesAt, seriesOf } from "../../test/support/series.js";
import { notifierEngineErrors, pushMetrics } from "./metrics.js";
import { SEND_ACTIONS, SKIP_REASONS } from "./notifier.js";
import { PUSH_KINDS, UNCONFIRMED_GONE_REASONS } from "./port.js";

describe("notifierEngineErrors", () => {
  it("counts the failed calls of a store and of a function by op, from 0, and hands each call's answer or failure on as it was", async () => {
    const registry = new Registry();
    const { counted, count } = notifierEngineErrors(registry);
    const errors = async (op: string) => metricIn(await registry.metrics(), "chat_push_engine_errors_total", `op="${op}"`);
    for (const op of ["endpoints", "device", "mutes", "online"]) assert.equal(await errors(op), 0, op);

    class Store {
      private readonly down = new Error("cassandra unreachable");
      async listForUser(): Promise<string[]> {
        throw this.down;
      }
      async get(id: number): Promise<string> {
        return `endpoint ${id}`;
      }
    }
    const store = counted("endpoints", new Store());
    await assert.rejects(store.listForUser(), /cassandra unreachable/);
    await assert.rejects(store.listForUser(), /cassandra unreachable/);
    assert.equal(await store.get(7), "endpoint 7");
    const device = counted("device", async (ok: boolean) => {
      if (!ok) throw new Error("down");
      return true;
    });
    assert.equal(await device(true), true);
    await assert.rejects(device(false), /down/);
    count("online");

    assert.equal(await errors("endpoints"), 2);
    assert.equal(await errors("device"), 1);
    assert.equal(await errors("online"), 1);
    assert.equal(await errors("mutes"), 0);
  });
});

describe("pushMetrics", () => {
  it("scrapes every series of its labelled counters at 0 before any push: the first of a process moves increase()", async () => {
    const registry = new Registry();
    pushMetrics(registry, () => 0);
    assert.deepEqual(await seriesOf(registry, "chat_push_sends_total", ["kind", "action"]), seriesAt(0, { kind: PUSH_KINDS, action: SEND_ACTIONS }));
    assert.deepEqual(await seriesOf(registry, "chat_push_skipped_total", ["reason"]), seriesAt(0, { reason: SKIP_REASONS }));
    // APNs's reasons only: no other push service answers in them.
    assert.deepEqual(
      await seriesOf(registry, "chat_push_gone_unconfirmed_total", ["kind", "reason"]),
      seriesAt(0, { kind: ["apns"], reason: UNCONFIRMED_GONE_REASONS }),
    );
    assert.equal(metricIn(await registry.metrics(), "chat_push_records_skipped_total"), 0);
  });
});
