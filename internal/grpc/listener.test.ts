import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { waitFor } from "../../test/support/wait.js";
import { createGrpcListener, PUBLIC_MAX_CONCURRENT_STREAMS } from "./listener.js";

// The public gRPC listeners set no limit on a connection's streams: one TCP connection could
// open any number of sessions or calls at once.
describe("createGrpcListener: streams per connection", () => {
  it(`at most ${PUBLIC_MAX_CONCURRENT_STREAMS} at once; the ones past it wait and are answered once others end`, async () => {
    // Every call is held open until the test lets them go, as a session is.
    const held: http2.Http2ServerResponse[] = [];
    let holding = true;
    const server = createGrpcListener((_req, res) => void (holding ? held.push(res) : res.writeHead(200).end()));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = http2.connect(url);
    try {
      await new Promise((r) => client.once("remoteSettings", r));
      assert.equal(client.remoteSettings.maxConcurrentStreams, PUBLIC_MAX_CONCURRENT_STREAMS);
      const calls = PUBLIC_MAX_CONCURRENT_STREAMS + 20;
      const statuses = Array.from({ length: calls }, () => {
        const req = client.request({ ":method": "POST", ":path": "/x.v1.X/Call" });
        req.end();
        req.resume();
        return new Promise<number | string>((resolve) => {
          req.once("response", (h) => resolve(Number(h[":status"])));
          req.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        });
      });
      await waitFor(() => held.length >= PUBLIC_MAX_CONCURRENT_STREAMS, "the first calls held");
      // A round trip after them: any stream sent before it has reached the server by its answer.
      await new Promise((r) => client.ping(r));
      assert.equal(held.length, PUBLIC_MAX_CONCURRENT_STREAMS, "streams past the limit were taken");
      // As calls end, the ones waiting go through on the same connection, each answered.
      holding = false;
      for (const res of held) res.writeHead(200).end();
      assert.deepEqual(await Promise.all(statuses), Array(calls).fill(200));
      assert.equal(client.destroyed, false);
    } finally {
      client.destroy();
      for (const res of held) if (!res.writableEnded) res.stream.close();
      await new Promise((r) => server.close(r));
    }
  });
});
