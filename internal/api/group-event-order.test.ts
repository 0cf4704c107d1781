import assert from "node:assert/strict";
import { ChannelEventKind, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import type { SessionDirectory } from "../delivery/port.js";
import type { Id } from "../model/types.js";
import { TestApi, type TestUser } from "./testkit.js";

/**
 * A user's own JOINED and LEFT events decide whether their clients list the
 * group (the web app drops a chat on its own LEFT), so of two membership
 * changes of the same user the event of the one that landed last must reach
 * them last.
 */
describe("api: group membership events", () => {
  let api: TestApi;
  beforeEach(async () => (api = await TestApi.start()));
  afterEach(async () => api.close());

  /** The user's own JOINED and LEFT events, in the order they were pushed. */
  const ownEvents = (userId: Id) =>
    api.sessions.framesOf("channel").flatMap((p) => {
      const e = p.frame.kind.case === "channel" ? p.frame.kind.value : undefined;
      if (!e || e.userId !== userId || !p.userIds.includes(userId)) return [];
      return e.kind === ChannelEventKind.JOINED || e.kind === ChannelEventKind.LEFT ? [ChannelEventKind[e.kind]] : [];
    });

  /**
   * Runs `first` until it pushes its first channel event (held there), then
   * `second` as far as it gets before `first` goes on: to its end when
   * `first` pushed after its turn, or until it waits for the group's turn
   * when `first` still holds it.
   */
  async function overlap(first: () => Promise<unknown>, second: () => Promise<unknown>): Promise<void> {
    const channels = api.storage.channels;
    const changeInTurn = channels.changeInTurn.bind(channels);
    let turnsHeld = 0;
    let secondAsked!: () => void;
    const secondAsksTurn = new Promise<void>((resolve) => (secondAsked = resolve));
    let firstDone = false;
    channels.changeInTurn = (channelId, work) => {
      if (firstDone) secondAsked();
      return changeInTurn(channelId, async () => {
        turnsHeld++;
        try {
          return await work();
        } finally {
          turnsHeld--;
        }
      });
    };
    const sessions = api.sessions as SessionDirectory;
    const push = sessions.pushToUsers.bind(sessions);
    let arrived!: () => void;
    const reached = new Promise<void>((resolve) => (arrived = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    sessions.pushToUsers = async (userIds, frame) => {
      if (frame.kind.case === "channel" && !firstDone) {
        firstDone = true;
        arrived();
        await released;
      }
      return push(userIds, frame);
    };
    try {
      const one = first();
      await reached;
      const inTurn = turnsHeld > 0;
      const two = second();
      // Still in its turn, `first` holds `second` off: waiting for `second` to end would never end.
      await (inTurn ? secondAsksTurn : two);
      release();
      await Promise.all([one, two]);
    } finally {
      channels.changeInTurn = changeInTurn;
      sessions.pushToUsers = push;
    }
  }

  async function group(owner: TestUser, ...members: TestUser[]): Promise<Id> {
    return (await owner.c.channels.createGroup({ title: "g", memberUserIds: members.map((m) => m.userId) })).channel!.channelId;
  }

  it("tells one removed and added back at once JOINED last", async () => {
    const [owner, back] = await Promise.all([api.signUp(), api.signUp()]);
    const channelId = await group(owner, back);
    api.sessions.pushes = [];
    await overlap(
      () => owner.c.channels.removeMember({ channelId, userId: back.userId }),
      () => owner.c.channels.addMembers({ channelId, userIds: [back.userId] }),
    );
    assert.ok(await api.storage.channels.getMember(channelId, back.userId), "added back");
    assert.deepEqual(ownEvents(back.userId), ["LEFT", "JOINED"]);
  });

  it("tells one who leaves and is added back at once JOINED last", async () => {
    const [owner, back] = await Promise.all([api.signUp(), api.signUp()]);
    const channelId = await group(owner, back);
    api.sessions.pushes = [];
    await overlap(
      () => back.c.channels.leaveGroup({ channelId }),
      () => owner.c.channels.addMembers({ channelId, userIds: [back.userId] }),
    );
    assert.ok(await api.storage.channels.getMember(channelId, back.userId), "added back");
    assert.deepEqual(ownEvents(back.userId), ["LEFT", "JOINED"]);
  });

  it("tells one added and removed at once LEFT last", async () => {
    const [owner, out] = await Promise.all([api.signUp(), api.signUp()]);
    const channelId = await group(owner);
    api.sessions.pushes = [];
    await overlap(
      () => owner.c.channels.addMembers({ channelId, userIds: [out.userId] }),
      () => owner.c.channels.removeMember({ channelId, userId: out.userId }),
    );
    assert.equal(await api.storage.channels.getMember(channelId, out.userId), undefined, "removed");
    assert.deepEqual(ownEvents(out.userId), ["JOINED", "LEFT"]);
  });

  it("tells one who joins by link and is removed at once LEFT last", async () => {
    const [owner, out] = await Promise.all([api.signUp(), api.signUp()]);
    const channelId = await group(owner);
    const { code } = await owner.c.channels.getInviteLink({ channelId });
    api.sessions.pushes = [];
    await overlap(
      () => out.c.channels.joinByInvite({ code }),
      () => owner.c.channels.removeMember({ channelId, userId: out.userId }),
    );
    assert.equal(await api.storage.channels.getMember(channelId, out.userId), undefined, "removed");
    assert.deepEqual(ownEvents(out.userId), ["JOINED", "LEFT"]);
  });

  it("pushes an add's JOINED events in one batch where the directory batches, not one push per joiner in the group's turn", async () => {
    const [owner, ...joiners] = await Promise.all([api.signUp(), api.signUp(), api.signUp(), api.signUp()]);
    const channelId = await group(owner);
    const sessions = api.sessions as SessionDirectory;
    const batches: { userId: Id; frame: ServerFrame }[][] = [];
    sessions.pushMany = async (items) => {
      batches.push([...items]);
      return new Set(items.map((i) => i.userId));
    };
    try {
      api.sessions.pushes = [];
      await owner.c.channels.addMembers({ channelId, userIds: joiners.map((j) => j.userId) });
    } finally {
      delete sessions.pushMany;
    }
    assert.deepEqual(api.sessions.framesOf("channel"), [], "no JOINED pushed one by one");
    // Presence may go in batches of its own.
    const joined = batches.filter((b) => b.some((i) => i.frame.kind.case === "channel"));
    assert.equal(joined.length, 1);
    // Each member is told of each joiner, in the order they were added.
    for (const member of [owner, ...joiners].map((u) => u.userId)) {
      const told = joined[0]!.flatMap((i) =>
        i.userId === member && i.frame.kind.case === "channel" && i.frame.kind.value.kind === ChannelEventKind.JOINED ? [i.frame.kind.value.userId] : []);
      assert.deepEqual(told, joiners.map((j) => j.userId));
    }
  });

  it("tells every member the title a group ends with last when two renames land at once", async () => {
    const [owner, member] = await Promise.all([api.signUp(), api.signUp()]);
    const channelId = await group(owner, member);
    api.sessions.pushes = [];
    await overlap(
      () => owner.c.channels.updateGroup({ channelId, title: "first" }),
      () => owner.c.channels.updateGroup({ channelId, title: "second" }),
    );
    assert.equal((await api.storage.channels.getChannel(channelId))!.title, "second");
    const titles = api.sessions.framesOf("channel").flatMap((p) =>
      p.frame.kind.case === "channel" && p.userIds.includes(member.userId) ? [p.frame.kind.value.channel!.title] : []);
    assert.deepEqual(titles, ["first", "second"]);
  });
});
