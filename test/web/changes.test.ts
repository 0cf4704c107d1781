import { strict as assert } from "node:assert";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { MessageSchema, type Message } from "../../gen/es/chat/v1/types_pb.js";
import { isOutdated, outdatedBelow } from "../../web/src/changes.js";

// The web client's rule for its own edits, deletes and reactions that the
// cluster acked and then dropped (a newer change won, or the message was
// deleted): without it they stay "saving" for ever.
describe("web: awaited changes outdated by the changes that come back", () => {
  const me = 7n;
  const other = 8n;
  const change = (fields: MessageInitShape<typeof MessageSchema>): Message => create(MessageSchema, { channelId: 1n, targetSeq: 5n, ...fields });
  const edit = (messageId: bigint) => change({ messageId, senderUserId: me, text: "edited" });
  const reaction = (messageId: bigint, senderUserId: bigint) => change({ messageId, senderUserId, reaction: true, text: "👍" });
  const del = (messageId: bigint, senderUserId = other) => change({ messageId, senderUserId, deleted: true });

  it("a delete of the message outdates every change to it, acked or not", () => {
    for (const kind of ["edit", "delete", "reaction"] as const) {
      const bar = outdatedBelow(del(100n), 5n, kind, me);
      assert.ok(isOutdated(bar, undefined), kind);
      assert.ok(isOutdated(bar, 200n), kind);
    }
  });

  it("an edit outdates my edit acked under a lower id, not one acked under a higher id or not yet acked", () => {
    const bar = outdatedBelow(edit(100n), 5n, "edit", me);
    assert.ok(isOutdated(bar, 99n));
    assert.ok(!isOutdated(bar, 100n)); // its own entry
    assert.ok(!isOutdated(bar, 101n));
    assert.ok(!isOutdated(bar, undefined));
  });

  it("an edit never outdates a delete (a delete wins over any edit) or a reaction", () => {
    assert.equal(outdatedBelow(edit(100n), 5n, "delete", me), 0n);
    assert.equal(outdatedBelow(edit(100n), 5n, "reaction", me), 0n);
  });

  it("my reaction from another device outdates my older one; someone else's does not", () => {
    assert.ok(isOutdated(outdatedBelow(reaction(100n, me), 5n, "reaction", me), 99n));
    assert.equal(outdatedBelow(reaction(100n, other), 5n, "reaction", me), 0n);
    assert.equal(outdatedBelow(reaction(100n, me), 5n, "edit", me), 0n);
  });

  it("a change to another message makes no difference", () => {
    assert.equal(outdatedBelow(del(100n), 6n, "edit", me), 0n);
    assert.equal(outdatedBelow(edit(100n), 6n, "edit", me), 0n);
  });
});
