import assert from "node:assert/strict";
import { createEtcdClient } from "../../internal/etcd/client.js";
import { engineScope } from "../support/engine-scope.js";
import { engineConfig } from "../support/engines.js";
import { exitOnTakenPort } from "../support/processes.js";

// cmd/chat-server on a gRPC port it cannot have: one line naming the setting, not grpc-js's stack trace.
describe("chat-server: a port in use", function () {
  this.timeout(120_000);
  const scope = engineScope(engineConfig(), "cslisten");
  after(() => scope.drop());

  /** Runs a chat server with `setting` on a port something else holds: its exit status and stderr. */
  const onTakenPort = (setting: "CHAT_GRPC_PORT" | "CHAT_OPS_PORT") =>
    exitOnTakenPort("chat-server", (port) => ({ ...scope.env, CHAT_GRPC_PORT: "0", CHAT_OPS_PORT: "0", [setting]: String(port) }));

  it("CHAT_GRPC_PORT: exits 1 with one line naming it", async () => {
    const { port, code, stderr } = await onTakenPort("CHAT_GRPC_PORT");
    assert.equal(code, 1, stderr);
    assert.match(stderr, new RegExp(`^chat-server: cannot listen on 127\\.0\\.0\\.1:${port} \\(CHAT_GRPC_PORT\\): the port is in use`, "m"));
    assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
  });

  it("CHAT_OPS_PORT: exits 1 naming it, never having registered in etcd for gateways to send sessions to", async () => {
    const etcd = createEtcdClient({ endpoints: engineConfig().etcdEndpoints });
    const puts: string[] = [];
    const watcher = await etcd.watch().prefix(`/${scope.env.CHAT_ETCD_PREFIX}/servers/`).create();
    watcher.on("put", (kv) => puts.push(kv.key.toString()));
    try {
      const { port, code, stderr } = await onTakenPort("CHAT_OPS_PORT");
      assert.equal(code, 1, stderr);
      assert.match(stderr, new RegExp(`^chat-server: cannot listen on 127\\.0\\.0\\.1:${port} \\(CHAT_OPS_PORT\\): the port is in use`, "m"));
      // A registration written before the exit would be seen here: the watch is on the etcd the process wrote to.
      const written = await etcd.getAll().prefix(`/${scope.env.CHAT_ETCD_PREFIX}/`).keys();
      assert.ok(written.some((k) => k.includes("/worker-id-marks/")), `the process got as far as etcd: ${written.join(", ")}`);
      assert.deepEqual(puts, [], "no server entry was ever written");
    } finally {
      await watcher.cancel();
      etcd.close();
    }
  });
});
