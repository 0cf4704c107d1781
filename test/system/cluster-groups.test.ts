import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { ChannelEventKind } from "../../gen/es/chat/v1/session_pb.js";
import { ChannelNoteKind, ErrorCode, MemberRole, type Message } from "../../gen/es/chat/v1/types_pb.js";
import { ERROR_CODE_HEADER } from "../../internal/api/errors.js";
import { addDevice, apiClients, signUp, type ApiClients, type TestUser } from "../support/api.js";
import { TestDevice } from "../support/device.js";
import { startRole, useDeployment, type RoleProcess } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

/** The refusal a call ends in: its gRPC code and the chat error code the api names. */
async function refusal(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (e) {
    if (!(e instanceof ConnectError)) throw e;
    return `${Code[e.code]} ${e.metadata.get(ERROR_CODE_HEADER)}`;
  }
  return "ok";
}

/**
 * Groups as users of two api processes and two chat servers meet them: the
 * api processes race on one Cassandra membership, and a change made through
 * one holds at once for the other and for the chat servers.
 */
describe("groups in the cluster: two api processes on the real engines", function () {
  this.timeout(600_000);
  const run = Math.random().toString(36).slice(2, 8);
  // Its processes are stopped, its folder removed and its corner of the engines dropped after the suite.
  const { env } = useDeployment("gr");
  const common = { ...env, CHAT_KAFKA_PARTITIONS: "4", CHAT_OPS_PORT: "0", CHAT_LEASE_TTL_S: "3" };
  const apis: RoleProcess[] = [];
  const others: RoleProcess[] = [];
  const devices: TestDevice[] = [];
  let gateways: RoleProcess[] = [];
  const apiUrl = (i: number) => String(apis[i]!.info.http);
  /** The user's clients on api process i. */
  const on = (i: number, u: TestUser): ApiClients => apiClients(apiUrl(i), u.devices[0]!.token);
  const connect = async (gateway: number, token: string) => {
    const d = new TestDevice(String(gateways[gateway]!.info.ws), token);
    devices.push(d);
    return d.connect();
  };
  const users = async (n: number, prefix: string) => {
    const out: TestUser[] = [];
    // Two at a time through each api: sign-ups hash a password each.
    for (let i = 0; i < n; i += 4) out.push(...(await Promise.all([0, 1, 2, 3].slice(0, n - i).map((k) => signUp(apiUrl(k % 2), prefix)))));
    return out;
  };

  before(async () => {
    // The first api creates the keyspace and the signing key; the rest start after it.
    apis.push(await startRole("api", common));
    apis.push(await startRole("api", common));
    others.push(...(await Promise.all([1, 2].map((i) => startRole("chat-server", { ...common, CHAT_SERVER_ID: `gcs${i}-${run}` })))));
    others.push(await startRole("pipeline", common));
    gateways = await Promise.all([1, 2].map((i) => startRole("gateway", { ...common, CHAT_GATEWAY_ID: `ggw${i}-${run}` })));
  });
  afterEach(async () => {
    await Promise.all(devices.splice(0).map((d) => d.close()));
  });

  it("gives the last seat of a group of 100, raced by joins by link and an add through both api processes, to exactly one", async () => {
    const [owner, ...rest] = await users(102, "seat");
    const [a, b, c] = rest.splice(0, 3);
    const channelId = (await on(0, owner!).channels.createGroup({ title: "full house", memberUserIds: rest.map((u) => u.userId) })).channel!.channelId;
    const { code } = await on(1, owner!).channels.getInviteLink({ channelId });
    const outcomes = await Promise.all([
      refusal(on(0, a!).channels.joinByInvite({ code })),
      refusal(on(1, b!).channels.joinByInvite({ code })),
      refusal(on(1, owner!).channels.addMembers({ channelId, userIds: [c!.userId] })),
    ]);
    assert.equal(outcomes.filter((o) => o === "ok").length, 1, `one gets the seat: ${outcomes.join(", ")}`);
    for (const o of outcomes.filter((o) => o !== "ok")) assert.equal(o, "FailedPrecondition ERROR_CODE_GROUP_FULL");
    for (const i of [0, 1]) {
      assert.equal((await on(i, owner!).channels.listMembers({ channelId })).members.length, 100);
      assert.equal((await on(i, owner!).channels.describeChannel({ channelId })).channel!.memberCount, 100);
    }
    // One note, of the one change made.
    await waitFor(async () => (await on(0, owner!).messages.listMessages({ channelId })).messages.length > 0, "the note of the join", 30_000, 100);
    const notes = (await on(1, owner!).messages.listMessages({ channelId })).messages.map((m) => ChannelNoteKind[m.note!.kind]);
    assert.equal(notes.length, 1, notes.join(", "));
  });

  it("a link revoked or reset through one api process lets nobody in through the other at once", async () => {
    const [owner, joiner] = await users(2, "link");
    const channelId = (await on(0, owner!).channels.createGroup({ title: "links", memberUserIds: [] })).channel!.channelId;
    const { code } = await on(0, owner!).channels.getInviteLink({ channelId });
    await on(1, owner!).channels.revokeInviteLink({ channelId });
    assert.equal(await refusal(on(0, joiner!).channels.describeInvite({ code })), "NotFound ERROR_CODE_NOT_FOUND");
    assert.equal(await refusal(on(0, joiner!).channels.joinByInvite({ code })), "NotFound ERROR_CODE_NOT_FOUND");
    const fresh = (await on(0, owner!).channels.getInviteLink({ channelId })).code;
    const reset = (await on(1, owner!).channels.getInviteLink({ channelId, reset: true })).code;
    assert.notEqual(fresh, reset);
    assert.equal(await refusal(on(0, joiner!).channels.joinByInvite({ code: fresh })), "NotFound ERROR_CODE_NOT_FOUND");
    await on(0, joiner!).channels.joinByInvite({ code: reset });
    assert.equal((await on(1, owner!).channels.listMembers({ channelId })).members.length, 2);
    // The last one out takes the link along: nobody joins an empty group.
    await on(0, owner!).channels.leaveGroup({ channelId });
    await on(1, joiner!).channels.leaveGroup({ channelId });
    assert.equal(await refusal(on(0, owner!).channels.joinByInvite({ code: reset })), "NotFound ERROR_CODE_NOT_FOUND");
  });

  it("shows a group's owner as having read their first message once history has it, through either api process", async () => {
    const [owner, member] = await users(2, "rd");
    const channelId = (await on(0, owner!).channels.createGroup({ title: "first words", memberUserIds: [member!.userId] })).channel!.channelId;
    await on(0, owner!).messages.sendMessage({ channelId, text: "hello", clientMsgId: `first-${run}` });
    // Acked once queued: the seq comes with the Sequencer's store, and a read position can only name a seq.
    const seq = await waitFor(
      async () => (await on(1, member!).messages.listMessages({ channelId })).messages.find((m) => m.text === "hello")?.seq,
      "the message in history",
      30_000,
      50,
    );
    // No receipt of the owner's moved anything: their send alone says they read it (chat-cli members: "read up to #1").
    for (const i of [0, 1]) {
      for (const asker of [owner!, member!]) {
        const read = (await on(i, asker).channels.listMembers({ channelId })).members.map((m) => [m.userId, m.readSeq]);
        assert.deepEqual(read, [[owner!.userId, seq], [member!.userId, 0n]], `api ${i} asked by ${asker === owner ? "the owner" : "the member"}`);
      }
    }
  });

  it("one removed through an api process hears nothing more on any device or chat server, cannot send, and reads no history", async () => {
    const [owner, admin, x] = await users(3, "rm");
    const second = await addDevice(apiUrl(1), x!);
    const channelId = (await on(0, owner!).channels.createGroup({ title: "roster", memberUserIds: [admin!.userId, x!.userId] })).channel!.channelId;
    await on(1, owner!).channels.setMemberRole({ channelId, userId: admin!.userId, role: MemberRole.ADMIN });
    const o = await connect(0, owner!.devices[0]!.token);
    const x1 = await connect(0, x!.devices[0]!.token);
    const x2 = await connect(1, second.token);
    assert.equal((await o.send(channelId, "before")).kind.case, "sendAck");
    await Promise.all([x1, x2].map((d) => waitFor(() => d.messagesIn(channelId).some((m) => m.text === "before"), "x's devices get the message")));

    await on(1, admin!).channels.removeMember({ channelId, userId: x!.userId });
    for (const d of [x1, x2]) {
      const refused = await d.send(channelId, "still here?");
      assert.equal(refused.kind.case === "error" && refused.kind.value.code, ErrorCode.NOT_A_MEMBER);
    }
    assert.equal((await o.send(channelId, "after")).kind.case, "sendAck");
    await waitFor(() => o.messagesIn(channelId).some((m) => m.text === "after"), "the owner gets the message after");
    // Both of x's devices are told at once, through either gateway, that x is out.
    const left = (d: TestDevice) => d.frames.some((f) => f.kind.case === "channel" && f.kind.value.kind === ChannelEventKind.LEFT && f.kind.value.userId === x!.userId);
    await Promise.all([x1, x2].map((d) => waitFor(() => left(d), "x's devices told x is out")));
    const shown = (m: Message) => (m.note ? ChannelNoteKind[m.note.kind] : m.text);
    // The owner's copy of "after" was written after x's would have been: x's devices would hold it by now.
    assert.deepEqual(x1.messagesIn(channelId).map(shown), ["ROLE_CHANGED", "before"]);
    assert.deepEqual(x2.messagesIn(channelId).map(shown), ["ROLE_CHANGED", "before"]);
    for (const i of [0, 1]) {
      assert.equal(await refusal(on(i, x!).messages.listMessages({ channelId })), "PermissionDenied ERROR_CODE_NOT_A_MEMBER");
      assert.equal(await refusal(on(i, x!).messages.searchMessages({ channelId, query: "after" })), "PermissionDenied ERROR_CODE_NOT_A_MEMBER");
      assert.equal(await refusal(on(i, x!).channels.describeChannel({ channelId })), "PermissionDenied ERROR_CODE_NOT_A_MEMBER");
    }
    // An admin spares admins; the owner's leaving makes the admin the owner.
    assert.equal(await refusal(on(0, admin!).channels.removeMember({ channelId, userId: owner!.userId })), "PermissionDenied ERROR_CODE_PERMISSION_DENIED");
    const a = await connect(1, admin!.devices[0]!.token);
    await on(0, owner!).channels.leaveGroup({ channelId });
    // The heir's devices hear of it, and history says who owns the group now.
    await waitFor(() => a.frames.some((f) => f.kind.case === "channel" && f.kind.value.kind === ChannelEventKind.UPDATED && f.kind.value.userId === admin!.userId), "the heir told");
    await waitFor(async () => {
      const [newest] = (await on(1, admin!).messages.listMessages({ channelId, limit: 1 })).messages;
      return newest?.note?.kind === ChannelNoteKind.MEMBER_LEFT && newest.note.userIds[0] === admin!.userId;
    }, "a note of the owner leaving naming the heir", 30_000, 100);
    const roles = (await on(1, admin!).channels.listMembers({ channelId })).members.map((m) => [m.userId, MemberRole[m.role]]);
    assert.deepEqual(roles, [[admin!.userId, "OWNER"]]);
  });
});
