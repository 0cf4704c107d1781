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
 * CHAT_DRAIN_GRACE_MS sets it, as on the api and chatd.
 */
describe("gateway: SIGTERM with a native stream whose device reads slowly", function () {
  this.timeout(180_000);
  const deployment = useDeployment("gwdraingrpc");

  it("hands the stream its queued frames and its close 1001 status once the device reads again within the drain grace, then exits 0", async () => {
    const { api, gateway } = await startEdge(deployment.env);
    const user = await signUp(String(api.info.http), "gwdrain");
    // A window of 16 bytes: the Welcome alone is more, so nothing past it moves until the device reads.
    const stream = await openSession(String(gateway.info.grpc), user.devices[0]!.token, { initialWindowSize: 16 });
    stream.req.pause();
    // The Welcome's first bytes in hand: the session is open on the chat server.
    await waitFor(() => stream.req.readableLength > 0, "the first bytes of the Welcome");
    const exited = once(gateway.child, "exit") as Promise<[number | null]>;
    gateway.child.kill("SIGTERM");
    // Past the 2 s the listener allowed.
    const readAgainAt = Date.now() + 3_000;
    await waitFor(() => Date.now() >= readAgainAt || stream.closed, "3 s, or the stream's end");
    stream.req.resume();
    await waitFor(() => stream.trailers !== undefined || stream.closed, "the stream's status or its end", 10_000);
    await waitFor(() => stream.closed, "the stream's end", 10_000);
    stream.conn.destroy();
    assert.ok(stream.bytes > 16, `the frames queued for it (${stream.bytes} bytes read)`);
    assert.deepEqual([stream.trailers?.["grpc-status"], stream.trailers?.["chat-close-code"]], ["14", "1001"], `its status: ${JSON.stringify(stream.trailers)}`);
    const [code] = await exited;
    assert.equal(code, 0);
  });

  // The default (5 s) reset such a stream, and the gateway exited, 5 s after the stop.
  it("with CHAT_DRAIN_GRACE_MS=20000 keeps a stream told its status open past 5 s while its device keeps its side open, and exits 0 once the device half-closes", async () => {
    const { api, gateway } = await startEdge({ ...deployment.env, CHAT_DRAIN_GRACE_MS: "20000" });
    const user = await signUp(String(api.info.http), "gwdrainlong");
    const stream = await openSession(String(gateway.info.grpc), user.devices[0]!.token);
    await waitFor(() => stream.bytes > 0, "the Welcome");
    let exited = false;
    const exit = once(gateway.child, "exit") as Promise<[number | null]>;
    void exit.then(() => (exited = true));
    gateway.child.kill("SIGTERM");
    await waitFor(() => stream.trailers ?? stream.closed, "the stream's status", 10_000);
    assert.deepEqual([stream.trailers?.["grpc-status"], stream.trailers?.["chat-close-code"]], ["14", "1001"], `its status: ${JSON.stringify(stream.trailers)}`);
    const pastDefault = Date.now() + 8_000;
    await waitFor(() => Date.now() >= pastDefault || stream.closed || exited, "8 s, the stream's end or the gateway's exit", 20_000);
    assert.deepEqual({ closed: stream.closed, exited }, { closed: false, exited: false }, "still waiting for the device 8 s after the stop");
    stream.req.end();
    await waitFor(() => stream.closed, "the stream's end once the device half-closed", 10_000);
    stream.conn.destroy();
    const [code] = await exit;
    assert.equal(code, 0);
  });
});

/** A native session stream (gRPC over HTTP/2) and what its device has received of it so far. */
async function openSession(url: string, token: string, settings: http2.Settings = {}) {
  const conn = http2.connect(url, { settings });
  conn.on("error", () => undefined);
  const req = conn.request({
    ":method": "POST",
    ":path": "/chat.v1.SessionService/Connect",
    "content-type": "application/grpc",
    te: "trailers",
    authorization: `Bearer ${token}`,
  });
  req.on("error", () => undefined);
  const stream = { conn, req, bytes: 0, trailers: undefined as http2.IncomingHttpHeaders | undefined, closed: false };
  req.on("data", (d: Buffer) => (stream.bytes += d.length));
  req.on("trailers", (t) => (stream.trailers = t));
  req.on("close", () => (stream.closed = true));
  await once(req, "response");
  return stream;
}
