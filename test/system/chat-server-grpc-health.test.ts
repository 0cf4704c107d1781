import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Etcd3 } from "etcd3";
import { createEtcdClient } from "../../internal/etcd/client.js";
import { Health, ServingStatus } from "../../internal/grpc/health.js";
import { engineScope } from "../support/engine-scope.js";
import { engineConfig } from "../support/engines.js";
import { startRole, stopAll, type RoleProcess } from "../support/processes.js";
import { waitFor } from "../support/wait.js";
import { freePort } from "../support/ports.js";

// A balancer or grpcurl probing grpc.health.v1 must not be told SERVING by a chat
// server the gateways cannot find (not registered yet, or its lease lost) or that is leaving.
describe("chat-server: gRPC health follows its registration", function () {
  this.timeout(180_000);
  const scope = engineScope(engineConfig(), "csgh");
  let etcd: Etcd3;
  before(() => (etcd = createEtcdClient({ endpoints: engineConfig().etcdEndpoints })));
  after(async () => {
    await stopAll();
    etcd.close();
    await scope.drop();
  });

  it("is NOT_SERVING until registered, SERVING while registered, NOT_SERVING while its lease is lost and once it drains", async () => {
    const serverId = `csgh-${Math.random().toString(36).slice(2, 8)}`;
    const key = `/${scope.env.CHAT_ETCD_PREFIX}/servers/${serverId}`;
    // Another live process holds its id: it listens, and keeps trying to register.
    const squatter = etcd.lease(60, { autoKeepAlive: true });
    await squatter.put(key).value(JSON.stringify({ address: "127.0.0.1:1", load: 0 }));
    const port = await freePort();
    let refused = false;
    const starting = startRole("chat-server", { ...scope.env, CHAT_SERVER_ID: serverId, CHAT_GRPC_PORT: String(port), CHAT_OPS_PORT: "0", CHAT_LEASE_TTL_S: "2" }, 90_000, {
      onLine: (line) => void (line.includes("registering in etcd failed") && (refused = true)),
    });
    starting.catch(() => {});
    const health = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    // Its first try comes once the process has started (tsx, Cassandra, Kafka): the start's own 90 s, not 30.
    await waitFor(() => refused, "a registration refused while the id is held", 90_000);
    const before = await waitFor(async () => {
      try {
        return (await health.check({ service: "" })).status;
      } catch {
        return undefined; // not listening yet
      }
    }, "an answer to Check");
    assert.equal(ServingStatus[before], "NOT_SERVING", "not registered in etcd yet");
    assert.equal(ServingStatus[(await health.check({ service: "chat.internal.v1.ChatServerService" })).status], "NOT_SERVING");

    const seen: ServingStatus[] = [];
    const watching = (async () => {
      try {
        for await (const r of health.watch({ service: "" })) seen.push(r.status);
      } catch {
        // the stream ends with the process
      }
    })();
    await waitFor(() => seen.length > 0, "the first Watch message");
    await squatter.revoke();
    const cs: RoleProcess = await starting;
    await waitFor(() => seen.at(-1) === ServingStatus.SERVING, "SERVING once registered");

    // Its lease revoked behind its back: gateways no longer see it until it registers again.
    const [kv] = (await etcd.get(key).exec()).kvs;
    assert.ok(kv, "its entry is in etcd");
    const lostFrom = seen.length;
    await etcd.leaseClient.leaseRevoke({ ID: kv.lease });
    await waitFor(() => seen.slice(lostFrom).includes(ServingStatus.NOT_SERVING), "NOT_SERVING once the lease is lost");
    await waitFor(async () => (await etcd.get(key).exec()).kvs.length > 0, "registered again");
    await waitFor(() => seen.at(-1) === ServingStatus.SERVING, "SERVING once registered again");

    const drainFrom = seen.length;
    await cs.stop();
    await watching;
    assert.deepEqual(seen.slice(drainFrom).map((s) => ServingStatus[s]), ["NOT_SERVING"], "NOT_SERVING as it drains, before it exits");
  });
});
