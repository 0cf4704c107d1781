import assert from "node:assert/strict";
import type { Etcd3 } from "etcd3";
import { createEtcdClient } from "../../internal/etcd/client.js";
import { MAX_WORKER } from "../../internal/ids/snowflake.js";
import { engineScope } from "../support/engine-scope.js";
import { engineConfig } from "../support/engines.js";
import { startRole, stopAll } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

/** /healthz of `opsUrl`: status and the checks' results. */
async function healthz(opsUrl: string): Promise<{ status: number; checks: Record<string, string> }> {
  const res = await fetch(`${opsUrl}/healthz`);
  return { status: res.status, checks: ((await res.json()) as { checks: Record<string, string> }).checks };
}

// A chat server whose worker id lease is lost refuses every send until it leases another number,
// its registration untouched: /healthz said 200 all along.
describe("chat-server: /healthz while it has no worker id", function () {
  this.timeout(180_000);
  const scope = engineScope(engineConfig(), "cswid");
  const prefix = `/${scope.env.CHAT_ETCD_PREFIX}/worker-ids/`;
  let etcd: Etcd3;
  before(() => (etcd = createEtcdClient({ endpoints: engineConfig().etcdEndpoints })));
  after(async () => {
    await stopAll();
    etcd.close();
    await scope.drop();
  });

  it("answers 503 naming worker-id until a number is leased again", async () => {
    const cs = await startRole("chat-server", { ...scope.env, CHAT_GRPC_PORT: "0", CHAT_OPS_PORT: "0" });
    const ops = `http://127.0.0.1:${String(cs.info.ops)}`;
    await waitFor(async () => (await healthz(ops)).status === 200, "a healthy chat server");
    const held = Number(cs.info.workerId);
    const [kv] = (await etcd.get(`${prefix}${held}`).exec()).kvs;
    assert.ok(kv, "its worker id is in etcd");
    // Every other number taken, so the one it loses cannot be replaced until we let go.
    const squatter = etcd.lease(60, { autoKeepAlive: true });
    const others = [...Array(MAX_WORKER + 1).keys()].filter((n) => n !== held);
    for (let i = 0; i < others.length; i += 128) {
      await Promise.all(others.slice(i, i + 128).map((n) => squatter.put(`${prefix}${n}`).value("test")));
    }
    await etcd.leaseClient.leaseRevoke({ ID: kv.lease });
    await squatter.put(`${prefix}${held}`).value("test");
    try {
      const sick = await waitFor(async () => {
        const h = await healthz(ops);
        return h.status === 503 && h;
      }, "/healthz 503");
      assert.match(sick.checks["worker-id"]!, /worker id lease lost/);
      assert.equal(sick.checks.registration, "ok", "its registration is another lease, untouched");
    } finally {
      await squatter.revoke();
    }
    await waitFor(async () => (await healthz(ops)).status === 200, "/healthz 200 once a number is leased again");
  });
});
