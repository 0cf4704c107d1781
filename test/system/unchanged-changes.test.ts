import assert from "node:assert/strict";
import type { ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import { addDevice, signUp, type TestUser } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { startEdge, useDeployment } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

/** The frame is a SendAck; its message id and whether it says duplicate. */
function acked(reply: ServerFrame, what: string): { messageId: bigint; duplicate: boolean } {
  assert.ok(reply.kind.case === "sendAck", `${what}: ${reply.kind.case === "error" ? reply.kind.value.message : reply.kind.case}`);
  return reply.kind.value;
}

const unreadOf = async (u: TestUser, channelId: bigint) => (await u.api.channels.listChannels({})).channels.find((c) => c.channelId === channelId)?.unreadCount;

/**
 * Three members, five devices (two of Alice's, two of Bob's, Carol's): an
 * edit to the same text (and its resend), Bob's reaction again from his other
 * device and Carol taking back a reaction she never gave are each acked, a
 * delete of a message deleted already is refused, and no device gets anything
 * before the real message sent after them, nor does an unread count or the
 * history move.
 */
async function changesThatChangeNothing(apiUrl: string, wsUrl: string, devices: TestDevice[]): Promise<void> {
  const [alice, bob, carol] = [await signUp(apiUrl, "same"), await signUp(apiUrl, "same"), await signUp(apiUrl, "same")];
  await addDevice(apiUrl, alice);
  await addDevice(apiUrl, bob);
  const group = (await alice.api.channels.createGroup({ title: "same again", memberUserIds: [bob.userId, carol.userId] })).channel!.channelId;
  const all = await Promise.all(
    [alice.devices[0]!, alice.devices[1]!, bob.devices[0]!, bob.devices[1]!, carol.devices[0]!].map((d) => {
      const device = new TestDevice(wsUrl, d.token);
      devices.push(device);
      return device.connect();
    }),
  );
  const [a1, a2, b1, b2, c1] = all as [TestDevice, TestDevice, TestDevice, TestDevice, TestDevice];

  const everywhere = (n: number, what: string) => Promise.all(all.map((d) => waitFor(() => d.messagesIn(group).length === n, `${what} on every device`, 60_000)));
  // In the cluster an ack comes before the message is stored: what a change names must be there first.
  acked(await a1.send(group, "hi"), "hi");
  acked(await a1.send(group, "oops"), "oops");
  await everywhere(2, "two messages");
  acked(await b1.react(group, 1n, "👍"), "bob's reaction");
  acked(await a1.deleteMessage(group, 2n), "the delete");
  await everywhere(4, "two messages, a reaction and a delete");
  const seen = all.map((d) => d.entries.length);
  const unread = await Promise.all([alice, bob, carol].map((u) => unreadOf(u, group)));

  const edit = acked(await a1.edit(group, 1n, "hi", "same-text"), "an edit to the same text");
  assert.equal(edit.duplicate, false, "answered as any edit");
  assert.deepEqual(acked(await a1.edit(group, 1n, "hi", "same-text"), "its resend"), { ...edit, duplicate: true });
  assert.equal(acked(await b2.react(group, 1n, "👍"), "the same reaction from Bob's other device").duplicate, false);
  assert.equal(acked(await c1.react(group, 1n, ""), "Carol taking back a reaction she never gave").duplicate, false);
  const again = await a2.deleteMessage(group, 2n);
  assert.ok(again.kind.case === "error" && again.kind.value.code === ErrorCode.NOT_FOUND, "a delete of the deleted message: NOT_FOUND, as anything on it");
  assert.deepEqual(await Promise.all([alice, bob, carol].map((u) => unreadOf(u, group))), unread, "no unread count moved");

  const fence = acked(await c1.send(group, "after all that"), "the fence");
  await Promise.all(all.map((d) => waitFor(() => d.messages().some((m) => m.messageId === fence.messageId), "the fence on every device", 60_000)));
  all.forEach((d, i) => {
    const got = d.entries.slice(seen[i]).map((e) => e.message!.messageId);
    assert.deepEqual(got, [fence.messageId], `device ${i}: nothing before the fence`);
  });
  const [hi] = (await carol.api.messages.listMessages({ channelId: group, limit: 10 })).messages.filter((m) => m.seq === 1n);
  assert.deepEqual([hi!.text, hi!.editedAt, hi!.reactions.map((r) => [r.userId, r.emoji])], ["hi", undefined, [[bob.userId, "👍"]]], "the message as it was");
}

describe("changes that change nothing: acked, and nothing for anyone", function () {
  this.timeout(240_000);

  describe("chatd", () => {
    const one = useChatd();
    it("an edit to the same text, the same reaction, taking back none (and a delete of a deleted message refused)", async () => {
      await changesThatChangeNothing(one.chatd.httpUrl, one.chatd.wsUrl, one.devices);
    });
  });

  describe("the cluster on the real engines", () => {
    const devices: TestDevice[] = [];
    after(async () => {
      await Promise.all(devices.splice(0).map((d) => d.close()));
    });
    const deployment = useDeployment("unchanged");
    it("the same, through Kafka, the Sequencer and Cassandra", async () => {
      const { api, gateway } = await startEdge(deployment.env, ["pipeline"]);
      await changesThatChangeNothing(String(api.info.http), String(gateway.info.ws), devices);
    });
  });
});
