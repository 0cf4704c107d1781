import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { SessionService, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { signUp } from "../support/api.js";
import { TestDevice } from "../support/device.js";
import { scrapeMetric } from "../support/metrics.js";
import { startRole, useDeployment } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

// gateway_connections counts WebSockets only: a gateway carrying native apps' sessions (gRPC streams)
// showed 0 on every metric it had. gateway_sessions counts the sessions it holds, both ways.
describe("gateway: its sessions on /metrics", function () {
  this.timeout(180_000);
  const deployment = useDeployment("gwsessions");

  it("counts native gRPC sessions as well as WebSocket ones", async () => {
    const common = { ...deployment.env, CHAT_OPS_PORT: "0" };
    const api = await startRole("api", common);
    await startRole("chat-server", common);
    const gw = await startRole("gateway", common);
    // CHAT_OPS_PORT: /metrics on its own port, gone from the public one, whose /healthz stays for load balancers.
    const metrics = `http://127.0.0.1:${String(gw.info.ops)}/metrics`;
    assert.equal((await fetch(`${String(gw.info.http)}/metrics`)).status, 404, "no /metrics on the public port");
    await waitFor(async () => (await fetch(`${String(gw.info.http)}/healthz`)).ok, "the gateway to see the chat server");
    assert.equal((await fetch(`http://127.0.0.1:${String(gw.info.ops)}/healthz`)).status, 200);
    const user = await signUp(String(api.info.http), "gws");

    const native = createClient(SessionService, createGrpcTransport({ baseUrl: String(gw.info.grpc) }));
    const abort = new AbortController();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    async function* noFrames() {
      await held; // keeps our half of the stream open
    }
    const frames: ServerFrame[] = [];
    const stream = (async () => {
      try {
        const headers = { authorization: `Bearer ${user.devices[0]!.token}` };
        for await (const res of native.connect(noFrames(), { headers, signal: abort.signal })) frames.push(res.frame!);
      } catch {
        // aborted below
      }
    })();
    const ws = new TestDevice(String(gw.info.ws), user.devices[0]!.token);
    try {
      await waitFor(() => frames[0]?.kind.case === "welcome", "the welcome over gRPC");
      await ws.connect();
      await waitFor(async () => (await scrapeMetric(metrics, "gateway_sessions")) === 2, "gateway_sessions 2 (one native, one WebSocket)");
      assert.equal(await scrapeMetric(metrics, "gateway_connections"), 1, "WebSockets alone");
      abort.abort();
      await stream;
      await ws.close();
      await waitFor(async () => (await scrapeMetric(metrics, "gateway_sessions")) === 0, "gateway_sessions back to 0");
    } finally {
      release();
      abort.abort();
      await ws.close();
    }
  });
});
