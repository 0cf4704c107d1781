import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { MessageSubmittedSchema } from "../../gen/es/chat/internal/v1/pipeline_pb.js";
import { decodeSubmitted } from "../pipeline/records.js";
import { decodeNote, encodeNote } from "./notes.js";

describe("notes as stored", () => {
  it("read back as written", () => {
    for (const note of [
      { kind: "members_added" as const, userIds: [1n, 2n ** 64n - 1n] },
      { kind: "title_changed" as const, userIds: [], title: "“Trip” ✨" },
      { kind: "role_changed" as const, userIds: [5n], role: "admin" as const },
    ]) {
      assert.deepStrictEqual(decodeNote(encodeNote(note)), note);
    }
  });

  it("never stop a reader: one of a later build's kind, or damaged, reads as unknown with what could be read", () => {
    assert.deepStrictEqual(decodeNote('{"kind":"pinned_message","userIds":["7","x","-1","99999999999999999999999"],"title":"t"}'), {
      kind: "unknown", userIds: [7n], title: "t",
    });
    for (const text of ["", "{", "null", "42", '"members_added"', '{"kind":"members_added","userIds":"7"}']) {
      assert.equal(decodeNote(text).kind, text.includes("members_added") && text.startsWith("{") ? "members_added" : "unknown", text);
    }
  });

  it("travel through the pipeline when a later api wrote a kind this build does not know", () => {
    // An api upgraded before the pipeline: a record that threw here would stop its whole partition.
    const bytes = toBinary(MessageSubmittedSchema, create(MessageSubmittedSchema, {
      messageId: 9n, clientMsgId: "note:9", channelId: 3n, senderUserId: 1n, senderDeviceId: 2n, submittedAt: timestampFromMs(1_000),
      note: { kind: 42 as never, userIds: [4n] },
    }));
    assert.deepStrictEqual(decodeSubmitted(bytes).note, { kind: "unknown", userIds: [4n] });
  });
});
