import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import { ENGINE_RETRY_AFTER_MS } from "../model/engine-errors.js";
import { stubInbox } from "../../test/support/inbox.js";
import { waitFor } from "../../test/support/wait.js";
import type { SessionSink } from "./port.js";
import { ChatServer } from "./server.js";

/** An empty inbox: the session starts and has nothing to catch up. */
const emptyInbox = stubInbox();

describe("session: an UNAVAILABLE refusal carries a retry time", () => {
  // The device's sign-out read failing (the accounts store away) was refused with a retry of 0: the
  // client fell back to its own fixed wait, where every other outage's refusal says 1 s.
  it("a Reauthenticate whose device could not be read: the engine outage's retry time", async () => {
    let calls = 0;
    const revoked = async () => {
      // The first read is the session's start; the Reauthenticate's is the second.
      if (++calls === 1) return false;
      throw new Error("Connection is closed.");
    };
    const server = new ChatServer({ serverId: "t", inbox: emptyInbox, channels: {} as never, submitter: {} as never, revoked });
    const frames: ServerFrame[] = [];
    const sink: SessionSink = {
      send: (f) => void frames.push(fromBinary(ServerFrameSchema, f as Uint8Array)),
      bufferedBytes: () => 0,
      close: () => {},
    };
    const handle = server.open({ userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, sink);
    try {
      await waitFor(() => frames.some((f) => f.kind.case === "welcome"), "the welcome");
      handle.reauthenticate({ ref: 4n, expiresAtMs: Date.now() + 900_000 });
      await waitFor(() => frames.some((f) => f.kind.case === "error"), "the refusal");
      const e = frames.find((f) => f.kind.case === "error")!;
      assert.deepStrictEqual(
        e.kind.case === "error" && [e.ref, e.kind.value.code, e.kind.value.retryAfterMs],
        [4n, ErrorCode.UNAVAILABLE, ENGINE_RETRY_AFTER_MS],
      );
    } finally {
      server.drain();
    }
  });
});
