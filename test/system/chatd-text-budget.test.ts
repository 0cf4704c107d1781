import assert from "node:assert/strict";
import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import { signUp } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { waitFor } from "../support/wait.js";

describe("chatd system: the text budget of a session", function () {
  this.timeout(180_000);
  const suite = useChatd();
  const devices = suite.devices;

  it("refuses a flood of long texts with RATE_LIMITED, unstored and without closing, while another user's messages keep flowing", async () => {
    const [alice, bob, carol] = await Promise.all(["alice", "bob", "carol"].map((n) => signUp(suite.chatd.httpUrl, n)));
    const toBob = (await alice!.api.channels.openDirect({ userId: bob!.userId })).channel!.channelId;
    const carolToBob = (await carol!.api.channels.openDirect({ userId: bob!.userId })).channel!.channelId;
    const [a, b, c] = await Promise.all(
      [alice!, bob!, carol!].map((u) => {
        const d = new TestDevice(suite.chatd.wsUrl, u.devices[0]!.token);
        devices.push(d);
        return d.connect();
      }),
    );

    // Eight of the longest texts (400 KB each, 3.2 MB) at once, well within the frame rate.
    const long = "😀".repeat(99_999);
    const refs = Array.from({ length: 8 }, (_, i) => a!.sendFrame({ kind: { case: "send", value: { channelId: toBob, text: long, clientMsgId: `flood${i}` } } }));
    const carolAck = await c!.send(carolToBob, "still here");
    assert.equal(carolAck.kind.case, "sendAck");
    const replies = await Promise.all(refs.map((ref) => a!.reply(ref)));
    const acked = replies.filter((r) => r.kind.case === "sendAck").length;
    const refused = replies.filter((r) => r.kind.case === "error" && r.kind.value.code === ErrorCode.RATE_LIMITED && r.kind.value.retryAfterMs > 0);
    assert.ok(acked >= 2, `the burst lets the first through (${acked} acked)`);
    assert.ok(refused.length >= 3, `the rest past the budget are refused (${refused.length} refused)`);
    assert.equal(acked + refused.length, 8);
    assert.equal(a!.closeCode, undefined, "the session stays open");

    // Bob gets carol's message and exactly the texts that were acked: the refused ones were not stored.
    await waitFor(() => b!.messagesIn(carolToBob).length === 1 && b!.messagesIn(toBob).length === acked, "bob's messages");
    // A client that waits as told sends again.
    assert.equal((await a!.send(toBob, long, "flood0-again")).kind.case, "sendAck");
  });
});
