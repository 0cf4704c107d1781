import assert from "node:assert/strict";
import { isActiveDevice, isDeletedUser, isRevoked, type AccountStore, type RefreshTokenTake, type RefreshTokenUse } from "../../accounts/store.js";
import { hashRefreshToken, RefreshTokens } from "../../auth/refresh.js";
import { ChatError } from "../../model/errors.js";
import type { DeviceRecord, UserRecord } from "../../model/types.js";
import { rejectsWith, uniqueId, uniqueName, type MakeStore, type StoreHandle } from "./helpers.js";

/** Declares the AccountStore contract; every adapter runs it unchanged. */
export function accountStoreContract(makeStore: MakeStore<AccountStore>): void {
  describe("AccountStore contract", function () {
    let h: StoreHandle<AccountStore>;
    let s: AccountStore;
    before(async () => {
      h = await makeStore();
      s = h.store;
    });
    after(async () => h?.close());

    const newUser = async (username = uniqueName("User_")): Promise<UserRecord> => {
      const u: UserRecord = {
        userId: uniqueId(),
        username,
        displayName: `Display ${username} 😀`,
        passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$abc$def",
        createdAtMs: 1_767_225_600_123,
      };
      await s.createUser(u);
      return u;
    };
    /** A take, less how long ago a reuse's first take was (only some stores measure it, each on its own clock). */
    const take = async (tokenHash: string, u: RefreshTokenUse): Promise<Omit<RefreshTokenTake, "usedAgoMs"> | undefined> => {
      const taken = await s.takeRefreshToken(tokenHash, u);
      if (!taken) return undefined;
      const { usedAgoMs, ...rest } = taken;
      assert.ok(usedAgoMs === undefined || (taken.reused && taken.usedAtMs !== undefined && usedAgoMs >= 0), `usedAgoMs ${usedAgoMs}`);
      return rest;
    };
    /** A use of a refresh token, with a successor nobody holds unless the test puts it. */
    const use = (atMs = 1_800_000_000_000, successorHash = uniqueName("next_")): RefreshTokenUse => ({ atMs, successorHash });
    const newDevice = async (userId: bigint, name = "phone"): Promise<DeviceRecord> => {
      const d: DeviceRecord = {
        userId,
        deviceId: uniqueId(),
        name,
        platform: "ios",
        createdAtMs: 1_767_225_600_000,
        lastSeenAtMs: 1_767_225_600_000,
        revoked: false,
      };
      await s.createDevice(d);
      return d;
    };

    describe("users", () => {
      it("stores a user and returns it by id, all fields intact, username as typed", async () => {
        const u = await newUser(uniqueName("MiXeD_"));
        assert.deepStrictEqual(await s.getUser(u.userId), u);
      });

      it("returns undefined for an unknown id or username", async () => {
        assert.equal(await s.getUser(uniqueId()), undefined);
        assert.equal(await s.findUserByUsername(uniqueName("nobody_")), undefined);
      });

      it("finds a user by username case-insensitively", async () => {
        const u = await newUser(uniqueName("Alice_"));
        assert.deepStrictEqual(await s.findUserByUsername(u.username.toUpperCase()), u);
        assert.deepStrictEqual(await s.findUserByUsername(u.username.toLowerCase()), u);
      });

      it("refuses a username taken in another case with already_exists, keeping the first", async () => {
        const u = await newUser(uniqueName("Bob_"));
        const clash: UserRecord = { ...u, userId: uniqueId(), username: u.username.toUpperCase(), displayName: "other" };
        await rejectsWith(s.createUser(clash), "already_exists");
        assert.equal(await s.getUser(clash.userId), undefined);
        assert.deepStrictEqual(await s.findUserByUsername(u.username), u);
      });

      it("getUsers follows the input order and leaves out unknown ids", async () => {
        const [a, b, c] = [await newUser(), await newUser(), await newUser()];
        const got = await s.getUsers([c.userId, uniqueId(), a.userId, b.userId]);
        assert.deepStrictEqual(got, [c, a, b]);
        assert.deepStrictEqual(await s.getUsers([]), []);
      });

      it("searchUsers matches the lower-cased prefix, alphabetically, up to limit", async () => {
        const p = uniqueName("srch_");
        const zed = await newUser(`${p}Zed`);
        const amy = await newUser(`${p}amy`);
        const bob = await newUser(`${p}BOB`);
        await newUser(uniqueName("other_"));
        assert.deepStrictEqual(await s.searchUsers(p.toUpperCase(), 10), [amy, bob, zed]);
        assert.deepStrictEqual(await s.searchUsers(p, 2), [amy, bob]);
        assert.deepStrictEqual(await s.searchUsers(`${p}b`, 10), [bob]);
        assert.deepStrictEqual(await s.searchUsers(`${p}q`, 10), []);
      });

      it("updateDisplayName changes only the display name", async () => {
        const u = await newUser();
        await s.updateDisplayName(u.userId, "New name 🎉");
        assert.deepStrictEqual(await s.getUser(u.userId), { ...u, displayName: "New name 🎉" });
      });

      it("updatePasswordHash changes only the password hash, and creates no unknown user", async () => {
        const u = await newUser();
        await s.updatePasswordHash(u.userId, "$argon2id$new");
        assert.deepStrictEqual(await s.getUser(u.userId), { ...u, passwordHash: "$argon2id$new" });
        assert.equal((await s.findUserByUsername(u.username))?.passwordHash, "$argon2id$new");
        const id = uniqueId();
        await s.updatePasswordHash(id, "$argon2id$ghost");
        assert.equal(await s.getUser(id), undefined);
      });

      it("updateDisplayName of an unknown user creates nothing", async () => {
        const id = uniqueId();
        await s.updateDisplayName(id, "ghost");
        assert.equal(await s.getUser(id), undefined);
      });

      const deleted = (u: UserRecord): UserRecord => ({ ...u, username: "", displayName: "", passwordHash: "" });

      it("deleteUser keeps the row, its id and creation time, with username, display name and password hash empty", async () => {
        const u = await newUser();
        await s.deleteUser(u.userId);
        const got = await s.getUser(u.userId);
        assert.deepStrictEqual(got, deleted(u));
        assert.ok(isDeletedUser(got!));
        assert.deepStrictEqual(await s.getUsers([u.userId]), [got]);
      });

      it("a deleted user is found by no username, in any case, nor by any search", async () => {
        const p = uniqueName("gone_");
        const u = await newUser(`${p}Name`);
        const kept = await newUser(`${p}kept`);
        await s.deleteUser(u.userId);
        for (const name of [u.username, u.username.toLowerCase(), u.username.toUpperCase()]) {
          assert.equal(await s.findUserByUsername(name), undefined, name);
        }
        assert.deepStrictEqual(await s.searchUsers(p, 10), [kept]);
        assert.deepStrictEqual(await s.searchUsers(u.username, 10), []);
        // Prefixes no username has: whatever stands in for a deleted name must not show.
        for (const prefix of ["", "#", " "]) {
          const found = await s.searchUsers(prefix, 100);
          assert.ok(!found.some((f) => f.userId === u.userId || isDeletedUser(f)), `prefix "${prefix}"`);
        }
        assert.deepStrictEqual(await s.findUserByUsername(kept.username), kept);
      });

      it("a deleted user's name is free: another user may take it, in another case or the same", async () => {
        const u = await newUser(uniqueName("Reuse_"));
        await s.deleteUser(u.userId);
        const second: UserRecord = { ...u, userId: uniqueId(), username: u.username.toUpperCase(), displayName: "second" };
        await s.createUser(second);
        assert.deepStrictEqual(await s.findUserByUsername(u.username), second);
        assert.deepStrictEqual(await s.searchUsers(u.username, 10), [second]);
        assert.deepStrictEqual(await s.getUser(u.userId), deleted(u));

        await s.deleteUser(second.userId);
        const third: UserRecord = { ...u, userId: uniqueId(), displayName: "third" };
        await s.createUser(third);
        assert.deepStrictEqual(await s.findUserByUsername(u.username.toUpperCase()), third);
        assert.deepStrictEqual(await s.searchUsers(u.username, 10), [third]);
        assert.deepStrictEqual(await s.getUsers([u.userId, second.userId, third.userId]), [deleted(u), deleted(second), third]);
      });

      it("a deleted user stays deleted: a display name or password hash set after the deletion (a request in flight) changes nothing", async () => {
        const u = await newUser();
        await s.deleteUser(u.userId);
        await s.updateDisplayName(u.userId, "Back again");
        await s.updatePasswordHash(u.userId, "$argon2id$after");
        assert.deepStrictEqual(await s.getUser(u.userId), deleted(u));
        assert.deepStrictEqual(await s.getUsers([u.userId]), [deleted(u)]);
      });

      it("a deletion racing a change of the display name or password hash leaves the account deleted, whichever lands first", async () => {
        for (let i = 0; i < 30; i++) {
          const u = await newUser();
          const deletion = s.deleteUser(u.userId);
          // Let the deletion's first request go out before the changes'.
          await new Promise((r) => setImmediate(r));
          await Promise.all([deletion, s.updateDisplayName(u.userId, "Racing"), s.updatePasswordHash(u.userId, "$argon2id$racing")]);
          assert.deepStrictEqual(await s.getUser(u.userId), deleted(u), `round ${i}`);
        }
      });

      it("deleting again, or an unknown user, does nothing, even once the name is taken again", async () => {
        const u = await newUser();
        await s.deleteUser(u.userId);
        const next: UserRecord = { ...u, userId: uniqueId() };
        await s.createUser(next);
        await s.deleteUser(u.userId);
        assert.deepStrictEqual(await s.getUser(u.userId), deleted(u));
        assert.deepStrictEqual(await s.findUserByUsername(u.username), next);
        assert.deepStrictEqual(await s.searchUsers(u.username, 10), [next]);
        await rejectsWith(s.createUser({ ...u, userId: uniqueId() }), "already_exists");

        const id = uniqueId();
        await s.deleteUser(id);
        assert.equal(await s.getUser(id), undefined);
      });
    });

    describe("devices", () => {
      it("stores a device and returns it", async () => {
        const u = await newUser();
        const d = await newDevice(u.userId);
        assert.deepStrictEqual(await s.getDevice(u.userId, d.deviceId), d);
        assert.equal(await s.getDevice(u.userId, uniqueId()), undefined);
      });

      it("lists only the user's own devices", async () => {
        const [u, v] = [await newUser(), await newUser()];
        const d1 = await newDevice(u.userId, "phone");
        const d2 = await newDevice(u.userId, "laptop");
        await newDevice(v.userId, "other");
        const got = (await s.listDevices(u.userId)).sort((x, y) => (x.deviceId < y.deviceId ? -1 : 1));
        assert.deepStrictEqual(got, [d1, d2]);
        assert.deepStrictEqual(await s.listDevices(uniqueId()), []);
      });

      it("touchDevice sets lastSeenAtMs and nothing else", async () => {
        const u = await newUser();
        const d = await newDevice(u.userId);
        await s.touchDevice(u.userId, d.deviceId, 1_800_000_000_000);
        assert.deepStrictEqual(await s.getDevice(u.userId, d.deviceId), { ...d, lastSeenAtMs: 1_800_000_000_000 });
      });

      it("revokeDevice keeps the row, marks it revoked and only its refresh tokens used (no time, no successor), so a take reads whose they were", async () => {
        const u = await newUser();
        const [d, other] = [await newDevice(u.userId), await newDevice(u.userId)];
        const rec = { userId: u.userId, deviceId: d.deviceId, expiresAtMs: 1_900_000_000_000 };
        const [t1, t2, t3] = [uniqueName("tok_"), uniqueName("tok_"), uniqueName("tok_")];
        await s.putRefreshToken(t1, rec);
        await s.putRefreshToken(t2, rec);
        await s.putRefreshToken(t3, { ...rec, deviceId: other.deviceId });
        await s.revokeDevice(u.userId, d.deviceId);
        assert.deepStrictEqual(await s.getDevice(u.userId, d.deviceId), { ...d, revoked: true });
        // Refused as a reuse that names the device, whose sign-out the caller then finds (and why).
        assert.deepStrictEqual(await take(t1, use()), { record: rec, reused: true });
        assert.deepStrictEqual(await take(t2, use()), { record: rec, reused: true });
        assert.deepStrictEqual(await take(t3, use()), { record: { ...rec, deviceId: other.deviceId }, reused: false });
        assert.equal((await s.getDevice(u.userId, other.deviceId))?.revoked, false);
      });

      it("forgetDevice deletes a revoked device's row, and leaves a device still signed in alone", async () => {
        const u = await newUser();
        const [gone, kept] = [await newDevice(u.userId, "old"), await newDevice(u.userId, "new")];
        await s.revokeDevice(u.userId, gone.deviceId);
        await s.forgetDevice(u.userId, gone.deviceId);
        await s.forgetDevice(u.userId, kept.deviceId);
        assert.equal(await s.getDevice(u.userId, gone.deviceId), undefined);
        assert.deepStrictEqual(await s.listDevices(u.userId), [kept]);
        await s.forgetDevice(u.userId, uniqueId()); // an unknown device: nothing to do
      });

      it("a signed-in device is active; a revoked one is revoked, and one with no row is neither", async () => {
        const u = await newUser();
        const [kept, gone] = [await newDevice(u.userId), await newDevice(u.userId)];
        await s.revokeDevice(u.userId, gone.deviceId);
        const unknown = uniqueId();
        assert.deepEqual(
          await Promise.all([kept.deviceId, gone.deviceId, unknown].map((d) => isActiveDevice(s, u.userId, d))),
          [true, false, false],
        );
        assert.deepEqual(
          await Promise.all([kept.deviceId, gone.deviceId, unknown].map((d) => isRevoked(s, u.userId, d))),
          [false, true, false],
        );
      });
    });

    describe("presence settings", () => {
      it("keeps each user's presence visibility, the last one set, and nothing for users who never chose", async () => {
        const [u, v, never] = [await newUser(), await newUser(), await newUser()];
        await s.setPresenceVisibility(u.userId, "nobody");
        await s.setPresenceVisibility(v.userId, "nobody");
        await s.setPresenceVisibility(v.userId, "friends");
        const got = await s.getPresenceVisibility([u.userId, v.userId, never.userId]);
        assert.deepStrictEqual(got, new Map([[u.userId, "nobody"], [v.userId, "friends"]]));
        assert.deepStrictEqual(await s.getPresenceVisibility([]), new Map());
      });
    });

    describe("refresh tokens", () => {
      it("takeRefreshToken returns the record once, and every later take says the token was reused", async () => {
        const u = await newUser();
        const d = await newDevice(u.userId);
        const rec = { userId: u.userId, deviceId: d.deviceId, expiresAtMs: 1_900_000_000_000 };
        const t = uniqueName("tok_");
        await s.putRefreshToken(t, rec);
        assert.deepStrictEqual(await take(t, use()), { record: rec, reused: false });
        for (const _ of [1, 2]) {
          const again = await take(t, use());
          assert.deepStrictEqual([again?.record, again?.reused], [rec, true]);
        }
      });

      it("racing takes of one token: exactly one gets it fresh, the others see it reused", async () => {
        const u = await newUser();
        const d = await newDevice(u.userId);
        const t = uniqueName("tok_");
        await s.putRefreshToken(t, { userId: u.userId, deviceId: d.deviceId, expiresAtMs: 1_900_000_000_000 });
        const got = await Promise.all([take(t, use()), take(t, use()), take(t, use())]);
        assert.equal(got.filter((r) => r?.reused === false).length, 1);
        assert.equal(got.filter((r) => r?.reused === true).length, 2);
      });

      it("racing takes of one token: each that sees it reused gets the fresh take's use time and successor, as a later reuse would", async () => {
        const u = await newUser();
        const d = await newDevice(u.userId);
        const rec = { userId: u.userId, deviceId: d.deviceId, expiresAtMs: 1_900_000_000_000 };
        const t = uniqueName("tok_");
        await s.putRefreshToken(t, rec);
        const uses = [1, 2].map((i) => ({ ...use(1_800_000_000_000 + i), successorExpiresAtMs: 1_900_000_000_000 }));
        const got = await Promise.all(uses.map((u) => take(t, u)));
        const winner = got.findIndex((r) => r?.reused === false);
        assert.notEqual(winner, -1);
        const loser = got[1 - winner];
        assert.deepStrictEqual(loser, { record: rec, reused: true, usedAtMs: uses[winner]!.atMs, successorHash: uses[winner]!.successorHash });
        // The winner's successor is there for the loser, a client's retry, to take.
        assert.equal(await s.takeSuccessor(t, uses[winner]!.successorHash, uses[1 - winner]!), true);
      });

      /** `count` rotations of one token at once, each through `rotate`: every one answered, the device signed in, one token of theirs live. */
      const racingRotations = async (count: number, rotate: (tokens: RefreshTokens, token: string) => Promise<string>) => {
        const u = await newUser();
        const d = await newDevice(u.userId);
        const signedOut: unknown[] = [];
        const tokens = new RefreshTokens(s, { onReuse: async (r) => void signedOut.push(r) });
        const { token } = await tokens.issue(u.userId, d.deviceId);
        const got = await Promise.allSettled(Array.from({ length: count }, () => rotate(tokens, token)));
        assert.deepEqual(got.map((r) => r.status), got.map(() => "fulfilled"), String(got.map((r) => r.status === "rejected" && r.reason)));
        assert.deepEqual(signedOut, []);
        assert.equal(await isRevoked(s, u.userId, d.deviceId), false);
        const issued = got.map((r) => (r as PromiseFulfilledResult<string>).value);
        // One is the chain's live token; each other one was taken by a retry after it.
        const takes = await Promise.all(issued.map((t) => take(hashRefreshToken(t), use())));
        assert.equal(takes.filter((r) => r?.reused === false).length, 1, JSON.stringify(takes.map((r) => r?.reused)));
      };

      it("racing rotations of one token (a retry while the first is under way) both answer, the device signed in, one token live", async () => {
        await racingRotations(2, async (tokens, token) => (await tokens.rotate(token)).token);
      });

      it("racing rotations of one token, several (a retry sent each time the one before timed out): none signs the device out, one token live", async () => {
        // As a client does with "try again": a retry that lost the successor to one whose mark is still to move.
        const rotateUntilAnswered = async (tokens: RefreshTokens, token: string, tries = 5): Promise<string> => {
          try {
            return (await tokens.rotate(token)).token;
          } catch (err) {
            if (tries > 1 && err instanceof ChatError && err.code === "unavailable") return rotateUntilAnswered(tokens, token, tries - 1);
            throw err;
          }
        };
        await racingRotations(4, (tokens, token) => rotateUntilAnswered(tokens, token));
      });

      it("refreshTokenMark reads a used token's mark as a reuse is answered it, and nothing of one unused", async () => {
        const u = await newUser();
        const d = await newDevice(u.userId);
        const rec = { userId: u.userId, deviceId: d.deviceId, expiresAtMs: 1_900_000_000_000 };
        const [t, next, after] = [uniqueName("tok_"), uniqueName("next_"), uniqueName("after_")];
        await s.putRefreshToken(t, rec);
        assert.equal(await s.refreshTokenMark(t), undefined, "unused");
        assert.equal(await s.refreshTokenMark(uniqueName("tok_")), undefined, "never issued");
        await take(t, use(1_800_000_000_000, next));
        assert.deepStrictEqual(await s.refreshTokenMark(t), { usedAtMs: 1_800_000_000_000, successorHash: next });
        await s.putRefreshToken(next, rec);
        assert.equal(await s.takeSuccessor(t, next, use(1_800_000_003_000, after)), true);
        assert.deepStrictEqual(await s.refreshTokenMark(t), { usedAtMs: 1_800_000_000_000, successorHash: after }, "moved on");
        assert.deepStrictEqual(await s.refreshTokenMark(next), { usedAtMs: 1_800_000_003_000 }, "taken by a retry: no successor of its own");
        const live = uniqueName("live_");
        await s.putRefreshToken(live, rec);
        await s.revokeDevice(u.userId, d.deviceId);
        assert.deepStrictEqual(await s.refreshTokenMark(live), {}, "marked at its device's sign-out: no use time");
      });

      it("an unknown token is undefined", async () => {
        assert.equal(await take(uniqueName("tok_"), use()), undefined);
      });

      it("the first take's mark keeps when it was and the successor: every reuse returns them", async () => {
        const u = await newUser();
        const d = await newDevice(u.userId);
        const rec = { userId: u.userId, deviceId: d.deviceId, expiresAtMs: 1_900_000_000_000 };
        const t = uniqueName("tok_");
        await s.putRefreshToken(t, rec);
        const first = use(1_800_000_000_000);
        assert.deepStrictEqual(await take(t, first), { record: rec, reused: false });
        const reuse = { record: rec, reused: true, usedAtMs: first.atMs, successorHash: first.successorHash };
        assert.deepStrictEqual(await take(t, use(1_800_000_005_000)), reuse);
        assert.deepStrictEqual(await take(t, use(1_800_000_009_000)), reuse, "a reuse leaves the mark as it was");
      });

      it("takeSuccessor takes an unused successor, marked used with no successor, and moves the mark on", async () => {
        const u = await newUser();
        const d = await newDevice(u.userId);
        const rec = { userId: u.userId, deviceId: d.deviceId, expiresAtMs: 1_900_000_000_000 };
        const [t, next, after] = [uniqueName("tok_"), uniqueName("next_"), uniqueName("after_")];
        await s.putRefreshToken(t, rec);
        await take(t, use(1_800_000_000_000, next));
        const nextRec = { ...rec, expiresAtMs: 1_900_000_000_001 };
        await s.putRefreshToken(next, nextRec);

        assert.equal(await s.takeSuccessor(t, next, use(1_800_000_003_000, after)), true);
        assert.deepStrictEqual(await take(t, use()), { record: rec, reused: true, usedAtMs: 1_800_000_000_000, successorHash: after });
        assert.deepStrictEqual(await take(next, use()), { record: nextRec, reused: true, usedAtMs: 1_800_000_003_000 });
        assert.equal(await s.takeSuccessor(t, next, use()), false, "taken once");
      });

      it("takeSuccessor refuses a successor already used, never issued, or marked used with its device's sign-out, and moves nothing", async () => {
        const u = await newUser();
        const d = await newDevice(u.userId);
        const rec = { userId: u.userId, deviceId: d.deviceId, expiresAtMs: 1_900_000_000_000 };
        const [used, next] = [uniqueName("tok_"), uniqueName("next_")];
        await s.putRefreshToken(used, rec);
        await take(used, use(1_800_000_000_000, next));
        await s.putRefreshToken(next, rec);
        await take(next, use());
        assert.equal(await s.takeSuccessor(used, next, use()), false);
        assert.equal((await take(used, use()))?.successorHash, next);

        const [lost, never] = [uniqueName("tok_"), uniqueName("never_")];
        await s.putRefreshToken(lost, rec);
        await take(lost, use(1_800_000_000_000, never));
        assert.equal(await s.takeSuccessor(lost, never, use()), false);

        const [gone, revoked] = [uniqueName("tok_"), uniqueName("next_")];
        await s.putRefreshToken(gone, rec);
        await take(gone, use(1_800_000_000_000, revoked));
        await s.putRefreshToken(revoked, rec);
        await s.revokeDevice(u.userId, d.deviceId);
        assert.equal(await s.takeSuccessor(gone, revoked, use()), false);
      });

      it("with successorExpiresAtMs, a take and a takeSuccessor store the successor with it (not for a token expired when taken)", async () => {
        const u = await newUser();
        const d = await newDevice(u.userId);
        const rec = { userId: u.userId, deviceId: d.deviceId, expiresAtMs: 1_900_000_000_000 };
        const [t, next, after] = [uniqueName("tok_"), uniqueName("next_"), uniqueName("after_")];
        await s.putRefreshToken(t, rec);
        assert.deepStrictEqual(
          await take(t, { ...use(1_800_000_000_000, next), successorExpiresAtMs: 1_900_000_000_001 }),
          { record: rec, reused: false },
        );
        // Stored, so that a retry takes it with nothing put in between.
        assert.equal(await s.takeSuccessor(t, next, { ...use(1_800_000_003_000, after), successorExpiresAtMs: 1_900_000_000_002 }), true);
        assert.deepStrictEqual(await take(next, use()), { record: { ...rec, expiresAtMs: 1_900_000_000_001 }, reused: true, usedAtMs: 1_800_000_003_000 });
        assert.deepStrictEqual(await take(after, use()), { record: { ...rec, expiresAtMs: 1_900_000_000_002 }, reused: false });

        const [expired, none] = [uniqueName("tok_"), uniqueName("never_")];
        await s.putRefreshToken(expired, { ...rec, expiresAtMs: 1_800_000_000_000 });
        await take(expired, { ...use(1_800_000_000_000, none), successorExpiresAtMs: 1_900_000_000_000 });
        assert.equal(await take(none, use()), undefined);

        // Marked used with the device's tokens, as any other.
        const [last, stored] = [uniqueName("tok_"), uniqueName("next_")];
        await s.putRefreshToken(last, rec);
        await take(last, { ...use(1_800_000_000_000, stored), successorExpiresAtMs: 1_900_000_000_000 });
        await s.revokeDevice(u.userId, d.deviceId);
        assert.deepStrictEqual(await take(stored, use()), { record: { ...rec, expiresAtMs: 1_900_000_000_000 }, reused: true });
      });

      it("racing takeSuccessor calls: exactly one takes the successor", async () => {
        const u = await newUser();
        const d = await newDevice(u.userId);
        const rec = { userId: u.userId, deviceId: d.deviceId, expiresAtMs: 1_900_000_000_000 };
        const [t, next] = [uniqueName("tok_"), uniqueName("next_")];
        await s.putRefreshToken(t, rec);
        await take(t, use(1_800_000_000_000, next));
        await s.putRefreshToken(next, rec);
        const got = await Promise.all([1, 2, 3].map(() => s.takeSuccessor(t, next, use())));
        assert.equal(got.filter(Boolean).length, 1);
      });
    });

    describe("friend requests", () => {
      it("a request is directed", async () => {
        const [a, b] = [await newUser(), await newUser()];
        await s.putFriendRequest(a.userId, b.userId, 1000);
        assert.equal(await s.hasFriendRequest(a.userId, b.userId), true);
        assert.equal(await s.hasFriendRequest(b.userId, a.userId), false);
      });

      it("listFriendRequests shows requests in both directions, to both sides", async () => {
        const [a, b, c] = [await newUser(), await newUser(), await newUser()];
        await s.putFriendRequest(a.userId, b.userId, 1000);
        await s.putFriendRequest(c.userId, a.userId, 2000);
        const key = (r: { fromUserId: bigint; toUserId: bigint }) => `${r.fromUserId}>${r.toUserId}`;
        const sorted = <T extends { fromUserId: bigint; toUserId: bigint }>(rs: T[]) =>
          [...rs].sort((x, y) => key(x).localeCompare(key(y)));
        assert.deepStrictEqual(
          sorted(await s.listFriendRequests(a.userId)),
          sorted([
            { fromUserId: a.userId, toUserId: b.userId, atMs: 1000 },
            { fromUserId: c.userId, toUserId: a.userId, atMs: 2000 },
          ]),
        );
        assert.deepStrictEqual(await s.listFriendRequests(b.userId), [
          { fromUserId: a.userId, toUserId: b.userId, atMs: 1000 },
        ]);
        assert.deepStrictEqual(await s.listFriendRequests(uniqueId()), []);
      });

      it("requests both ways between one pair are two requests", async () => {
        const [a, b] = [await newUser(), await newUser()];
        await s.putFriendRequest(a.userId, b.userId, 1000);
        await s.putFriendRequest(b.userId, a.userId, 2000);
        assert.equal((await s.listFriendRequests(a.userId)).length, 2);
        await s.deleteFriendRequest(a.userId, b.userId);
        assert.equal(await s.hasFriendRequest(a.userId, b.userId), false);
        assert.equal(await s.hasFriendRequest(b.userId, a.userId), true);
        assert.deepStrictEqual(await s.listFriendRequests(a.userId), [
          { fromUserId: b.userId, toUserId: a.userId, atMs: 2000 },
        ]);
      });

      it("putting the same request twice keeps one request", async () => {
        const [a, b] = [await newUser(), await newUser()];
        await s.putFriendRequest(a.userId, b.userId, 1000);
        await s.putFriendRequest(a.userId, b.userId, 1000);
        assert.equal((await s.listFriendRequests(b.userId)).length, 1);
      });
    });

    describe("friendships", () => {
      it("addFriendship is symmetric and deletes pending requests both ways", async () => {
        const [a, b] = [await newUser(), await newUser()];
        await s.putFriendRequest(a.userId, b.userId, 1000);
        await s.putFriendRequest(b.userId, a.userId, 1001);
        await s.addFriendship(a.userId, b.userId, 2000);
        assert.equal(await s.areFriends(a.userId, b.userId), true);
        assert.equal(await s.areFriends(b.userId, a.userId), true);
        assert.deepStrictEqual(await s.listFriends(a.userId), [b.userId]);
        assert.deepStrictEqual(await s.listFriends(b.userId), [a.userId]);
        assert.equal(await s.hasFriendRequest(a.userId, b.userId), false);
        assert.equal(await s.hasFriendRequest(b.userId, a.userId), false);
        assert.deepStrictEqual(await s.listFriendRequests(a.userId), []);
      });

      it("adding twice keeps one friendship; strangers are not friends", async () => {
        const [a, b, c] = [await newUser(), await newUser(), await newUser()];
        await s.addFriendship(a.userId, b.userId, 2000);
        await s.addFriendship(b.userId, a.userId, 3000);
        assert.deepStrictEqual(await s.listFriends(a.userId), [b.userId]);
        assert.equal(await s.areFriends(a.userId, c.userId), false);
        assert.deepStrictEqual(await s.listFriends(c.userId), []);
      });

      it("listFriends lists every friend", async () => {
        const [a, b, c] = [await newUser(), await newUser(), await newUser()];
        await s.addFriendship(a.userId, b.userId, 1);
        await s.addFriendship(c.userId, a.userId, 2);
        const got = (await s.listFriends(a.userId)).sort((x, y) => (x < y ? -1 : 1));
        assert.deepStrictEqual(got, [b.userId, c.userId]);
      });

      it("removeFriendship removes both directions, from either side", async () => {
        const [a, b, c] = [await newUser(), await newUser(), await newUser()];
        await s.addFriendship(a.userId, b.userId, 1);
        await s.addFriendship(a.userId, c.userId, 1);
        await s.removeFriendship(b.userId, a.userId);
        assert.equal(await s.areFriends(a.userId, b.userId), false);
        assert.equal(await s.areFriends(b.userId, a.userId), false);
        assert.deepStrictEqual(await s.listFriends(a.userId), [c.userId]);
        assert.deepStrictEqual(await s.listFriends(b.userId), []);
      });
    });

    describe("pending deletions", () => {
      // The table is shared with other tests and runs: each test reads back its own users alone.
      const mine = async (ids: bigint[], recordedBy: number) =>
        (await s.listPendingDeletions(recordedBy, 10_000)).filter((d) => ids.includes(d.userId));

      it("lists those recorded by a time, oldest first, across every user, until each is removed as recorded", async () => {
        const base = 1_700_000_000_000;
        // Enough users to land in several partitions where the store spreads them.
        const pending = Array.from({ length: 20 }, (_, i) => ({ userId: uniqueId(), deviceId: uniqueId(), atMs: base + 19 - i }));
        for (const p of pending) await s.putPendingDeletion(p);
        const ids = pending.map((p) => p.userId);
        const byTime = [...pending].sort((x, y) => x.atMs - y.atMs);
        assert.deepStrictEqual(await mine(ids, base + 19), byTime);
        // Recorded after the time asked: left out.
        assert.deepStrictEqual(await mine(ids, base + 9), byTime.slice(0, 10));
        assert.deepStrictEqual(await s.listPendingDeletions(base + 19, 0), []);
        // Removed only as recorded: another time is another attempt's record.
        await s.removePendingDeletion(pending[0]!.userId, pending[0]!.atMs - 1);
        assert.equal((await mine(ids, base + 19)).length, 20);
        for (const p of pending) await s.removePendingDeletion(p.userId, p.atMs);
        assert.deepStrictEqual(await mine(ids, base + 19), []);
        // Removing again, or what was never recorded, does nothing.
        await s.removePendingDeletion(pending[0]!.userId, pending[0]!.atMs);
        await s.removePendingDeletion(uniqueId(), base);
      });

      it("a new attempt replaces an earlier one's record, which a removal of the earlier then leaves", async () => {
        const userId = uniqueId();
        const first = { userId, deviceId: uniqueId(), atMs: 1_700_000_000_000 };
        const again = { userId, deviceId: uniqueId(), atMs: 1_700_000_060_000 };
        await s.putPendingDeletion(first);
        await s.putPendingDeletion(again);
        await s.removePendingDeletion(userId, first.atMs);
        assert.deepStrictEqual(await mine([userId], again.atMs), [again]);
        // After a removal, recorded again.
        await s.removePendingDeletion(userId, again.atMs);
        await s.putPendingDeletion(first);
        assert.deepStrictEqual(await mine([userId], again.atMs), [first]);
        await s.removePendingDeletion(userId, first.atMs);
        assert.deepStrictEqual(await mine([userId], again.atMs), []);
      });

      it("keeps whom to tell offline that an earlier attempt recorded, with a new attempt's added; a removal takes them too", async () => {
        const userId = uniqueId();
        const [f1, f2, f3] = [uniqueId(), uniqueId(), uniqueId()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
        const first = { userId, deviceId: uniqueId(), atMs: 1_700_000_000_000 };
        assert.deepStrictEqual(await s.putPendingDeletion({ ...first, tellOffline: [f2!, f1!] }), [f1, f2]);
        assert.deepStrictEqual(await mine([userId], first.atMs), [{ ...first, tellOffline: [f1, f2] }]);
        // The next attempt finds one friendship the first left (or made since), none of those it dropped.
        const again = { userId, deviceId: uniqueId(), atMs: 1_700_000_060_000 };
        assert.deepStrictEqual(await s.putPendingDeletion({ ...again, tellOffline: [f3!, f2!] }), [f1, f2, f3]);
        assert.deepStrictEqual(await mine([userId], again.atMs), [{ ...again, tellOffline: [f1, f2, f3] }]);
        // Recorded again with none: those recorded stay.
        const last = { userId, deviceId: again.deviceId, atMs: 1_700_000_090_000 };
        assert.deepStrictEqual(await s.putPendingDeletion(last), [f1, f2, f3]);
        await s.removePendingDeletion(userId, last.atMs);
        assert.deepStrictEqual(await mine([userId], last.atMs), []);
        // A record made after the removal starts from none.
        assert.deepStrictEqual(await s.putPendingDeletion({ ...first, tellOffline: [] }), []);
        assert.deepStrictEqual(await mine([userId], first.atMs), [first]);
        await s.removePendingDeletion(userId, first.atMs);
      });
    });

    describe("blocks", () => {
      // blockersBetween promises no order.
      const sortedIds = (ids: bigint[]) => [...ids].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));

      it("a block is directed", async () => {
        const [a, b] = [await newUser(), await newUser()];
        await s.putBlock(a.userId, b.userId, 1000);
        assert.deepStrictEqual(await s.blockersBetween(a.userId, b.userId), [a.userId]);
        assert.deepStrictEqual(await s.blockersBetween(b.userId, a.userId), [a.userId]);
        assert.deepStrictEqual(await s.listBlocks(a.userId), [{ userId: b.userId, atMs: 1000 }]);
        assert.deepStrictEqual(await s.listBlocks(b.userId), []);
        assert.deepStrictEqual(await s.listBlockers(b.userId, { limit: 100 }), [a.userId]);
        assert.deepStrictEqual(await s.listBlockers(a.userId, { limit: 100 }), []);
      });

      it("blockersAmong names, of the users asked about, those who blocked the user, by user id", async () => {
        const [a, b, c, d] = [await newUser(), await newUser(), await newUser(), await newUser()];
        await s.putBlock(c.userId, a.userId, 1000);
        await s.putBlock(b.userId, a.userId, 1000);
        await s.putBlock(a.userId, d.userId, 1000);
        assert.deepStrictEqual(await s.blockersAmong(a.userId, [d.userId, c.userId, b.userId, c.userId]), sortedIds([b.userId, c.userId]));
        assert.deepStrictEqual(await s.blockersAmong(a.userId, [d.userId]), []);
        assert.deepStrictEqual(await s.blockersAmong(a.userId, []), []);
        await s.deleteBlock(b.userId, a.userId);
        assert.deepStrictEqual(await s.blockersAmong(a.userId, [b.userId, c.userId]), [c.userId]);
      });

      it("listBlockers reads a page at a time, by user id, and blockersAmong any number asked about", async () => {
        const target = await newUser();
        const blockers: bigint[] = [];
        for (let i = 0; i < 5; i++) {
          const u = await newUser();
          await s.putBlock(u.userId, target.userId, 1000 + i);
          blockers.push(u.userId);
        }
        const all = sortedIds(blockers);
        // Anyone may block a user: a read of them all had no bound.
        assert.deepStrictEqual(await s.listBlockers(target.userId, { limit: 2 }), all.slice(0, 2));
        assert.deepStrictEqual(await s.listBlockers(target.userId, { after: all[1], limit: 2 }), all.slice(2, 4));
        assert.deepStrictEqual(await s.listBlockers(target.userId, { after: all[3], limit: 2 }), all.slice(4));
        assert.deepStrictEqual(await s.listBlockers(target.userId, { after: all[4], limit: 2 }), []);
        assert.deepStrictEqual(await s.listBlockers(target.userId, { limit: 0 }), []);
        // More than one IN read's worth of users asked about (the ids not stored need no row).
        const asked = [...Array.from({ length: 250 }, (_, i) => all[4]! + 1_000_000n + BigInt(i)), ...blockers];
        assert.deepStrictEqual(await s.blockersAmong(target.userId, asked), all);
      });

      it("blocking twice keeps one block and its first time", async () => {
        const [a, b] = [await newUser(), await newUser()];
        await s.putBlock(a.userId, b.userId, 1000);
        await s.putBlock(a.userId, b.userId, 2000);
        assert.deepStrictEqual(await s.listBlocks(a.userId), [{ userId: b.userId, atMs: 1000 }]);
        assert.deepStrictEqual(await s.listBlockers(b.userId, { limit: 100 }), [a.userId]);
      });

      it("blocks both ways between one pair are two blocks", async () => {
        const [a, b] = [await newUser(), await newUser()];
        await s.putBlock(a.userId, b.userId, 1000);
        await s.putBlock(b.userId, a.userId, 2000);
        assert.deepStrictEqual(sortedIds(await s.blockersBetween(a.userId, b.userId)), sortedIds([a.userId, b.userId]));
        assert.deepStrictEqual(sortedIds(await s.blockersBetween(b.userId, a.userId)), sortedIds([a.userId, b.userId]));
        assert.deepStrictEqual(await s.listBlocks(a.userId), [{ userId: b.userId, atMs: 1000 }]);
        assert.deepStrictEqual(await s.listBlocks(b.userId), [{ userId: a.userId, atMs: 2000 }]);
        assert.deepStrictEqual(await s.listBlockers(a.userId, { limit: 100 }), [b.userId]);
        assert.deepStrictEqual(await s.listBlockers(b.userId, { limit: 100 }), [a.userId]);
      });

      it("deleteBlock removes only that direction", async () => {
        const [a, b] = [await newUser(), await newUser()];
        await s.putBlock(a.userId, b.userId, 1000);
        await s.putBlock(b.userId, a.userId, 2000);
        await s.deleteBlock(a.userId, b.userId);
        assert.deepStrictEqual(await s.blockersBetween(a.userId, b.userId), [b.userId]);
        assert.deepStrictEqual(await s.listBlocks(a.userId), []);
        assert.deepStrictEqual(await s.listBlockers(b.userId, { limit: 100 }), []);
        assert.deepStrictEqual(await s.listBlocks(b.userId), [{ userId: a.userId, atMs: 2000 }]);
        assert.deepStrictEqual(await s.listBlockers(a.userId, { limit: 100 }), [b.userId]);
        await s.deleteBlock(a.userId, b.userId); // already gone: nothing to do
      });

      it("blocking again after an unblock is a new block, with the new time", async () => {
        const [a, b] = [await newUser(), await newUser()];
        await s.putBlock(a.userId, b.userId, 1000);
        await s.deleteBlock(a.userId, b.userId);
        await s.putBlock(a.userId, b.userId, 3000);
        assert.deepStrictEqual(await s.listBlocks(a.userId), [{ userId: b.userId, atMs: 3000 }]);
        assert.deepStrictEqual(await s.blockersBetween(a.userId, b.userId), [a.userId]);
      });

      it("listBlocks is newest first, ties by user id; listBlockers lists every blocker by user id", async () => {
        const [a, b, c, d] = [await newUser(), await newUser(), await newUser(), await newUser()];
        await s.putBlock(a.userId, b.userId, 1000);
        await s.putBlock(a.userId, d.userId, 3000);
        await s.putBlock(a.userId, c.userId, 3000);
        const [lo, hi] = sortedIds([c.userId, d.userId]);
        assert.deepStrictEqual(await s.listBlocks(a.userId), [
          { userId: lo, atMs: 3000 },
          { userId: hi, atMs: 3000 },
          { userId: b.userId, atMs: 1000 },
        ]);
        await s.putBlock(d.userId, b.userId, 4000);
        await s.putBlock(c.userId, b.userId, 5000);
        assert.deepStrictEqual(await s.listBlockers(b.userId, { limit: 100 }), sortedIds([a.userId, c.userId, d.userId]));
      });

      it("strangers: no blocks either way", async () => {
        const [a, b] = [await newUser(), await newUser()];
        await s.putBlock(a.userId, (await newUser()).userId, 1000); // a block elsewhere changes nothing here
        assert.deepStrictEqual(await s.blockersBetween(a.userId, b.userId), []);
        assert.deepStrictEqual(await s.listBlocks(b.userId), []);
        assert.deepStrictEqual(await s.listBlockers(b.userId, { limit: 100 }), []);
        assert.deepStrictEqual(await s.listBlocks(uniqueId()), []);
        assert.deepStrictEqual(await s.listBlockers(uniqueId(), { limit: 100 }), []);
      });
    });
  });
}
