import assert from "node:assert/strict";
import { MAX_BARS, type ChannelStore, type MembershipCheck } from "../../channels/store.js";
import type { MessageLog } from "../../messages/log.js";
import { ChatError } from "../../model/errors.js";
import { NO_PLACE, type ChannelRecord, type Id, type MemberRecord, type MemberRole } from "../../model/types.js";
import { waitFor } from "../../../test/support/wait.js";
import { rejectsWith, uniqueId, uniqueName, type MakeStore, type StoreHandle } from "./helpers.js";

/** A channel store and the message log of the same engine, whose newest message bounds read positions. */
export interface ChannelStoreUnderTest {
  channels: ChannelStore;
  log: MessageLog;
}

/** Declares the ChannelStore contract; every adapter runs it unchanged. */
export function channelStoreContract(makeStore: MakeStore<ChannelStoreUnderTest>): void {
  describe("ChannelStore contract", function () {
    let h: StoreHandle<ChannelStoreUnderTest>;
    let s: ChannelStore;
    let log: MessageLog;
    before(async () => {
      h = await makeStore();
      s = h.store.channels;
      log = h.store.log;
    });
    after(async () => h?.close());

    const channel = (kind: ChannelRecord["kind"], createdBy = uniqueId()): ChannelRecord => ({
      channelId: uniqueId(),
      kind,
      title: kind === "group" ? "Team 🚀" : "",
      createdAtMs: 1_767_225_600_000,
      createdBy,
    });
    const member = (c: ChannelRecord, role: MemberRole = "member", joinedAtMs = c.createdAtMs): MemberRecord => ({
      channelId: c.channelId,
      userId: uniqueId(),
      role,
      joinedAtMs,
      readSeq: 0n,
    });
    /** A group of the creator (owner) plus `others` members, joined in order. */
    const newGroup = async (others = 2) => {
      const c = channel("group");
      const members = [{ ...member(c, "owner"), userId: c.createdBy }];
      for (let i = 1; i <= others; i++) members.push(member(c, "member", c.createdAtMs + i));
      await s.createGroup(c, members);
      return { c, members };
    };
    const byUser = (x: MemberRecord, y: MemberRecord) => (x.userId < y.userId ? -1 : 1);
    /** Appends n messages to the channel's log. */
    const post = async (channelId: Id, n: number) => {
      for (let i = 0; i < n; i++) {
        await log.append({
          messageId: uniqueId(), channelId, senderUserId: uniqueId(), senderDeviceId: uniqueId(),
          clientMsgId: uniqueName("c-"), text: "hi", sentAtMs: 1_767_225_600_000,
        });
      }
    };
    const owners = async (channelId: Id) =>
      (await s.listMembers(channelId)).filter((m) => m.role === "owner").map((m) => m.userId);

    describe("direct channels", () => {
      it("creates the pair's channel with both users as members", async () => {
        const [a, b] = [uniqueId(), uniqueId()];
        const cand = channel("direct", a);
        const got = await s.getOrCreateDirect(cand, a, b);
        assert.deepStrictEqual(got, cand);
        assert.deepStrictEqual(await s.getChannel(cand.channelId), cand);
        const members = await s.listMembers(cand.channelId);
        assert.deepStrictEqual(
          members.sort(byUser),
          [a, b].sort((x, y) => (x < y ? -1 : 1)).map((userId) => ({
            channelId: cand.channelId,
            userId,
            role: "member",
            joinedAtMs: cand.createdAtMs,
            readSeq: 0n,
          })),
        );
        assert.equal(await s.memberCount(cand.channelId), 2);
      });

      it("returns the existing channel for the pair, in either order", async () => {
        const [a, b] = [uniqueId(), uniqueId()];
        const first = await s.getOrCreateDirect(channel("direct", a), a, b);
        const later = channel("direct", b);
        assert.deepStrictEqual(await s.getOrCreateDirect(later, b, a), first);
        assert.deepStrictEqual(await s.getOrCreateDirect(channel("direct", a), a, b), first);
        assert.equal(await s.getChannel(later.channelId), undefined);
        assert.equal(await s.memberCount(first.channelId), 2);
      });

      it("says whether the pair has its channel, in either order", async () => {
        const [a, b, c] = [uniqueId(), uniqueId(), uniqueId()];
        assert.equal(await s.hasDirect(a, b), false);
        await s.getOrCreateDirect(channel("direct", a), a, b);
        assert.deepStrictEqual([await s.hasDirect(a, b), await s.hasDirect(b, a), await s.hasDirect(a, c)], [true, true, false]);
      });

      it("names the pair's claimed channel, in either order, and none before it has one", async () => {
        const [a, b] = [uniqueId(), uniqueId()];
        assert.equal(await s.directChannelOf(a, b), undefined);
        const first = await s.getOrCreateDirect(channel("direct", a), a, b);
        await s.getOrCreateDirect(channel("direct", b), b, a);
        assert.deepStrictEqual([await s.directChannelOf(a, b), await s.directChannelOf(b, a)], [first.channelId, first.channelId]);
        assert.equal(await s.directChannelOf(a, uniqueId()), undefined);
      });

      it("concurrent first calls meet in one channel", async () => {
        const [a, b] = [uniqueId(), uniqueId()];
        const got = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            i % 2 ? s.getOrCreateDirect(channel("direct", a), a, b) : s.getOrCreateDirect(channel("direct", b), b, a),
          ),
        );
        const ids = new Set(got.map((c) => c.channelId));
        assert.equal(ids.size, 1);
        assert.equal(await s.memberCount(got[0]!.channelId), 2);
      });

      it("different pairs get different channels", async () => {
        const [a, b, c] = [uniqueId(), uniqueId(), uniqueId()];
        const ab = await s.getOrCreateDirect(channel("direct", a), a, b);
        const ac = await s.getOrCreateDirect(channel("direct", a), a, c);
        assert.notEqual(ab.channelId, ac.channelId);
      });
    });

    describe("groups", () => {
      it("createGroup stores the channel and its first members in join order", async () => {
        const { c, members } = await newGroup(3);
        assert.deepStrictEqual(await s.getChannel(c.channelId), c);
        assert.deepStrictEqual(await s.listMembers(c.channelId), members);
        assert.equal(await s.memberCount(c.channelId), 4);
        assert.deepStrictEqual(await s.getMember(c.channelId, c.createdBy), members[0]);
      });

      it("getChannels, memberCounts and listMembersOf tell many channels at once as getChannel, memberCount and listMembers tell each", async () => {
        const big = await newGroup(3);
        const small = await newGroup(1);
        await s.removeMember(small.c.channelId, small.members[1]!.userId);
        const [a, b] = [uniqueId(), uniqueId()];
        const direct = await s.getOrCreateDirect(channel("direct", a), a, b);
        const unknown = uniqueId();
        const ids = [small.c.channelId, unknown, direct.channelId, big.c.channelId, small.c.channelId];
        const each = async <T>(one: (id: Id) => Promise<T>) => new Map(await Promise.all(ids.map(async (id) => [id, await one(id)] as const)));

        assert.deepStrictEqual(await s.getChannels(ids), new Map([[small.c.channelId, small.c], [direct.channelId, direct], [big.c.channelId, big.c]]));
        assert.deepStrictEqual(await s.memberCounts(ids), await each((id) => s.memberCount(id)));
        assert.deepStrictEqual([...(await s.memberCounts(ids)).values()], [1, 0, 2, 4]);
        assert.deepStrictEqual(await s.listMembersOf(ids), await each((id) => s.listMembers(id)));
        assert.deepStrictEqual((await s.listMembersOf(ids)).get(big.c.channelId), big.members);
        assert.equal((await s.getChannels([])).size, 0);
        assert.equal((await s.memberCounts([])).size, 0);
        assert.equal((await s.listMembersOf([])).size, 0);
      });

      it("unknown channels and members are undefined / empty", async () => {
        const { c } = await newGroup();
        assert.equal(await s.getChannel(uniqueId()), undefined);
        assert.equal(await s.getMember(c.channelId, uniqueId()), undefined);
        assert.deepStrictEqual(await s.listMembers(uniqueId()), []);
        assert.equal(await s.memberCount(uniqueId()), 0);
      });

      it("updateTitle changes only the title; an unknown channel is not created", async () => {
        const { c } = await newGroup();
        assert.equal(await s.updateTitle(c.channelId, "Renamed ✨"), true);
        assert.deepStrictEqual(await s.getChannel(c.channelId), { ...c, title: "Renamed ✨" });
        const ghost = uniqueId();
        assert.equal(await s.updateTitle(ghost, "ghost"), false);
        assert.equal(await s.getChannel(ghost), undefined);
      });

      it("updateTitle to the title the channel has says it changed nothing, and still runs the check", async () => {
        const { c } = await newGroup();
        assert.equal(await s.updateTitle(c.channelId, c.title), false);
        await rejectsWith(s.updateTitle(c.channelId, c.title, () => {
          throw new ChatError("permission_denied", "no");
        }), "permission_denied");
        assert.equal(await s.updateTitle(c.channelId, "Other"), true);
        assert.equal(await s.updateTitle(c.channelId, "Other"), false);
        assert.equal((await s.getChannel(c.channelId))?.title, "Other");
      });
    });

    describe("inGroupsAtLeast", () => {
      it("names, of the users asked about at once, those in at least n groups; direct chats and groups left do not count", async () => {
        const [busy, left, fresh] = [uniqueId(), uniqueId(), uniqueId()];
        for (let i = 0; i < 3; i++) {
          const { c } = await newGroup(1);
          await s.addMembers(c.channelId, [{ ...member(c), userId: busy }, { ...member(c), userId: left }], 100);
        }
        const { c: gone } = await newGroup(1);
        await s.addMembers(gone.channelId, [{ ...member(gone), userId: left }], 100);
        await s.removeMember(gone.channelId, left);
        await s.getOrCreateDirect(channel("direct", left), left, uniqueId());
        await s.getOrCreateDirect(channel("direct", left), left, uniqueId());
        const sorted = (ids: Id[]) => [...ids].sort((x, y) => (x < y ? -1 : 1));
        assert.deepStrictEqual(sorted(await s.inGroupsAtLeast([busy, left, fresh, busy], 3)), sorted([busy, left]));
        assert.deepStrictEqual(await s.inGroupsAtLeast([busy, left, fresh], 4), []);
        assert.deepStrictEqual(await s.inGroupsAtLeast([fresh], 0), [fresh]);
        assert.deepStrictEqual(await s.inGroupsAtLeast([], 1), []);
      });
    });

    describe("addMembers", () => {
      it("adds new members after the existing ones and returns who was added", async () => {
        const { c, members } = await newGroup(1);
        const fresh = [member(c, "member", c.createdAtMs + 10), member(c, "admin", c.createdAtMs + 11)];
        const added = await s.addMembers(c.channelId, fresh, 100);
        assert.deepStrictEqual(added, fresh.map((m) => m.userId));
        assert.deepStrictEqual(await s.listMembers(c.channelId), [...members, ...fresh]);
      });

      it("skips users already in, leaving their record untouched", async () => {
        const { c, members } = await newGroup(1);
        const again = { ...members[1]!, role: "admin" as const, joinedAtMs: c.createdAtMs + 50 };
        const fresh = member(c, "member", c.createdAtMs + 60);
        const added = await s.addMembers(c.channelId, [again, fresh], 100);
        assert.deepStrictEqual(added, [fresh.userId]);
        assert.deepStrictEqual(await s.getMember(c.channelId, again.userId), members[1]);
        assert.equal(await s.memberCount(c.channelId), 3);
      });

      it("fills the group exactly up to maxMembers", async () => {
        const { c } = await newGroup(2);
        const fresh = [member(c), member(c)];
        assert.equal((await s.addMembers(c.channelId, fresh, 5)).length, 2);
        assert.equal(await s.memberCount(c.channelId), 5);
      });

      it("refuses with group_full naming the limit, adding nobody", async () => {
        const { c, members } = await newGroup(2);
        const fresh = [member(c), member(c), member(c)];
        await rejectsWith(s.addMembers(c.channelId, fresh, 5), "group_full", "5");
        assert.equal(await s.memberCount(c.channelId), 3);
        assert.deepStrictEqual(await s.listMembers(c.channelId), members);
        for (const m of fresh) assert.equal(await s.getMember(c.channelId, m.userId), undefined);
      });

      it("racing adds for the last free seat: exactly one wins", async () => {
        const { c } = await newGroup(2);
        const racers = Array.from({ length: 5 }, () => member(c));
        const results = await Promise.allSettled(racers.map((m) => s.addMembers(c.channelId, [m], 4)));
        const won = results.filter((r) => r.status === "fulfilled");
        assert.equal(won.length, 1);
        for (const r of results) {
          if (r.status === "rejected") assert.equal((r.reason as { code?: string }).code, "group_full");
        }
        assert.equal(await s.memberCount(c.channelId), 4);
      });
    });

    describe("changeInTurn", () => {
      /**
       * Asks for a turn of each of `ids` at once, each work logging its start and its end. The
       * first in keeps its turn until `held` (given the log) resolves, so the log shows whether
       * the other came in while it was in, with no pause standing for "long enough".
       */
      const twoAtOnce = async (ids: [Id, Id], held: (seen: readonly string[]) => Promise<unknown>) => {
        const seen: string[] = [];
        let release!: () => void;
        const released = new Promise<void>((r) => (release = r));
        const work = (name: string) => async () => {
          seen.push(`${name} in`);
          if (seen.length === 1) await released;
          seen.push(`${name} out`);
        };
        const both = Promise.all([s.changeInTurn(ids[0], work("a")), s.changeInTurn(ids[1], work("b"))]);
        try {
          // A turn that failed fails the test, rather than leave `held` waiting on it.
          await Promise.race([both, (async () => {
            await waitFor(() => seen.length > 0, "a first work to come in", 10_000);
            await held(seen);
          })()]);
        } finally {
          release();
        }
        await both;
        return seen;
      };
      const inOut = (seen: string[]) => seen.map((e) => e.slice(2));

      it("runs one work of a channel at a time, another channel's beside it", async () => {
        // Another channel's comes in while the first is still in: held until it has. First, as the
        // check below relies on other channels' turns being given beside a held one.
        const cameIn = (seen: readonly string[]) => waitFor(() => seen.length > 1, "the other channel's work to come in beside the first", 10_000);
        assert.deepStrictEqual(inOut(await twoAtOnce([uniqueId(), uniqueId()], cameIn)), ["in", "in", "out", "out"]);
        // The other of the same channel has been made to wait once the store has given two turns
        // of other channels, each asked for after it, while it still had not come in: a turn not
        // made to wait comes in as soon as one of those would. Ends at once if it came in (wrongly).
        const madeToWait = async (seen: readonly string[]) => {
          for (let given = 0; given < 2 && seen.length === 1; given++) await s.changeInTurn(uniqueId(), async () => undefined);
        };
        const id = uniqueId();
        assert.deepStrictEqual(inOut(await twoAtOnce([id, id], madeToWait)), ["in", "out", "in", "out"]);
      });

      it("runs work nested in a turn of the channel at once, and a work that threw lets the next one in", async () => {
        const id = uniqueId();
        assert.equal(await s.changeInTurn(id, () => s.changeInTurn(id, async () => "nested")), "nested");
        await assert.rejects(s.changeInTurn(id, async () => {
          throw new ChatError("permission_denied", "refused");
        }), { code: "permission_denied" });
        assert.equal(await s.changeInTurn(id, async () => "next"), "next");
      });
    });

    describe("membership changes", () => {
      it("removeMember returns whether the user was a member", async () => {
        const { c, members } = await newGroup(2);
        assert.deepStrictEqual(await s.removeMember(c.channelId, members[1]!.userId), { removed: true });
        assert.deepStrictEqual(await s.removeMember(c.channelId, members[1]!.userId), { removed: false });
        assert.deepStrictEqual(await s.removeMember(c.channelId, uniqueId()), { removed: false });
        assert.equal(await s.getMember(c.channelId, members[1]!.userId), undefined);
        assert.deepStrictEqual(await s.listMembers(c.channelId), [members[0], members[2]]);
        assert.equal(await s.memberCount(c.channelId), 2);
      });

      it("a removed member can be added again", async () => {
        const { c, members } = await newGroup(1);
        await s.removeMember(c.channelId, members[1]!.userId);
        const back = { ...members[1]!, joinedAtMs: c.createdAtMs + 100 };
        assert.deepStrictEqual(await s.addMembers(c.channelId, [back], 100), [back.userId]);
        assert.deepStrictEqual(await s.getMember(c.channelId, back.userId), back);
      });

      it("keeps where a member joined apart from their read position, and forgets it when they leave", async () => {
        const { c } = await newGroup(1);
        await post(c.channelId, 3);
        const joiner = { ...member(c, "member", c.createdAtMs + 10), joinedSeq: 3n };
        await s.addMembers(c.channelId, [joiner], 100);
        assert.deepStrictEqual(await s.getMember(c.channelId, joiner.userId), joiner);
        assert.deepStrictEqual((await s.listMembers(c.channelId)).at(-1), joiner);
        // Reading moves the read position alone.
        assert.equal((await s.advanceReadSeq(c.channelId, joiner.userId, 1n)).readSeq, 1n);
        assert.deepStrictEqual(await s.getMember(c.channelId, joiner.userId), { ...joiner, readSeq: 1n });
        await s.removeMember(c.channelId, joiner.userId);
        const { joinedSeq: _, ...plain } = joiner;
        await s.addMembers(c.channelId, [{ ...plain, joinedAtMs: c.createdAtMs + 20 }], 100);
        assert.equal((await s.getMember(c.channelId, joiner.userId))?.joinedSeq, undefined);
      });

      it("markJoined moves a member's join point forward only, and writes nobody out of the channel back in", async () => {
        const { c, members } = await newGroup(1);
        const joiner = { ...member(c, "member", c.createdAtMs + 10), joinedSeq: 3n };
        await s.addMembers(c.channelId, [joiner], 100);
        await s.markJoined(c.channelId, [joiner.userId], 5n);
        assert.deepStrictEqual(await s.getMember(c.channelId, joiner.userId), { ...joiner, joinedSeq: 5n });
        // A retried batch's older note moves nothing back.
        await s.markJoined(c.channelId, [joiner.userId], 4n);
        assert.equal((await s.getMember(c.channelId, joiner.userId))?.joinedSeq, 5n);
        // A note stored after its joiner was out again: no member row comes back.
        await s.removeMember(c.channelId, members[1]!.userId);
        await s.markJoined(c.channelId, [members[1]!.userId], 6n);
        assert.equal(await s.getMember(c.channelId, members[1]!.userId), undefined);
        assert.deepStrictEqual((await s.listMembers(c.channelId)).map((m) => m.userId), [members[0]!.userId, joiner.userId]);
      });

      it("setRole changes only the role and says whether it changed it", async () => {
        const { c, members } = await newGroup(1);
        assert.equal(await s.setRole(c.channelId, members[1]!.userId, "admin"), true);
        assert.deepStrictEqual(await s.getMember(c.channelId, members[1]!.userId), { ...members[1]!, role: "admin" });
        assert.equal(await s.setRole(c.channelId, members[1]!.userId, "admin"), false);
        const stranger = uniqueId();
        assert.equal(await s.setRole(c.channelId, stranger, "admin"), false);
        assert.equal(await s.getMember(c.channelId, stranger), undefined);
      });

      it("setRole neither makes nor unmakes the owner: ownership passes only when the owner leaves", async () => {
        const { c, members } = await newGroup(1);
        await rejectsWith(s.setRole(c.channelId, members[1]!.userId, "owner" as never), "invalid_argument");
        await rejectsWith(s.setRole(c.channelId, members[0]!.userId, "admin"), "invalid_argument");
        assert.deepStrictEqual(await s.listMembers(c.channelId), members);
      });

      it("removing the owner passes ownership on in the same step: the longest-standing admin, else member", async () => {
        const { c, members } = await newGroup(2);
        const admin = member(c, "admin", c.createdAtMs + 10);
        await s.addMembers(c.channelId, [admin], 100);
        const [owner, m1, m2] = members.map((m) => m.userId) as [Id, Id, Id];
        assert.deepStrictEqual(await s.removeMember(c.channelId, owner), { removed: true, newOwner: admin.userId });
        assert.deepStrictEqual(await owners(c.channelId), [admin.userId]);
        assert.deepStrictEqual(await s.removeMember(c.channelId, admin.userId), { removed: true, newOwner: m1 });
        assert.deepStrictEqual(await s.removeMember(c.channelId, m2), { removed: true });
        assert.deepStrictEqual(await owners(c.channelId), [m1]);
        assert.deepStrictEqual(await s.removeMember(c.channelId, m1), { removed: true });
        assert.deepStrictEqual(await s.listMembers(c.channelId), []);
      });

      it("the owner and every admin leaving at once leave exactly one owner, among those who stay", async () => {
        for (let round = 0; round < 5; round++) {
          const { c, members } = await newGroup(2);
          const admins = [member(c, "admin", c.createdAtMs + 10), member(c, "admin", c.createdAtMs + 11)];
          await s.addMembers(c.channelId, admins, 100);
          const leaving = [members[0]!.userId, ...admins.map((a) => a.userId)];
          const results = await Promise.all(leaving.map((u) => s.removeMember(c.channelId, u)));
          assert.ok(results.every((r) => r.removed));
          assert.deepStrictEqual(await owners(c.channelId), [members[1]!.userId], `round ${round}`);
          assert.equal(await s.memberCount(c.channelId), 2);
        }
      });

      it("a check sees the members as the change finds them, and refuses it by throwing", async () => {
        const { c, members } = await newGroup(2);
        const [owner, m1, m2] = members.map((m) => m.userId) as [Id, Id, Id];
        const adminOnly = (by: Id): MembershipCheck => (ms) => {
          if (ms.find((m) => m.userId === by)?.role !== "admin") throw new ChatError("permission_denied", "not an admin");
        };
        await s.setRole(c.channelId, m1, "admin");
        assert.equal(await s.setRole(c.channelId, m1, "member", (ms) => assert.equal(ms.find((m) => m.userId === m1)?.role, "admin")), true);
        // m1 was demoted since: its removal of m2 and its role change are refused, and change nothing.
        await rejectsWith(s.removeMember(c.channelId, m2, adminOnly(m1)), "permission_denied");
        await rejectsWith(s.setRole(c.channelId, m2, "admin", adminOnly(m1)), "permission_denied");
        await rejectsWith(s.addMembers(c.channelId, [member(c)], 100, adminOnly(m1)), "permission_denied");
        await rejectsWith(s.updateTitle(c.channelId, "mine", adminOnly(m1)), "permission_denied");
        assert.deepStrictEqual((await s.listMembers(c.channelId)).map((m) => [m.userId, m.role]), [
          [owner, "owner"], [m1, "member"], [m2, "member"],
        ]);
        assert.equal((await s.getChannel(c.channelId))?.title, c.title);
        await s.updateTitle(c.channelId, "theirs", (ms) => assert.equal(ms.length, 3));
        assert.equal((await s.getChannel(c.channelId))?.title, "theirs");
        assert.deepStrictEqual(await s.removeMember(c.channelId, m2, (ms) => assert.equal(ms.length, 3)), { removed: true });
      });

      it("concurrent changes are each checked against the membership they are made on", async () => {
        // Six members; each of five removals is allowed only while four or more
        // remain. Checked on an earlier read, all five would pass.
        const { c, members } = await newGroup(5);
        const atLeastFour: MembershipCheck = (ms) => {
          if (ms.length < 4) throw new ChatError("permission_denied", "too few left");
        };
        const results = await Promise.allSettled(members.slice(1).map((m) => s.removeMember(c.channelId, m.userId, atLeastFour)));
        assert.equal(results.filter((r) => r.status === "fulfilled").length, 3);
        for (const r of results) {
          if (r.status === "rejected") assert.equal((r.reason as { code?: string }).code, "permission_denied");
        }
        assert.equal(await s.memberCount(c.channelId), 3);
        assert.equal((await s.listMembers(c.channelId)).length, 3);
      });

      it("advanceReadSeq never moves past the channel's newest message", async () => {
        const { c, members } = await newGroup(1);
        const u = members[1]!.userId;
        assert.deepStrictEqual(await s.advanceReadSeq(c.channelId, u, 5n), { readSeq: 0n, newest: undefined }, "no messages yet");
        await post(c.channelId, 3);
        // The newest message it capped by comes back with the position: a receipt reads it no second time.
        const capped = await s.advanceReadSeq(c.channelId, u, 1_000_000_000n);
        assert.deepStrictEqual([capped.readSeq, capped.newest?.seq, capped.newest?.channelId], [3n, 3n, c.channelId]);
        await post(c.channelId, 2);
        assert.equal((await s.advanceReadSeq(c.channelId, u, 4n)).readSeq, 4n);
        assert.equal((await s.getMember(c.channelId, u))?.readSeq, 4n);
      });

      it("advanceReadSeq only moves forward and returns the position", async () => {
        const { c, members } = await newGroup(1);
        await post(c.channelId, 9);
        const u = members[1]!.userId;
        assert.equal((await s.advanceReadSeq(c.channelId, u, 5n)).readSeq, 5n);
        assert.equal((await s.advanceReadSeq(c.channelId, u, 3n)).readSeq, 5n);
        assert.equal((await s.advanceReadSeq(c.channelId, u, 5n)).readSeq, 5n);
        assert.equal((await s.advanceReadSeq(c.channelId, u, 9n)).readSeq, 9n);
        assert.equal((await s.getMember(c.channelId, u))?.readSeq, 9n);
        assert.equal((await s.getMember(c.channelId, members[0]!.userId))?.readSeq, 0n);
      });

      it("advanceReadSeq of a non-member fails with not_a_member", async () => {
        const { c } = await newGroup(1);
        await rejectsWith(s.advanceReadSeq(c.channelId, uniqueId(), 1n), "not_a_member");
      });

      it("clearHistory moves forward only, never past the newest message, for that member alone", async () => {
        const { c, members } = await newGroup(1);
        const [owner, u] = [members[0]!.userId, members[1]!.userId];
        assert.equal(await s.clearHistory(c.channelId, u, 5n), 0n, "no messages yet");
        await post(c.channelId, 4);
        assert.equal(await s.clearHistory(c.channelId, u, 1_000_000_000n), 4n);
        assert.equal(await s.clearHistory(c.channelId, u, 2n), 4n);
        assert.equal((await s.getMember(c.channelId, u))?.clearedSeq, 4n);
        assert.equal((await s.listMemberships(u)).find((m) => m.channelId === c.channelId)?.clearedSeq, 4n);
        assert.equal((await s.listMembers(c.channelId)).find((m) => m.userId === u)?.clearedSeq, 4n);
        assert.equal((await s.getMember(c.channelId, owner))?.clearedSeq, undefined, "the others' history stays");
        assert.equal((await s.getMember(c.channelId, u))?.readSeq, 0n, "clearing is not reading");
      });

      it("clearHistory of a non-member fails with not_a_member and makes no member", async () => {
        const { c } = await newGroup(1);
        await post(c.channelId, 1);
        const stranger = uniqueId();
        await rejectsWith(s.clearHistory(c.channelId, stranger, 1n), "not_a_member");
        assert.equal(await s.getMember(c.channelId, stranger), undefined);
        assert.equal(await s.memberCount(c.channelId), 2);
      });

      it("a member who leaves and comes back starts with nothing cleared", async () => {
        const { c, members } = await newGroup(1);
        const u = members[1]!.userId;
        await post(c.channelId, 2);
        await s.clearHistory(c.channelId, u, 2n);
        await s.removeMember(c.channelId, u);
        await s.addMembers(c.channelId, [{ ...members[1]!, joinedAtMs: Date.now() }], 100);
        assert.equal((await s.getMember(c.channelId, u))?.clearedSeq, undefined);
      });

      it("listMemberships has one row per channel the user is in", async () => {
        const u = uniqueId();
        const g1 = channel("group", u);
        const g2 = channel("group", u);
        const own1: MemberRecord = { channelId: g1.channelId, userId: u, role: "owner", joinedAtMs: 1, readSeq: 0n };
        const own2: MemberRecord = { channelId: g2.channelId, userId: u, role: "owner", joinedAtMs: 2, readSeq: 0n };
        await s.createGroup(g1, [own1, member(g1)]);
        await s.createGroup(g2, [own2, member(g2)]);
        const other = uniqueId();
        const d = await s.getOrCreateDirect(channel("direct", u), u, other);
        const rows = await s.listMemberships(u);
        assert.deepStrictEqual(
          new Set(rows.map((r) => r.channelId)),
          new Set([g1.channelId, g2.channelId, d.channelId]),
        );
        assert.deepStrictEqual(
          rows.find((r) => r.channelId === g1.channelId),
          own1,
        );
        await s.removeMember(g1.channelId, u);
        assert.equal((await s.listMemberships(u)).length, 2);
        assert.deepStrictEqual(await s.listMemberships(uniqueId()), []);
      });
    });

    describe("mutes", () => {
      const until = 1_767_229_200_000;

      it("keeps a mute per user and channel, with its time", async () => {
        const [u, c1, c2] = [uniqueId(), uniqueId(), uniqueId()];
        await s.setMute(u, c1, until);
        await s.setMute(u, c2, until + 1);
        assert.deepStrictEqual(await s.listMutes(u), new Map([[c1, until], [c2, until + 1]]));
      });

      it("setting a mute again replaces its time", async () => {
        const [u, c] = [uniqueId(), uniqueId()];
        await s.setMute(u, c, until);
        await s.setMute(u, c, until - 3_600_000);
        assert.deepStrictEqual(await s.listMutes(u), new Map([[c, until - 3_600_000]]));
      });

      it("undefined removes only that channel's mute", async () => {
        const [u, c1, c2] = [uniqueId(), uniqueId(), uniqueId()];
        await s.setMute(u, c1, until);
        await s.setMute(u, c2, until);
        await s.setMute(u, c1, undefined);
        assert.deepStrictEqual(await s.listMutes(u), new Map([[c2, until]]));
        await s.setMute(u, uniqueId(), undefined);
        assert.deepStrictEqual(await s.listMutes(u), new Map([[c2, until]]), "unmuting an unmuted channel changes nothing");
      });

      it("keeps each user's mutes apart, even of one channel", async () => {
        const [a, b, c] = [uniqueId(), uniqueId(), uniqueId()];
        await s.setMute(a, c, until);
        await s.setMute(b, c, until + 5);
        await s.setMute(b, c, undefined);
        assert.deepStrictEqual(await s.listMutes(a), new Map([[c, until]]));
        assert.deepStrictEqual(await s.listMutes(b), new Map());
      });

      it("keeps a mute past its time: the caller compares with its clock", async () => {
        const [u, c] = [uniqueId(), uniqueId()];
        const past = Date.now() - 60_000;
        await s.setMute(u, c, past);
        assert.deepStrictEqual(await s.listMutes(u), new Map([[c, past]]));
      });

      it("a user with no mutes gets an empty map", async () => {
        assert.deepStrictEqual(await s.listMutes(uniqueId()), new Map());
      });
    });

    describe("places (pinned, archived, marked unread)", () => {
      const at = 1_767_229_200_000;

      it("keeps a place per user and channel, and drops it when no setting is left", async () => {
        const [u, c1, c2] = [uniqueId(), uniqueId(), uniqueId()];
        await s.changePlace(u, c1, { pinnedAtMs: at });
        await s.changePlace(u, c2, { archivedAtMs: at + 1 });
        assert.deepStrictEqual(await s.listPlaces(u), new Map([[c1, { pinnedAtMs: at }], [c2, { archivedAtMs: at + 1 }]]));
        // Archiving the pinned one, as ArchiveChannel asks: the pin goes.
        await s.changePlace(u, c1, { archivedAtMs: at + 2, pinnedAtMs: null });
        assert.deepStrictEqual((await s.listPlaces(u)).get(c1), { archivedAtMs: at + 2 });
        await s.changePlace(u, c1, NO_PLACE);
        assert.deepStrictEqual(await s.listPlaces(u), new Map([[c2, { archivedAtMs: at + 1 }]]));
        await s.changePlace(u, c2, { archivedAtMs: null });
        assert.deepStrictEqual(await s.listPlaces(u), new Map(), "a place whose last setting is cleared is gone");
        await s.changePlace(u, uniqueId(), NO_PLACE);
        await s.changePlace(u, uniqueId(), { pinnedAtMs: null });
        assert.equal((await s.listPlaces(u)).size, 0, "clearing a place never set changes nothing");
      });

      it("writes only the settings a change names: changes of different settings all stay", async () => {
        const [u, c] = [uniqueId(), uniqueId()];
        // As two devices would, each from a place read before the other wrote.
        await Promise.all([s.changePlace(u, c, { pinnedAtMs: at, archivedAtMs: null }), s.changePlace(u, c, { markedUnreadAtMs: at + 5 })]);
        assert.deepStrictEqual((await s.listPlaces(u)).get(c), { pinnedAtMs: at, markedUnreadAtMs: at + 5 });
        await s.changePlace(u, c, { markedUnreadAtMs: null });
        assert.deepStrictEqual((await s.listPlaces(u)).get(c), { pinnedAtMs: at });
        await s.changePlace(u, c, { markedUnreadAtMs: at + 6 });
        await s.changePlace(u, c, { pinnedAtMs: null });
        assert.deepStrictEqual(await s.listPlaces(u), new Map([[c, { markedUnreadAtMs: at + 6 }]]));
        await s.changePlace(u, c, { markedUnreadAtMs: null });
        assert.deepStrictEqual(await s.listPlaces(u), new Map());
      });

      it("keeps each user's places apart, even of one channel", async () => {
        const [a, b, c] = [uniqueId(), uniqueId(), uniqueId()];
        await s.changePlace(a, c, { pinnedAtMs: at });
        await s.changePlace(b, c, { archivedAtMs: at });
        await s.changePlace(b, c, NO_PLACE);
        assert.deepStrictEqual(await s.listPlaces(a), new Map([[c, { pinnedAtMs: at }]]));
        assert.deepStrictEqual(await s.listPlaces(b), new Map());
      });
    });

    describe("invite codes", () => {
      const code = () => `c${uniqueId().toString(36)}${Math.random().toString(36).slice(2)}`;
      const newGroupId = async () => (await newGroup(1)).c.channelId;
      /** The owner or an admin among the members as the store finds them, as the api's check. */
      const managerCheck = (by: Id): MembershipCheck => (ms) => {
        const mine = ms.find((m) => m.userId === by);
        if (!mine) throw new ChatError("not_a_member", "not a member");
        if (mine.role === "member") throw new ChatError("permission_denied", "not a manager");
      };

      it("keeps one code per group: a new one replaces it, and the old one leads nowhere", async () => {
        const [g, other] = [await newGroupId(), await newGroupId()];
        const [first, second, theirs] = [code(), code(), code()];
        assert.equal(await s.inviteCodeOf(g), undefined);
        await s.setInviteCode(g, first);
        await s.setInviteCode(other, theirs);
        assert.equal(await s.inviteCodeOf(g), first);
        assert.equal(await s.channelOfInvite(first), g);
        await s.setInviteCode(g, second);
        assert.equal(await s.inviteCodeOf(g), second);
        assert.equal(await s.channelOfInvite(second), g);
        assert.equal(await s.channelOfInvite(first), undefined, "a reset code stops working");
        assert.equal(await s.channelOfInvite(theirs), other, "another group's code is untouched");
      });

      it("claims a group's first code once: two claims at once get the same code, and a claim keeps a code set before", async () => {
        const g = await newGroupId();
        const [a, b] = [code(), code()];
        const got = await Promise.all([s.claimInviteCode(g, a), s.claimInviteCode(g, b)]);
        assert.equal(got[0], got[1]);
        assert.ok(got[0] === a || got[0] === b);
        assert.equal(await s.inviteCodeOf(g), got[0]);
        assert.equal(await s.channelOfInvite(got[0]!), g);
        assert.equal(await s.channelOfInvite(got[0] === a ? b : a), undefined, "the losing claim's code leads nowhere");
        const reset = code();
        await s.setInviteCode(g, reset);
        assert.equal(await s.claimInviteCode(g, code()), reset);
        await s.setInviteCode(g, undefined);
        const again = code();
        assert.equal(await s.claimInviteCode(g, again), again, "a group whose code was taken away gets a new one");
        assert.equal(await s.channelOfInvite(again), g);
      });

      it("undefined takes a group's code away; an unknown code leads nowhere", async () => {
        const [g, c] = [await newGroupId(), code()];
        await s.setInviteCode(g, c);
        await s.setInviteCode(g, undefined);
        assert.equal(await s.inviteCodeOf(g), undefined);
        assert.equal(await s.channelOfInvite(c), undefined);
        assert.equal(await s.channelOfInvite(code()), undefined);
        await s.setInviteCode(await newGroupId(), undefined); // a group that never had one
        await s.setInviteCode(uniqueId(), undefined); // nor a channel that does not exist
      });

      it("a code needs its channel: setting or claiming one for a channel that does not exist is not_found", async () => {
        const [missing, c] = [uniqueId(), code()];
        await rejectsWith(s.setInviteCode(missing, c), "not_found");
        await rejectsWith(s.claimInviteCode(missing, c), "not_found");
        assert.equal(await s.inviteCodeOf(missing), undefined);
        assert.equal(await s.channelOfInvite(c), undefined);
      });

      it("sets, claims or takes away a code only while the check passes on the members as the write finds them", async () => {
        const { c, members } = await newGroup(2);
        const g = c.channelId;
        const [owner, x] = [members[0]!.userId, members[1]!.userId];
        // x, an admin when it asked, was demoted since: its reset, its claim
        // and its revocation are refused, and change nothing.
        await s.setRole(g, x, "admin");
        await s.claimInviteCode(g, code(), managerCheck(x)); // passes while x is an admin
        await s.setRole(g, x, "member");
        const ownersCode = code();
        await s.setInviteCode(g, ownersCode, managerCheck(owner));
        const xs = code();
        await rejectsWith(s.setInviteCode(g, xs, managerCheck(x)), "permission_denied");
        await rejectsWith(s.claimInviteCode(g, code(), managerCheck(x)), "permission_denied");
        await rejectsWith(s.setInviteCode(g, undefined, managerCheck(x)), "permission_denied");
        assert.equal(await s.inviteCodeOf(g), ownersCode);
        assert.equal(await s.channelOfInvite(ownersCode), g);
        assert.equal(await s.channelOfInvite(xs), undefined, "the refused reset's code leads nowhere");
        // Removed, likewise (not_a_member); and a refused claim on a group
        // with no code makes none.
        await s.removeMember(g, x);
        await s.setInviteCode(g, undefined, managerCheck(owner));
        const claimed = code();
        await rejectsWith(s.claimInviteCode(g, claimed, managerCheck(x)), "not_a_member");
        await rejectsWith(s.setInviteCode(g, code(), managerCheck(x)), "not_a_member");
        assert.equal(await s.inviteCodeOf(g), undefined);
        assert.equal(await s.channelOfInvite(claimed), undefined);
        assert.equal(await s.claimInviteCode(g, claimed, managerCheck(owner)), claimed);
      });

      it("a join by link adds only while its code is the group's: one reset or revoked since adds nobody", async () => {
        const { c } = await newGroup(1);
        const g = c.channelId;
        const [first, second] = [code(), code()];
        const joiner = () => member(c, "member", c.createdAtMs + 100);
        await rejectsWith(s.addMembers(g, [joiner()], 100, undefined, first), "not_found", "invite link does not work"); // none yet
        await s.setInviteCode(g, first);
        const early = joiner();
        assert.deepStrictEqual(await s.addMembers(g, [early], 100, undefined, first), [early.userId]);
        await s.setInviteCode(g, second);
        await rejectsWith(s.addMembers(g, [joiner()], 100, undefined, first), "not_found", "invite link does not work");
        assert.equal(await s.memberCount(g), 3);
        const late = joiner();
        assert.deepStrictEqual(await s.addMembers(g, [late], 100, undefined, second), [late.userId]);
        await s.setInviteCode(g, undefined);
        await rejectsWith(s.addMembers(g, [joiner()], 100, undefined, second), "not_found", "invite link does not work");
        // Another group's code opens only that group.
        const other = await newGroupId();
        const theirs = code();
        await s.setInviteCode(other, theirs);
        await rejectsWith(s.addMembers(g, [joiner()], 100, undefined, theirs), "not_found");
        assert.deepStrictEqual((await s.listMembers(g)).map((m) => m.userId).slice(2), [early.userId, late.userId]);
        assert.equal(await s.memberCount(g), 4);
      });

      it("one removed by another is barred from the link until a manager adds them back; one who left is not", async () => {
        const { c, members } = await newGroup(3);
        const g = c.channelId;
        const [removed, leaver, stays] = [members[1]!, members[2]!, members[3]!];
        const link = code();
        await s.setInviteCode(g, link);
        const back = (m: MemberRecord) => ({ ...m, joinedAtMs: c.createdAtMs + 100 });

        assert.deepStrictEqual(await s.removeMember(g, removed.userId, undefined, true), { removed: true });
        await s.removeMember(g, leaver.userId);
        assert.deepStrictEqual([await s.isBarred(g, removed.userId), await s.isBarred(g, leaver.userId)], [true, false]);
        assert.deepStrictEqual(await s.barredAmong(g, [leaver.userId, removed.userId, stays.userId]), [removed.userId]);
        await rejectsWith(s.addMembers(g, [back(removed)], 100, undefined, link), "permission_denied", "an admin removed you");
        assert.equal(await s.getMember(g, removed.userId), undefined);
        assert.deepStrictEqual(await s.addMembers(g, [back(leaver)], 100, undefined, link), [leaver.userId], "one who left comes back by the link");
        // A removal that removes nobody (a retry, one who left meanwhile) bars nobody.
        const gone = uniqueId();
        assert.deepStrictEqual(await s.removeMember(g, gone, undefined, true), { removed: false });
        assert.equal(await s.isBarred(g, gone), false);
        assert.equal(await s.isBarred(g, stays.userId), false);

        // Added back by a manager: the bar is gone with that add, so leaving and
        // coming back by the link works again.
        assert.deepStrictEqual(await s.addMembers(g, [back(removed)], 100), [removed.userId]);
        assert.equal(await s.isBarred(g, removed.userId), false);
        await s.removeMember(g, removed.userId);
        assert.deepStrictEqual(await s.addMembers(g, [back(removed)], 100, undefined, link), [removed.userId]);
        // The bar is the group's alone.
        const other = await newGroup(1);
        await s.removeMember(other.c.channelId, other.members[1]!.userId, undefined, true);
        assert.equal(await s.isBarred(g, other.members[1]!.userId), false);
        assert.equal(await s.isBarred(other.c.channelId, removed.userId), false);
      });

      it(`a group keeps its ${MAX_BARS} newest bars: the bar past them lifts the oldest, and the removal goes through`, async function () {
        this.timeout(300_000);
        const { c } = await newGroup(0);
        const g = c.channelId;
        const link = code();
        await s.setInviteCode(g, link);
        const barred: MemberRecord[] = [];
        // In rounds of 100, so no state read carries a thousand members.
        while (barred.length < MAX_BARS + 1) {
          const round = Array.from({ length: Math.min(100, MAX_BARS + 1 - barred.length) }, () => member(c));
          await s.addMembers(g, round, MAX_BARS + 2);
          for (const m of round) {
            assert.deepStrictEqual(await s.removeMember(g, m.userId, undefined, true), { removed: true });
            barred.push(m);
          }
        }
        const [oldest, second, newest] = [barred[0]!, barred[1]!, barred.at(-1)!];
        assert.deepStrictEqual(
          [await s.isBarred(g, oldest.userId), await s.isBarred(g, second.userId), await s.isBarred(g, newest.userId)],
          [false, true, true],
        );
        assert.deepStrictEqual(await s.addMembers(g, [oldest], 100, undefined, link), [oldest.userId], "the oldest comes back by the link");
        await rejectsWith(s.addMembers(g, [second], 100, undefined, link), "permission_denied");
        // Barred again, the oldest is the newest bar: the next oldest makes room.
        await s.removeMember(g, oldest.userId, undefined, true);
        assert.deepStrictEqual([await s.isBarred(g, oldest.userId), await s.isBarred(g, second.userId)], [true, false]);
        assert.equal(await s.isBarred(g, barred[2]!.userId), true);
      });

      it("a removal and the removed one's join by link at once never leave them in", async () => {
        const { c, members } = await newGroup(1);
        const g = c.channelId;
        const link = code();
        await s.setInviteCode(g, link);
        const x = members[1]!;
        for (let round = 0; round < 10; round++) {
          // A join that lands first finds x in and changes nothing, and the
          // removal takes x out; one that lands after the removal finds the bar.
          const removal = () => s.removeMember(g, x.userId, undefined, true);
          const join = () => s.addMembers(g, [{ ...x, joinedAtMs: c.createdAtMs + round }], 100, undefined, link);
          const [removed, joined] = round % 2 ? await Promise.allSettled([join(), removal()]).then(([j, r]) => [r, j])
            : await Promise.allSettled([removal(), join()]);
          assert.deepStrictEqual(removed, { status: "fulfilled", value: { removed: true } }, `round ${round}`);
          if (joined!.status === "rejected") assert.equal((joined!.reason as { code?: string }).code, "permission_denied");
          assert.equal(await s.getMember(g, x.userId), undefined, `round ${round}`);
          assert.equal(await s.isBarred(g, x.userId), true, `round ${round}`);
          assert.deepStrictEqual(await s.addMembers(g, [x], 100), [x.userId]); // a manager adds x back for the next round
        }
        assert.equal(await s.memberCount(g), 2);
      });
    });
  });
}
