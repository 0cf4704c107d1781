import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema } from "../gen/es/chat/v1/session_pb.js";
import { REAUTHENTICATE_INTERVAL_MS, Reauthenticator, reauthenticateIn } from "./reauth.js";

describe("gateway: the Reauthenticate in a device's frame", () => {
  it("finds it in a JSON frame whatever the way its key is written (a \\u escape is JSON too)", () => {
    for (const text of [
      '{"ref":"3","reauthenticate":{"accessToken":"t"}}',
      '{"ref":"3","reauth\\u0065nticate":{"accessToken":"t"}}',
      '{"ref":"3","\\u0072\\u0065\\u0061\\u0075\\u0074\\u0068\\u0065\\u006e\\u0074\\u0069\\u0063\\u0061\\u0074\\u0065":{"access_token":"t"}}',
    ]) {
      assert.deepEqual(reauthenticateIn(text, "json"), { ref: 3n, accessToken: "t" }, text);
      assert.deepEqual(reauthenticateIn(Buffer.from(text), "json"), { ref: 3n, accessToken: "t" }, text);
    }
  });

  it("leaves any other frame, or one it cannot read, to the chat server", () => {
    for (const text of ['{"ref":"3","heartbeat":{}}', '{"ref":"3","send":{"text":"reauthenticate \\u00e9"}}', '{"reauthenticate":', "reauthenticate"]) {
      assert.equal(reauthenticateIn(text, "json"), undefined, text);
    }
  });

  it("finds it in a binary frame that carries a field this server does not know after it (a newer client's)", () => {
    const reauth = toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 3n, kind: { case: "reauthenticate", value: { accessToken: "t" } } }));
    // Field 20, length-delimited: "x".
    const newer = Buffer.concat([reauth, Uint8Array.of(0xa2, 0x01, 0x01, 0x78)]);
    assert.deepEqual(reauthenticateIn(newer, "proto"), { ref: 3n, accessToken: "t" });
    const heartbeat = toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 3n, kind: { case: "heartbeat", value: {} } }));
    assert.equal(reauthenticateIn(Buffer.concat([heartbeat, Uint8Array.of(0xa2, 0x01, 0x01, 0x78)]), "proto"), undefined);
  });
});

describe("gateway: a session's new tokens (Reauthenticator)", () => {
  it("keeps its one-a-second rate on the monotonic clock: a wall clock stepped back an hour refuses no token for that hour", () => {
    const wall = Date.now;
    let stepMs = 0;
    // Stepped the way NTP steps it: Date.now itself reads the new time.
    Date.now = () => wall() + stepMs;
    try {
      const verifier = { verify: () => ({ userId: 1n, deviceId: 2n, expiresAtMs: wall() + 900_000 }) };
      const reauth = new Reauthenticator(verifier, { userId: 1n, deviceId: 2n });
      assert.ok("expiresAtMs" in reauth.check({ ref: 1n, accessToken: "a" }));
      stepMs = -3_600_000;
      const verdict = reauth.check({ ref: 2n, accessToken: "b" });
      // Within the second it is still too soon, but only by what is left of that second.
      assert.ok("refused" in verdict, "a second token within the second");
      assert.equal(verdict.refused.code, "rate_limited");
      assert.ok(verdict.refused.retryAfterMs! <= REAUTHENTICATE_INTERVAL_MS, `told to wait ${verdict.refused.retryAfterMs} ms`);
    } finally {
      Date.now = wall;
    }
  });
});
