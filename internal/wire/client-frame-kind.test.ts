import { strict as assert } from "node:assert";
import { create, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import { clientFrameKind } from "./client-frame-kind.js";

describe("clientFrameKind", () => {
  const kindOf = (init: Parameters<typeof create<typeof ClientFrameSchema>>[1]) => clientFrameKind(toBinary(ClientFrameSchema, create(ClientFrameSchema, init)));

  it("names the kind a frame sets, whatever its ref", () => {
    assert.equal(kindOf({ ref: 0n, kind: { case: "reauthenticate", value: { accessToken: "t" } } }), 8);
    assert.equal(kindOf({ ref: (1n << 64n) - 1n, kind: { case: "reauthenticate", value: { accessToken: "x".repeat(300) } } }), 8);
    assert.equal(kindOf({ ref: 7n, kind: { case: "send", value: { clientMsgId: "a", channelId: 1n, text: "reauthenticate" } } }), 2);
    assert.equal(kindOf({ ref: 7n, kind: { case: "heartbeat", value: {} } }), 6);
    assert.equal(kindOf({ ref: 3n }), 0);
  });

  it("takes the last kind field, as a decoder does", () => {
    const send = toBinary(ClientFrameSchema, create(ClientFrameSchema, { kind: { case: "send", value: { text: "hi" } } }));
    const reauth = toBinary(ClientFrameSchema, create(ClientFrameSchema, { kind: { case: "reauthenticate", value: { accessToken: "t" } } }));
    assert.equal(clientFrameKind(Buffer.concat([send, reauth])), 8);
    assert.equal(clientFrameKind(Buffer.concat([reauth, send])), 2);
  });

  it("gives up on bytes that are not a message, leaving them to the decoder", () => {
    assert.equal(clientFrameKind(Uint8Array.of(0x42, 0x05, 0x01)), undefined); // length past the end
    assert.equal(clientFrameKind(Uint8Array.of(0x08)), undefined); // varint missing
    assert.equal(clientFrameKind(Uint8Array.of(0x00, 0x01)), undefined); // field 0
    assert.equal(clientFrameKind(Uint8Array.of(0x0b)), undefined); // group start
    assert.equal(clientFrameKind(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)), undefined);
  });
});
