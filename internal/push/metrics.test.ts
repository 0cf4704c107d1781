import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { metricIn } from "../../test/support/metrics.js";
import { notifierEngineErrors } from "./metrics.js";

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
