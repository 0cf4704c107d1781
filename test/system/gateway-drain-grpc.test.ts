import assert from "node:assert/strict";
import { once } from "node:events";
import http2 from "node:http2";
import { signUp } from "../support/api.js";
import { startEdge, useDeployment } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

/**
 * A native session stream whose device reads slowly (HTTP/2 flow control
 * holds the gateway's frames back) when the gateway is stopped: the stream is
 * ended with close 1001 at once, and its queued frames and status wait for
 * the device to read. The listener lets them go for as long as the api's and
 * chatd's listeners answer their calls (DRAIN_GRACE_MS, 5 s): at the 2 s it
 * allowed, a device that read again after 3 s found its connection cut, no
 * status, where it is told to reconnect elsewhere (UNAVAILABLE, close 1001).
 */
describe("gateway: SIGTERM with a native stream whose device reads slowly", function () {
  this.timeout(180_000);
  const deployment = useDeployment("gwdraingrpc");

  it("hands the stream its queued frames and its close 1001 status once the device reads again within the drain grace, then exits 0", async () => {
    const { api, gateway } = await startEdge(deployment.env);
    const user = await signUp(String(api.info.http), "gwdrain");
    // A window of 16 bytes: the Welcome alone is more, so nothing past it moves until the device reads.
    const conn = http2.connect(String(gateway.info.grpc), { settings: { initialWindowSize: 16 } });
    conn.on("error", () => undefined);
    const req = conn.request({
      ":method": "POST",
      ":path": "/chat.v1.SessionService/Connect",
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer ${user.devices[0]!.token}`,
    });
    req.on("error", () => undefined);
    let bytes = 0;
    let trailers: http2.IncomingHttpHeaders | undefined;
    let closed = false;
    req.on("data", (d: Buffer) => (bytes += d.length));
    req.on("trailers", (t) => (trailers = t));
    req.on("close", () => (closed = true));
    await once(req, "response");
    req.pause();
    // The Welcome's first bytes in hand: the session is open on the chat server.
    await waitFor(() => req.readableLength > 0, "the first bytes of the Welcome");
    const exited = once(gateway.child, "exit") as Promise<[number | null]>;
    gateway.child.kill("SIGTERM");
    // Past the 2 s the listener allowed.
    const readAgainAt = Date.now() + 3_000;
    await waitFor(() => Date.now() >= readAgainAt || closed, "3 s, or the stream's end");
    req.resume();
    await waitFor(() => trailers !== undefined || closed, "the stream's status or its end", 10_000);
    await waitFor(() => closed, "the stream's end", 10_000);
    conn.destroy();
    assert.ok(bytes > 16, `the frames queued for it (${bytes} bytes read)`);
    assert.deepEqual([trailers?.["grpc-status"], trailers?.["chat-close-code"]], ["14", "1001"], `its status: ${JSON.stringify(trailers)}`);
    const [code] = await exited;
    assert.equal(code, 0);
  });
});
