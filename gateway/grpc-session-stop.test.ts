import assert from "node:assert/strict";
import { ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import type { ConnectRequest } from "../gen/es/chat/v1/session_pb.js";
import type { SessionHost } from "../internal/chatserver/port.js";
import { sessionService } from "./grpc-session.js";

// Every native stream listens on the one stop signal: past ten open at once, Node warned of a
// "possible EventTarget memory leak" on each gateway that served as many, an alarm for nothing.
describe("sessionService: the gateway's stop signal", () => {
  it("ends every open stream with 1001 when the stop begins, and warns of no listener leak however many are open", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => void warnings.push(w);
    process.on("warning", onWarning);
    const stop = new AbortController();
    let closedSessions = 0;
    const host: SessionHost = {
      open: () => ({ receive: () => {}, reauthenticate: () => {}, drained: () => {}, closed: () => void closedSessions++ }),
    };
    const verifier = { verify: () => ({ userId: 1n, deviceId: 2n, expiresAtMs: Date.now() + 60_000 }) };
    const service = sessionService(host, verifier, { stopping: stop.signal });
    let letGo!: () => void;
    const held = new Promise<void>((r) => (letGo = r));
    async function* noFrames(): AsyncGenerator<ConnectRequest> {
      await held;
    }
    try {
      const streams = Array.from({ length: 20 }, () => {
        const ctx = {
          requestHeader: new Headers({ authorization: "Bearer t" }),
          signal: new AbortController().signal,
          values: createContextValues(),
        } as unknown as HandlerContext;
        // Run up to its wait for the session's first frame: the stream is open, its session placed.
        return service.connect!(noFrames(), ctx)[Symbol.asyncIterator]().next().then(
          () => assert.fail("a frame came where the stream should have ended"),
          (e: unknown) => ConnectError.from(e),
        );
      });
      stop.abort();
      const ends = await Promise.all(streams);
      assert.ok(ends.every((e) => /^close 1001: gateway shutting down/.test(e.rawMessage)), ends[0]!.rawMessage);
      // A warning is told on the next tick after the listener that crossed the limit.
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(warnings.map((w) => w.message), []);
      assert.equal(closedSessions, 20);
    } finally {
      process.off("warning", onWarning);
      letGo();
    }
  });
});
