import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema } from "../gen/es/chat/v1/session_pb.js";
import { reauthenticateIn } from "./reauth.js";

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
