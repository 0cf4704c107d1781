import assert from "node:assert/strict";
import { once } from "node:events";
import http2 from "node:http2";
import { signUp } from "../support/api.js";
import { openRawGrpcStream } from "../support/grpc-wire.js";
import { startEdge, useDeployment } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

/**
 * A native session stream when the gateway is stopped: it is ended with close
 * 1001 at once (its status, UNAVAILABLE, tells the device to reconnect
 * elsewhere), and then waits for its device to read what is queued for it and
 * to half-close, for as long as the api's and chatd's listeners answer their
 * calls (CHAT_DRAIN_GRACE_MS, 5 s by default): at the 2 s it was allowed once,
 * a device that read again after 3 s found its connection cut, no status.
 * Node's own client takes a small stream's frames into its buffer whatever
 * its window, so what is pinned here is the wait: a device that keeps its
 * side open holds the stream, and the gateway's exit, until the grace ends.
 */
describe("gateway: SIGTERM with a native stream whose device has not half-closed", function () {
  this.timeout(180_000);
  const deployment = useDeployment("gwdraingrpc");

  it("tells the stream close 1001, keeps it 3 s on by default (past the 2 s once allowed), and exits 0 once the device half-closes", async () => {
    await keptOpenAcrossStop(deployment.env, 3_000);
  });

  it("with CHAT_DRAIN_GRACE_MS=20000 keeps it past the default 5 s (8 s), and exits 0 once the device half-closes", async () => {
    await keptOpenAcrossStop({ ...deployment.env, CHAT_DRAIN_GRACE_MS: "20000" }, 8_000);
  });

  /** Stops a new edge's gateway under an open native session whose device half-closes only `holdMs` after the stop. */
  async function keptOpenAcrossStop(env: Record<string, string>, holdMs: number): Promise<void> {
    const { api, chatServer, gateway } = await startEdge(env);
    try {
      const user = await signUp(String(api.info.http), `gwdrain${holdMs}`);
      const stream = await openSession(String(gateway.info.grpc), user.devices[0]!.token);
      await waitFor(() => stream.bytes > 0, "the Welcome");
      let exited = false;
      const exit = once(gateway.child, "exit") as Promise<[number | null]>;
      void exit.then(() => (exited = true));
      gateway.child.kill("SIGTERM");
      await waitFor(() => stream.trailers ?? stream.closed, "the stream's status", 10_000);
      assert.deepEqual([stream.trailers?.["grpc-status"], stream.trailers?.["chat-close-code"]], ["14", "1001"], `its status: ${JSON.stringify(stream.trailers)}`);
      const heldUntil = Date.now() + holdMs;
      await waitFor(() => Date.now() >= heldUntil || stream.closed || exited, `${holdMs / 1000} s, the stream's end or the gateway's exit`, holdMs + 10_000);
      assert.deepEqual({ closed: stream.closed, exited }, { closed: false, exited: false }, `still waiting for the device ${holdMs / 1000} s after the stop`);
      stream.req.end();
      await waitFor(() => stream.closed, "the stream's end once the device half-closed", 10_000);
      stream.conn.destroy();
      const [code] = await exit;
      assert.equal(code, 0);
    } finally {
      for (const role of [api, chatServer]) role.child.kill("SIGKILL");
    }
  }
});

/** A native session stream (gRPC over HTTP/2) and what its device has received of it so far. */
async function openSession(url: string, token: string) {
  const { conn, req } = openRawGrpcStream(url, "/chat.v1.SessionService/Connect", { authorization: `Bearer ${token}` });
  const stream = { conn, req, bytes: 0, trailers: undefined as http2.IncomingHttpHeaders | undefined, closed: false };
  req.on("data", (d: Buffer) => (stream.bytes += d.length));
  req.on("trailers", (t) => (stream.trailers = t));
  req.on("close", () => (stream.closed = true));
  await once(req, "response");
  return stream;
}
