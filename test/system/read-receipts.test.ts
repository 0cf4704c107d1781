import assert from "node:assert/strict";
import { signUp } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { waitFor } from "../support/wait.js";

describe("read receipts over the realtime session (chatd)", function () {
  this.timeout(120_000);
  const suite = useChatd();
  const devices = suite.devices;

  /** Alice and Bob in a direct chat, each with a device connected. */
  async function directChatOnline() {
    const alice = await signUp(suite.chatd.httpUrl, "alice");
    const bob = await signUp(suite.chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    const a = await new TestDevice(suite.chatd.wsUrl, alice.devices[0]!.token).connect();
    const b = await new TestDevice(suite.chatd.wsUrl, bob.devices[0]!.token).connect();
    devices.push(a, b);
    return { alice, bob, channelId: channel!.channelId, a, b };
  }

  it("a receipt past the newest message stops at it, so later messages still count as unread", async () => {
    const { alice, channelId, a, b } = await directChatOnline();

    assert.equal((await b.send(channelId, "one")).kind.case, "sendAck");
    await a.waitForMessages(1);
    a.sendFrame({ kind: { case: "read", value: { channelId, seq: 1_000_000_000n } } });
    const receipt = await waitFor(
      () => a.frames.find((f) => f.kind.case === "receipt" && f.kind.value.userId === alice.userId),
      "alice's receipt",
    );
    assert.equal(receipt.kind.case === "receipt" && receipt.kind.value.seq, 1n);

    assert.equal((await b.send(channelId, "two")).kind.case, "sendAck");
    await a.waitForMessages(2);
    const view = (await alice.api.channels.describeChannel({ channelId })).channel!;
    assert.deepEqual([view.readSeq, view.unreadCount], [1n, 1n]);
  });

  it("across a block neither of a direct chat's pair learns the other's reading; after unblocking they do again", async () => {
    const { alice, bob, channelId, a, b } = await directChatOnline();
    const receiptsOf = (d: TestDevice, userId: bigint) =>
      d.frames.flatMap((f) => (f.kind.case === "receipt" && f.kind.value.userId === userId ? [f.kind.value.seq] : []));

    assert.equal((await b.send(channelId, "one")).kind.case, "sendAck");
    assert.equal((await b.send(channelId, "two")).kind.case, "sendAck");
    await a.waitForMessages(2);
    await alice.api.users.blockUser({ userId: bob.userId });

    // Read once over the session and once through the API: alice's own devices hear both.
    a.sendFrame({ kind: { case: "read", value: { channelId, seq: 1n } } });
    await waitFor(() => receiptsOf(a, alice.userId).includes(1n), "alice's own receipt of 1");
    assert.equal((await alice.api.messages.markRead({ channelId, seq: 2n })).readSeq, 2n);
    await waitFor(() => receiptsOf(a, alice.userId).includes(2n), "alice's own receipt of 2");
    const hidden = (await bob.api.channels.listMembers({ channelId })).members.find((m) => m.userId === alice.userId)!;
    assert.equal(hidden.readSeq, 0n);

    await alice.api.users.unblockUser({ userId: bob.userId });
    assert.equal((await b.send(channelId, "three")).kind.case, "sendAck");
    await a.waitForMessages(3);
    a.sendFrame({ kind: { case: "read", value: { channelId, seq: 3n } } });
    // Bob's session gets pushes in order: a receipt of 1 or 2 would have come before this one.
    await waitFor(() => receiptsOf(b, alice.userId).includes(3n), "bob hears alice's receipt of 3");
    assert.deepEqual(receiptsOf(b, alice.userId), [3n]);
    const told = (await bob.api.channels.listMembers({ channelId })).members.find((m) => m.userId === alice.userId)!;
    assert.equal(told.readSeq, 3n);
  });
});
