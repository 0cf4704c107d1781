import assert from "node:assert/strict";
import { signUp } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { waitFor } from "../support/wait.js";

/**
 * Typing hints and receipts go to every member of a channel, up to a hundred,
 * and an account may hold a thousand sessions of 50 frames a second each: a
 * frame that changes nothing must not fan out.
 */
describe("chatd system: typing and read receipts that tell nothing new are not fanned out", function () {
  this.timeout(120_000);
  const suite = useChatd();

  async function pairInAGroup() {
    const alice = await signUp(suite.chatd.httpUrl, "alice");
    const bob = await signUp(suite.chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.createGroup({ title: "G", memberUserIds: [bob.userId] });
    const a = await new TestDevice(suite.chatd.wsUrl, alice.devices[0]!.token).connect();
    const b = await new TestDevice(suite.chatd.wsUrl, bob.devices[0]!.token).connect();
    suite.devices.push(a, b);
    return { alice, bob, channelId: channel!.channelId, a, b };
  }

  const receiptsOf = (d: TestDevice, userId: bigint) =>
    d.frames.flatMap((f) => (f.kind.case === "receipt" && f.kind.value.userId === userId ? [f.kind.value.seq] : []));

  it("a ReadReceipt that moves nothing is told to the reader's own devices alone; one that moves the position to every member", async () => {
    const { alice, channelId, a, b } = await pairInAGroup();
    assert.equal((await b.send(channelId, "one")).kind.case, "sendAck");
    await a.waitForMessages(1);
    a.sendFrame({ kind: { case: "read", value: { channelId, seq: 1n } } });
    await waitFor(() => receiptsOf(b, alice.userId).includes(1n), "alice's receipt of 1 at bob's");
    for (let i = 0; i < 5; i++) a.sendFrame({ kind: { case: "read", value: { channelId, seq: 1n } } });
    assert.equal((await b.send(channelId, "two")).kind.case, "sendAck");
    await a.waitForMessages(2);
    // Answered after the five before it: once bob has this one, he has whatever they told.
    a.sendFrame({ kind: { case: "read", value: { channelId, seq: 2n } } });
    await waitFor(() => receiptsOf(b, alice.userId).includes(2n), "alice's receipt of 2 at bob's");
    assert.deepEqual(receiptsOf(b, alice.userId), [1n, 2n]);
    // Alice's own device hears each of hers, which tells it the receipt was taken.
    await waitFor(() => receiptsOf(a, alice.userId).length === 7, "alice's seven receipts at her own device");
    assert.deepEqual(receiptsOf(a, alice.userId), [1n, 1n, 1n, 1n, 1n, 1n, 2n]);
    assert.deepEqual(a.errors(), []);
  });

  it("a user's typing hints in a channel go out at most once a second, however many sessions send them", async () => {
    const { alice, channelId, a, b } = await pairInAGroup();
    const a2 = await new TestDevice(suite.chatd.wsUrl, alice.devices[0]!.token).connect();
    suite.devices.push(a2);
    for (let i = 0; i < 5; i++) {
      a.sendFrame({ kind: { case: "typing", value: { channelId } } });
      a2.sendFrame({ kind: { case: "typing", value: { channelId } } });
    }
    // A receipt sent after them is answered after them: once bob has it, he has every hint they made.
    assert.equal((await b.send(channelId, "one")).kind.case, "sendAck");
    await a.waitForMessages(1);
    a.sendFrame({ kind: { case: "read", value: { channelId, seq: 1n } } });
    await waitFor(() => receiptsOf(b, alice.userId).includes(1n), "alice's receipt at bob's");
    const hints = b.frames.filter((f) => f.kind.case === "typing" && f.kind.value.userId === alice.userId);
    assert.equal(hints.length, 1);
    assert.deepEqual([...a.errors(), ...a2.errors()], []);
  });
});
