import assert from "node:assert/strict";
import { Code, type ConnectError } from "@connectrpc/connect";
import { Registry } from "prom-client";
import { DevicePlatform, MemberRole, PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import { hashRefreshToken, REFRESH_REUSE_GRACE_MS } from "../auth/refresh.js";
import type { AccountStore } from "../accounts/store.js";
import { CloseCode } from "../model/close-codes.js";
import { DELETION_UNBLOCKS_IN_FLIGHT } from "./auth-service.js";
import { DeviceGate } from "./device-gate.js";
import { apiMetrics } from "./metrics.js";
import { holdNext, rpcError, TestApi, UnreachableSessions } from "./testkit.js";

async function authEvents(registry: Registry): Promise<Record<string, number>> {
  const metric = await registry.getSingleMetric("chat_auth_events_total")!.get();
  // The events that happened: every event's series is there from the start, at 0.
  return Object.fromEntries(metric.values.filter((v) => v.value > 0).map((v) => [String(v.labels.event), v.value]));
}

describe("api: AuthService", () => {
  let api: TestApi;
  beforeEach(async () => (api = await TestApi.start()));
  afterEach(async () => api.close());

  it("signs up, logs in with the name in any case, and answers GetMe", async () => {
    const signUp = await api.anon.auth.signUp({
      username: "Alice.B",
      password: "hunter2hunter2",
      displayName: " Alice ",
      device: { name: "laptop", platform: DevicePlatform.DESKTOP },
    });
    assert.equal(signUp.user?.username, "Alice.B");
    assert.equal(signUp.user?.displayName, "Alice");
    const creds = signUp.credentials!;
    assert.ok(creds.accessToken && creds.refreshToken);
    assert.equal(Number(creds.accessTokenExpiresAt!.seconds) * 1000, api.clock.ms + 15 * 60_000);

    const login = await api.anon.auth.login({ username: "alice.b", password: "hunter2hunter2" });
    assert.equal(login.credentials?.userId, creds.userId);
    assert.notEqual(login.credentials?.deviceId, creds.deviceId, "every login is a new device");

    const me = await api.clients(login.credentials!.accessToken).users.getMe({});
    assert.equal(me.user?.userId, creds.userId);

    const devices = await api.clients(creds.accessToken).auth.listDevices({});
    assert.equal(devices.devices.length, 2);
    const current = devices.devices.find((d) => d.current)!;
    assert.equal(current.deviceId, creds.deviceId);
    assert.equal(current.name, "laptop");
    assert.equal(current.platform, DevicePlatform.DESKTOP);

    // Typed in an East Asian keyboard's wide mode, as SearchUsers takes it: NFKC makes it ASCII.
    const wide = await api.anon.auth.login({ username: "ＡＬＩＣＥ．ｂ", password: "hunter2hunter2" });
    assert.equal(wide.credentials?.userId, creds.userId);
  });

  it("refuses a wrong password and an unknown user alike", async () => {
    await api.signUp("bob", "right password");
    for (const [username, password] of [["bob", "wrong password"], ["nobody", "right password"]]) {
      const err = await rpcError(() => api.anon.auth.login({ username, password }));
      assert.equal(err.code, Code.Unauthenticated);
      assert.match(err.rawMessage, /wrong username or password/);
      assert.equal(err.chatCode, "ERROR_CODE_UNAUTHENTICATED");
    }
  });

  it("refuses a duplicate username, case-insensitively", async () => {
    await api.signUp("carol");
    const err = await rpcError(() => api.anon.auth.signUp({ username: "CAROL", password: "whatever123" }));
    assert.equal(err.code, Code.AlreadyExists);
    assert.equal(err.chatCode, "ERROR_CODE_ALREADY_EXISTS");
    assert.equal(err.rawMessage, "username is taken");
  });

  it("refuses the loser of two sign-ups of one name at once as the name taken, whatever the store says", async () => {
    const results = await Promise.allSettled(["Dana", "dana"].map((username) => api.anon.auth.signUp({ username, password: "whatever123" })));
    const refused = results.flatMap((r) => (r.status === "rejected" ? [r.reason as ConnectError] : []));
    assert.equal(refused.length, 1);
    assert.deepEqual([refused[0]!.code, refused[0]!.rawMessage], [Code.AlreadyExists, "username is taken"]);
  });

  it("validates sign-up fields with clear messages", async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ username: "ab", password: "longenough" }, /username must be 3 to 32/],
      [{ username: "has space", password: "longenough" }, /username/],
      [{ username: "x".repeat(33), password: "longenough" }, /username/],
      [{ username: "dave", password: "short" }, /at least 8/],
      [{ username: "dave", password: "x".repeat(1025) }, /at most 1024/],
      [{ username: "dave", password: "longenough", displayName: "x".repeat(65) }, /display_name must be 1 to 64/],
    ];
    for (const [req, message] of cases) {
      const err = await rpcError(() => api.anon.auth.signUp(req));
      assert.equal(err.code, Code.InvalidArgument, JSON.stringify(req));
      assert.match(err.rawMessage, message);
      assert.equal(err.chatCode, "ERROR_CODE_INVALID_ARGUMENT");
    }
  });

  it("counts a password's characters as code points, as the contract's other lengths are", async () => {
    // Four emoji are eight UTF-16 units but four characters.
    const short = await rpcError(() => api.anon.auth.signUp({ username: "emma", password: "🔑🔑🔑🔑" }));
    assert.deepEqual([short.code, short.rawMessage], [Code.InvalidArgument, "password must be at least 8 characters"]);
    // 1,000 emoji are 2,000 units but within the 1,024 characters: signing up, logging in, changing and deleting all take it.
    const long = "🔑".repeat(1_000);
    const u = (await api.anon.auth.signUp({ username: "emma", password: long })).credentials!;
    const again = (await api.anon.auth.login({ username: "emma", password: long })).credentials!;
    assert.equal(again.userId, u.userId);
    const me = api.clients(again.accessToken);
    await me.auth.changePassword({ currentPassword: long, newPassword: "🗝".repeat(1_024), keepOtherDevices: true });
    const tooLong = await rpcError(() => me.auth.changePassword({ currentPassword: "🗝".repeat(1_024), newPassword: "🗝".repeat(1_025) }));
    assert.deepEqual([tooLong.code, tooLong.rawMessage], [Code.InvalidArgument, "password must be at most 1024 characters"]);
    await me.auth.deleteAccount({ password: "🗝".repeat(1_024) });
  });

  it("refuses a bad device name before making the account, so that a corrected retry signs up", async () => {
    const err = await rpcError(() => api.anon.auth.signUp({ username: "dora", password: "longenough", device: { name: "x".repeat(65) } }));
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, /device.name/);
    const retry = await api.anon.auth.signUp({ username: "dora", password: "longenough", device: { name: "phone" } });
    assert.equal(retry.user?.username, "dora");
  });

  it("rotates refresh tokens: the old one is refused after use", async () => {
    const u = await api.signUp();
    const first = await api.anon.auth.refresh({ refreshToken: u.refreshToken });
    const creds = first.credentials!;
    assert.equal(creds.userId, u.userId);
    assert.equal(creds.deviceId, u.deviceId);
    assert.notEqual(creds.refreshToken, u.refreshToken);
    await api.clients(creds.accessToken).users.getMe({});

    const second = await api.anon.auth.refresh({ refreshToken: creds.refreshToken }); // the new one works once
    assert.equal(second.credentials?.deviceId, u.deviceId);
  });

  it("signs a device out when one of its refresh tokens is used twice: one holder is a thief", async () => {
    const registry = new Registry();
    await api.close();
    api = await TestApi.start({ metrics: apiMetrics(registry) });
    const u = await api.signUp();
    const other = await api.anon.auth.login({ username: "user1", password: "correct horse" });
    const owner = (await api.anon.auth.refresh({ refreshToken: u.refreshToken })).credentials!;

    api.clock.ms += REFRESH_REUSE_GRACE_MS + 1; // too late to be a retry after a lost reply
    const stolen = await rpcError(() => api.anon.auth.refresh({ refreshToken: u.refreshToken }));
    assert.equal(stolen.code, Code.Unauthenticated);
    assert.match(stolen.rawMessage, /already used: the device is signed out/);
    assert.deepEqual(api.sessions.closed.map((c) => [c.userId, c.deviceId, c.code]), [[u.userId, u.deviceId, CloseCode.loggedOut]]);
    assert.match(api.sessions.closed[0]!.reason, /refresh token was used twice/);

    // The successor the owner (or the thief) got is dead too, refused as its device's (no second alarm); the account's other device is not.
    assert.match((await rpcError(() => api.anon.auth.refresh({ refreshToken: owner.refreshToken }))).rawMessage, /^device was signed out/);
    const devices = await api.clients(other.credentials!.accessToken).auth.listDevices({});
    assert.deepEqual(devices.devices.map((d) => d.deviceId), [other.credentials!.deviceId]);
    await api.anon.auth.refresh({ refreshToken: other.credentials!.refreshToken });
    assert.deepEqual(await authEvents(registry), { refresh_reused: 1 });
  });

  it("answers a refresh retried with the same token after a lost reply, and keeps the device signed in", async () => {
    const registry = new Registry();
    await api.close();
    api = await TestApi.start({ metrics: apiMetrics(registry) });
    const u = await api.signUp();
    await api.anon.auth.refresh({ refreshToken: u.refreshToken }); // the network drops its reply
    api.clock.ms += 10_000;
    const retry = (await api.anon.auth.refresh({ refreshToken: u.refreshToken })).credentials!;
    assert.deepEqual([retry.userId, retry.deviceId], [u.userId, u.deviceId]);
    await api.clients(retry.accessToken).users.getMe({});
    assert.equal((await api.storage.accounts.getDevice(u.userId, u.deviceId))?.revoked, false);
    assert.deepEqual(api.sessions.closed, []);
    assert.deepEqual(await authEvents(registry), {});
    await api.anon.auth.refresh({ refreshToken: retry.refreshToken });
  });

  it("answers a refresh retried after the first failed past its take (a store timeout), and keeps the device signed in", async () => {
    const u = await api.signUp();
    // The device's read, between the take of the token and the answer.
    const accounts = api.storage.accounts as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const getDevice = accounts.getDevice!;
    accounts.getDevice = async () => {
      accounts.getDevice = getDevice;
      throw new Error("store timed out");
    };
    await assert.rejects(api.anon.auth.refresh({ refreshToken: u.refreshToken }));
    api.clock.ms += 1_000;
    const retry = (await api.anon.auth.refresh({ refreshToken: u.refreshToken })).credentials!;
    await api.clients(retry.accessToken).users.getMe({});
    assert.equal((await api.storage.accounts.getDevice(u.userId, u.deviceId))?.revoked, false);
    assert.deepEqual(api.sessions.closed, []);
    await api.anon.auth.refresh({ refreshToken: retry.refreshToken });
  });

  it("with refreshReuseGraceMs 0, a token presented again at once signs the device out", async () => {
    await api.close();
    api = await TestApi.start({ refreshReuseGraceMs: 0 });
    const u = await api.signUp();
    await api.anon.auth.refresh({ refreshToken: u.refreshToken });
    api.clock.ms += 1;
    assert.match((await rpcError(() => api.anon.auth.refresh({ refreshToken: u.refreshToken }))).rawMessage, /already used: the device is signed out/);
    assert.equal((await api.storage.accounts.getDevice(u.userId, u.deviceId))?.revoked, true);
  });

  it("forgets a used refresh token once it would have expired", async () => {
    const u = await api.signUp();
    await api.anon.auth.refresh({ refreshToken: u.refreshToken });
    api.clock.ms += 31 * 24 * 3_600_000;
    const err = await rpcError(() => api.anon.auth.refresh({ refreshToken: u.refreshToken }));
    assert.match(err.rawMessage, /unknown or already used/);
    assert.equal(api.sessions.closed.length, 0, "an expired token proves nothing: no sign-out");
  });

  it("keeps at most maxDevicesPerAccount devices: a login past it signs out the least recently seen", async () => {
    const registry = new Registry();
    await api.close();
    api = await TestApi.start({ maxDevicesPerAccount: 3, metrics: apiMetrics(registry) });
    const first = await api.signUp("dana", "correct horse");
    const login = async () => {
      api.clock.ms += 1_000;
      return (await api.anon.auth.login({ username: "dana", password: "correct horse" })).credentials!;
    };
    const second = await login();
    const third = await login();
    // The first device refreshes: now it is the second that was seen least recently.
    api.clock.ms += 1_000;
    const firstAgain = (await api.anon.auth.refresh({ refreshToken: first.refreshToken })).credentials!;
    const fourth = await login();

    assert.deepEqual(api.sessions.closed.map((c) => [c.deviceId, c.code]), [[second.deviceId, CloseCode.loggedOut]]);
    assert.match(api.sessions.closed[0]!.reason, /more than 3 devices/);
    const devices = await api.clients(fourth.accessToken).auth.listDevices({});
    assert.deepEqual(devices.devices.map((d) => d.deviceId).sort(), [first.deviceId, third.deviceId, fourth.deviceId].sort());
    assert.equal((await rpcError(() => api.anon.auth.refresh({ refreshToken: second.refreshToken }))).code, Code.Unauthenticated);
    await api.anon.auth.refresh({ refreshToken: firstAgain.refreshToken });
    assert.deepEqual(await authEvents(registry), { device_pruned: 1 });
  });

  it("forgets, at a later login, a device signed out so long ago that none of its access tokens is still valid", async () => {
    const first = await api.signUp("erin", "correct horse");
    const login = async () => (await api.anon.auth.login({ username: "erin", password: "correct horse" })).credentials!;
    const gone = await login();
    await api.storage.inbox.advanceCursor(gone.userId, gone.deviceId, 3n);
    await api.clients(gone.accessToken).auth.logout({});
    const { accounts, inbox } = api.storage;

    // Its last token expires 15 min after it was issued; the clocks of other api processes may be minutes apart.
    api.clock.ms += 15 * 60_000 + 60_000;
    await login();
    assert.equal((await accounts.getDevice(gone.userId, gone.deviceId))?.revoked, true, "forgotten while a token might still be valid");

    api.clock.ms += 5 * 60_000;
    await login();
    assert.equal(await accounts.getDevice(gone.userId, gone.deviceId), undefined);
    assert.equal(await inbox.getCursor(gone.userId, gone.deviceId), 0n);
    assert.equal((await accounts.listDevices(first.userId)).length, 3, "the devices still signed in are all kept, however long unseen");
  });

  it("shuts a signed-out device's access token out: at once after a logout here, within 10 s of one elsewhere", async () => {
    const u = await api.signUp();
    const other = await api.signUp();
    await u.c.users.getMe({});
    await u.c.auth.logout({});
    const err = await rpcError(() => u.c.users.getMe({}));
    assert.equal(err.code, Code.Unauthenticated);
    assert.match(err.rawMessage, /this device is signed out/);

    // Another api process signs `other` out: this one trusted the device a moment ago.
    await other.c.users.getMe({});
    await api.storage.accounts.revokeDevice(other.userId, other.deviceId);
    await other.c.users.getMe({});
    api.clock.ms += 10_000;
    assert.equal((await rpcError(() => other.c.users.getMe({}))).code, Code.Unauthenticated);
  });

  it("reads the store once for a signed-out device's token, however often it calls", async () => {
    const u = await api.signUp();
    await api.storage.accounts.revokeDevice(u.userId, u.deviceId);
    const accounts = api.storage.accounts;
    const getDevice = accounts.getDevice.bind(accounts);
    let reads = 0;
    accounts.getDevice = async (userId, deviceId) => {
      if (deviceId === u.deviceId) reads++;
      return getDevice(userId, deviceId);
    };
    try {
      for (let i = 0; i < 5; i++) assert.equal((await rpcError(() => u.c.users.getMe({}))).code, Code.Unauthenticated);
    } finally {
      accounts.getDevice = getDevice;
    }
    assert.equal(reads, 1);
  });

  it("refuses an expired refresh token", async () => {
    const u = await api.signUp();
    api.clock.ms += 31 * 24 * 3_600_000;
    const err = await rpcError(() => api.anon.auth.refresh({ refreshToken: u.refreshToken }));
    assert.equal(err.code, Code.Unauthenticated);
    assert.match(err.rawMessage, /expired/);
  });

  it("says when an access token has expired, and when it is missing or forged", async () => {
    const u = await api.signUp();
    api.clock.ms += 15 * 60_000 + 1;
    const expired = await rpcError(() => u.c.users.getMe({}));
    assert.equal(expired.code, Code.Unauthenticated);
    assert.match(expired.rawMessage, /expired/);
    assert.equal(expired.chatCode, "ERROR_CODE_TOKEN_EXPIRED");

    const missing = await rpcError(() => api.anon.users.getMe({}));
    assert.equal(missing.code, Code.Unauthenticated);
    assert.match(missing.rawMessage, /authorization/);

    const [body, sig] = u.accessToken.split(".");
    const forged = await rpcError(() => api.clients(`${body}x.${sig}`).users.getMe({}));
    assert.equal(forged.code, Code.Unauthenticated);
    assert.equal(forged.chatCode, "ERROR_CODE_UNAUTHENTICATED");
  });

  it("logout revokes the device's refresh token and closes its sessions", async () => {
    const u = await api.signUp();
    await u.c.auth.logout({});
    assert.deepEqual(api.sessions.closed, [
      { userId: u.userId, deviceId: u.deviceId, code: CloseCode.loggedOut, reason: "logged out" },
    ]);
    const err = await rpcError(() => api.anon.auth.refresh({ refreshToken: u.refreshToken }));
    assert.equal(err.code, Code.Unauthenticated);
  });

  it("revokes another device of the same account only", async () => {
    const a = await api.signUp("erin", "password123");
    const other = (await api.anon.auth.login({ username: "erin", password: "password123" })).credentials!;
    const stranger = await api.signUp();

    const notMine = await rpcError(() => stranger.c.auth.revokeDevice({ deviceId: other.deviceId }));
    assert.equal(notMine.code, Code.NotFound);

    await a.c.auth.revokeDevice({ deviceId: other.deviceId });
    assert.deepEqual(api.sessions.closed.map((c) => [c.deviceId, c.code]), [[other.deviceId, CloseCode.loggedOut]]);
    assert.equal((await a.c.auth.listDevices({})).devices.length, 1);
    assert.equal((await rpcError(() => api.anon.auth.refresh({ refreshToken: other.refreshToken }))).code, Code.Unauthenticated);
    assert.equal((await rpcError(() => a.c.auth.revokeDevice({ deviceId: 0n }))).code, Code.InvalidArgument);
  });

  describe("with the routing table away, closing sessions fails but the sign-outs stand", () => {
    let sessions: UnreachableSessions;
    beforeEach(async () => {
      await api.close();
      sessions = new UnreachableSessions();
      api = await TestApi.start({ sessions, maxDevicesPerAccount: 3 });
    });
    const signedIn = async (name: string) => (await api.storage.accounts.listDevices((await api.storage.accounts.findUserByUsername(name))!.userId)).filter((d) => !d.revoked).map((d) => d.deviceId).sort();

    it("answers Logout and RevokeDevice, and the devices are signed out", async () => {
      const me = await api.signUp("gwen", "password123");
      const phone = (await api.anon.auth.login({ username: "gwen", password: "password123" })).credentials!;
      await me.c.auth.revokeDevice({ deviceId: phone.deviceId });
      assert.equal((await rpcError(() => api.anon.auth.refresh({ refreshToken: phone.refreshToken }))).code, Code.Unauthenticated);
      await me.c.auth.logout({});
      assert.equal((await rpcError(() => api.anon.auth.refresh({ refreshToken: me.refreshToken }))).code, Code.Unauthenticated);
      assert.deepEqual(await signedIn("gwen"), []);
      assert.equal(sessions.calls, 2, "each tried to close the device's sessions");
    });

    it("answers ChangePassword with every other device signed out", async () => {
      const me = await api.signUp("hugo", "old password");
      for (let i = 0; i < 2; i++) await api.anon.auth.login({ username: "hugo", password: "old password" });
      const res = await me.c.auth.changePassword({ currentPassword: "old password", newPassword: "new password" });
      assert.equal(res.devicesSignedOut, 2);
      assert.deepEqual(await signedIn("hugo"), [me.deviceId]);
    });

    it("lets a login past the device limit in, signing out only the device seen least recently", async () => {
      const first = await api.signUp("iris", "correct horse");
      const login = async () => {
        api.clock.ms += 1_000;
        return (await api.anon.auth.login({ username: "iris", password: "correct horse" })).credentials!;
      };
      const second = await login();
      const third = await login();
      const fourth = await login();
      assert.deepEqual(await signedIn("iris"), [second.deviceId, third.deviceId, fourth.deviceId].sort());
      assert.equal((await rpcError(() => api.anon.auth.refresh({ refreshToken: first.refreshToken }))).code, Code.Unauthenticated);
    });
  });

  describe("changing the password", () => {
    it("takes the new password, refuses the old one, and signs out every other device unless asked to keep them", async () => {
      const me = await api.signUp("frank", "old password");
      const phone = (await api.anon.auth.login({ username: "frank", password: "old password" })).credentials!;
      const tablet = (await api.anon.auth.login({ username: "frank", password: "old password" })).credentials!;
      const res = await me.c.auth.changePassword({ currentPassword: "old password", newPassword: "new password" });
      assert.equal(res.devicesSignedOut, 2);
      assert.deepEqual(
        api.sessions.closed.map((c) => [c.deviceId, c.code, c.reason]).sort(),
        [phone.deviceId, tablet.deviceId].map((d) => [d, CloseCode.loggedOut, "signed out: the account's password was changed"]).sort(),
      );
      assert.equal((await rpcError(() => api.anon.auth.refresh({ refreshToken: phone.refreshToken }))).code, Code.Unauthenticated);
      assert.ok((await api.anon.auth.refresh({ refreshToken: me.refreshToken })).credentials, "the caller's device stays signed in");
      assert.equal((await rpcError(() => api.anon.auth.login({ username: "frank", password: "old password" }))).code, Code.Unauthenticated);
      const again = (await api.anon.auth.login({ username: "frank", password: "new password" })).credentials!;

      api.sessions.closed = [];
      const kept = await api.clients(again.accessToken).auth.changePassword({ currentPassword: "new password", newPassword: "newer password", keepOtherDevices: true });
      assert.equal(kept.devicesSignedOut, 0);
      assert.deepEqual(api.sessions.closed, []);
      assert.equal((await me.c.auth.listDevices({})).devices.length, 2);
    });

    it("undoes a login that checked the old password while the password was changed", async () => {
      const me = await api.signUp("hana", "old password");
      const held = holdNext(api.storage.accounts, "createDevice");
      const login = rpcError(() => api.anon.auth.login({ username: "hana", password: "old password" }));
      await held.reached;
      const res = await me.c.auth.changePassword({ currentPassword: "old password", newPassword: "new password" });
      held.release();
      assert.equal((await login).code, Code.Unauthenticated);
      assert.equal(res.devicesSignedOut, 0);
      assert.deepEqual((await me.c.auth.listDevices({})).devices.map((d) => d.deviceId), [me.deviceId]);
    });

    it("keeps a device signed in with the new password while the other devices were being signed out", async () => {
      const me = await api.signUp("olga", "old password");
      const phone = (await api.anon.auth.login({ username: "olga", password: "old password" })).credentials!;
      // A login that checked the old password, its device made only once the devices were listed.
      const making = holdNext(api.storage.accounts, "createDevice");
      const stale = rpcError(() => api.anon.auth.login({ username: "olga", password: "old password" }));
      await making.reached;
      // The phone's sessions closing: a chat server slow to answer holds the sign-out this long.
      const held = holdNext(api.sessions, "closeDevice");
      const change = me.c.auth.changePassword({ currentPassword: "old password", newPassword: "new password" });
      await held.reached;
      making.release();
      assert.equal((await stale).code, Code.Unauthenticated, "the old password's login undoes itself");
      const laptop = (await api.anon.auth.login({ username: "olga", password: "new password" })).credentials!;
      held.release();
      assert.equal((await change).devicesSignedOut, 1);
      assert.deepEqual(api.sessions.closed.map((c) => c.deviceId), [phone.deviceId]);
      assert.deepEqual((await me.c.auth.listDevices({})).devices.map((d) => d.deviceId).sort(), [me.deviceId, laptop.deviceId].sort());
      assert.ok((await api.anon.auth.refresh({ refreshToken: laptop.refreshToken })).credentials, "the new password's device stays signed in");
    });

    it("refuses a wrong current password and a new one too short, with clear messages, changing nothing", async () => {
      const me = await api.signUp("gina", "right password");
      const wrong = await rpcError(() => me.c.auth.changePassword({ currentPassword: "wrong password", newPassword: "new password" }));
      assert.deepEqual([wrong.code, wrong.rawMessage], [Code.PermissionDenied, "current_password is wrong"]);
      const short = await rpcError(() => me.c.auth.changePassword({ currentPassword: "right password", newPassword: "short" }));
      assert.deepEqual([short.code, short.rawMessage], [Code.InvalidArgument, "password must be at least 8 characters"]);
      assert.equal((await rpcError(() => api.anon.auth.changePassword({ currentPassword: "right password", newPassword: "new password" }))).code, Code.Unauthenticated);
      await api.anon.auth.login({ username: "gina", password: "right password" });
    });
  });

  describe("deleting the account", () => {
    it("signs out a device that a login made while the account's devices were being signed out", async () => {
      const me = await api.signUp("jon", "my password");
      const held = holdNext(api.sessions, "closeDevice");
      const deletion = me.c.auth.deleteAccount({ password: "my password" });
      await held.reached;
      const ghost = (await api.anon.auth.login({ username: "jon", password: "my password" })).credentials!;
      held.release();
      await deletion;
      assert.equal((await rpcError(() => api.clients(ghost.accessToken).users.getMe({}))).code, Code.Unauthenticated);
      assert.equal((await rpcError(() => api.anon.auth.refresh({ refreshToken: ghost.refreshToken }))).code, Code.Unauthenticated);
      assert.ok(api.sessions.closed.some((c) => c.deviceId === ghost.deviceId));
    });

    it("signs out every device before any of their sessions is closed, and closes them side by side", async () => {
      const me = await api.signUp("pia", "my password");
      const phone = (await api.anon.auth.login({ username: "pia", password: "my password" })).credentials!;
      const tablet = (await api.anon.auth.login({ username: "pia", password: "my password" })).credentials!;
      // The first device's sessions closing: a chat server slow to answer (up to 2 s) holds it this long.
      const held = holdNext(api.sessions, "closeDevice");
      const deletion = me.c.auth.deleteAccount({ password: "my password" });
      await held.reached;
      const devices = await api.storage.accounts.listDevices(me.userId);
      assert.deepEqual(devices.filter((d) => !d.revoked).map((d) => d.deviceId), [], "none left signed in, sending and refreshing, behind a slow close");
      assert.equal(api.sessions.closed.length, 2, "the other devices' sessions are not held up behind it");
      held.release();
      await deletion;
      assert.deepEqual(api.sessions.closed.map((c) => c.deviceId).sort(), [me.deviceId, phone.deviceId, tablet.deviceId].sort());
    });

    it("closes the sessions of the devices it signed out before a sign-out failed", async () => {
      const me = await api.signUp("quin", "my password");
      await api.anon.auth.login({ username: "quin", password: "my password" });
      const accounts = api.deps.accounts as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
      const revokeDevice = accounts.revokeDevice!;
      let calls = 0;
      accounts.revokeDevice = async (...args) => {
        if (++calls === 2) throw new Error("store timed out");
        return revokeDevice.apply(api.deps.accounts, args);
      };
      try {
        await rpcError(() => me.c.auth.deleteAccount({ password: "my password" }));
      } finally {
        accounts.revokeDevice = revokeDevice;
      }
      const revoked = (await api.storage.accounts.listDevices(me.userId)).filter((d) => d.revoked).map((d) => d.deviceId);
      assert.equal(revoked.length, 1);
      assert.deepEqual(api.sessions.closed.map((c) => c.deviceId), revoked, "no device left signed out with its sessions open");
    });

    it("leaves a group it was added to while its deletion was under way", async () => {
      const me = await api.signUp("max", "my password");
      const admin = await api.signUp("ada");
      const group = (await admin.c.channels.createGroup({ title: "Trip", memberUserIds: [] })).channel!;
      const held = holdNext(api.storage.accounts, "deleteUser");
      const deletion = me.c.auth.deleteAccount({ password: "my password" });
      await held.reached;
      await admin.c.channels.addMembers({ channelId: group.channelId, userIds: [me.userId] });
      held.release();
      await deletion;
      const members = (await admin.c.channels.listMembers({ channelId: group.channelId })).members.map((m) => m.userId);
      assert.deepEqual(members, [admin.userId], "no seat kept by a deleted account");
    });

    it("takes out again an account added to a group after checking it, when its deletion ran meanwhile", async () => {
      const me = await api.signUp("mia", "my password");
      const admin = await api.signUp("abe");
      const group = (await admin.c.channels.createGroup({ title: "Trip", memberUserIds: [] })).channel!;
      const held = holdNext(api.storage.channels, "addMembers");
      const add = admin.c.channels.addMembers({ channelId: group.channelId, userIds: [me.userId] });
      await held.reached;
      await me.c.auth.deleteAccount({ password: "my password" });
      held.release();
      await add;
      const members = (await admin.c.channels.listMembers({ channelId: group.channelId })).members.map((m) => m.userId);
      assert.deepEqual(members, [admin.userId], "no seat kept by a deleted account");
    });

    it("undoes a login that read the account before it was deleted", async () => {
      const me = await api.signUp("kim", "my password");
      const held = holdNext(api.storage.accounts, "createDevice");
      const login = rpcError(() => api.anon.auth.login({ username: "kim", password: "my password" }));
      await held.reached;
      await me.c.auth.deleteAccount({ password: "my password" });
      held.release();
      assert.equal((await login).code, Code.Unauthenticated);
      assert.ok((await api.storage.accounts.listDevices(me.userId)).every((d) => d.revoked));
    });

    it("tells its friends and direct-chat peers itself that it is offline, not only its devices' sign-out", async () => {
      // The sign-out's presence announcement reads its audience later, maybe after the friendships are
      // gone: a friend it missed would see the deleted account online for good.
      const me = await api.signUp("una", "my password");
      const [friend, peer, stranger] = [await api.signUp(), await api.signUp(), await api.signUp()];
      await me.c.users.sendFriendRequest({ userId: friend.userId });
      await friend.c.users.respondFriendRequest({ userId: me.userId, accept: true });
      await peer.c.channels.openDirect({ userId: me.userId });
      api.sessions.pushes.length = 0;
      await me.c.auth.deleteAccount({ password: "my password" });
      const told = api.sessions
        .framesOf("presence")
        .filter((p) => p.frame.kind.case === "presence" && p.frame.kind.value.presence?.userId === me.userId && p.frame.kind.value.presence.status === PresenceStatus.OFFLINE)
        .flatMap((p) => p.userIds);
      assert.deepEqual(new Set(told), new Set([friend.userId, peer.userId]));
      assert.ok(!told.includes(stranger.userId));
    });

    it("tells a call with a device's access token still valid that the account was deleted: here, and on another api process", async () => {
      const me = await api.signUp("noor", "my password");
      const phone = (await api.anon.auth.login({ username: "noor", password: "my password" })).credentials!;
      await me.c.users.getMe({});
      await me.c.auth.deleteAccount({ password: "my password" });
      for (const c of [me.c, api.clients(phone.accessToken)]) {
        const err = await rpcError(() => c.users.getMe({}));
        assert.deepEqual([err.code, err.rawMessage], [Code.Unauthenticated, "signed out: the account was deleted"]);
      }
      // Another process's gate reads the store: the device signed out, and its account deleted.
      await assert.rejects(new DeviceGate(api.storage.accounts).check(me.userId, me.deviceId), /^ChatError: signed out: the account was deleted$/);
    });

    it("tells GetMe, UpdateProfile, ChangePassword and DeleteAccount the account was deleted when this process's gate still trusts the device", async () => {
      const me = await api.signUp("omar", "my password");
      await me.c.users.getMe({});
      // Deleted through another api process: this one's gate trusts the device it just saw for up to 10 s.
      await api.storage.accounts.revokeDevice(me.userId, me.deviceId);
      await api.storage.accounts.deleteUser(me.userId);
      const calls = [
        () => me.c.users.getMe({}),
        () => me.c.users.updateProfile({ displayName: "Omar" }),
        () => me.c.auth.changePassword({ currentPassword: "my password", newPassword: "new password" }),
        () => me.c.auth.deleteAccount({ password: "my password" }),
      ];
      for (const call of calls) {
        const err = await rpcError(call);
        assert.deepEqual([err.code, err.rawMessage], [Code.Unauthenticated, "signed out: the account was deleted"]);
      }
    });

    it("refuses Refresh, and signs out, a device of a deleted account left signed in", async () => {
      const me = await api.signUp("lea", "my password");
      await me.c.auth.deleteAccount({ password: "my password" });
      // As a deletion cut short after marking the account deleted would leave it.
      const deviceId = 424242n;
      await api.storage.accounts.createDevice({ userId: me.userId, deviceId, name: "left", platform: "web", createdAtMs: api.clock.ms, lastSeenAtMs: api.clock.ms, revoked: false });
      const token = "left-behind-refresh-token";
      await api.storage.accounts.putRefreshToken(hashRefreshToken(token), { userId: me.userId, deviceId, expiresAtMs: api.clock.ms + 60_000 });
      assert.equal((await rpcError(() => api.anon.auth.refresh({ refreshToken: token }))).code, Code.Unauthenticated);
      assert.equal((await api.storage.accounts.getDevice(me.userId, deviceId))?.revoked, true);
    });

    it("unblocks side by side, at most DELETION_UNBLOCKS_IN_FLIGHT at once, all before it blocks its direct-chat peers", async () => {
      const me = await api.signUp("una", "my password");
      const dmPeer = await api.signUp();
      await me.c.channels.openDirect({ userId: dmPeer.userId });
      for (let i = 0; i < 2 * DELETION_UNBLOCKS_IN_FLIGHT; i++) {
        const other = await api.signUp();
        await me.c.users.blockUser({ userId: other.userId });
        await other.c.users.blockUser({ userId: me.userId });
      }
      const accounts = api.deps.accounts as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
      const [deleteBlock, putBlock] = [accounts.deleteBlock!, accounts.putBlock!];
      let [inFlight, most, unblocks] = [0, 0, 0];
      const blockedWhileUnblocking: unknown[] = [];
      accounts.deleteBlock = async (...args) => {
        inFlight++;
        most = Math.max(most, inFlight);
        unblocks++;
        try {
          // A turn of the loop for the others to start, as a store round trip would give.
          await new Promise((resolve) => setImmediate(resolve));
          return await deleteBlock.apply(api.deps.accounts, args);
        } finally {
          inFlight--;
        }
      };
      accounts.putBlock = async (...args) => {
        if (inFlight > 0) blockedWhileUnblocking.push(args[1]);
        return putBlock.apply(api.deps.accounts, args);
      };
      try {
        await me.c.auth.deleteAccount({ password: "my password" });
      } finally {
        Object.assign(accounts, { deleteBlock, putBlock });
      }
      assert.equal(unblocks, 4 * DELETION_UNBLOCKS_IN_FLIGHT);
      assert.equal(most, DELETION_UNBLOCKS_IN_FLIGHT);
      assert.deepEqual(blockedWhileUnblocking, []);
      assert.deepEqual(await api.storage.accounts.listBlocks(me.userId).then((b) => b.map((x) => x.userId)), [dmPeer.userId], "the peer's block stays");
    });

    it("blocks its direct-chat peers side by side, at most DELETION_UNBLOCKS_IN_FLIGHT at once", async () => {
      const me = await api.signUp("vera", "my password");
      const peers: bigint[] = [];
      for (let i = 0; i < 2 * DELETION_UNBLOCKS_IN_FLIGHT; i++) {
        const peer = await api.signUp();
        await me.c.channels.openDirect({ userId: peer.userId });
        peers.push(peer.userId);
      }
      const accounts = api.deps.accounts as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
      const putBlock = accounts.putBlock!;
      let [inFlight, most] = [0, 0];
      accounts.putBlock = async (...args) => {
        inFlight++;
        most = Math.max(most, inFlight);
        try {
          // A turn of the loop for the others to start, as a store round trip (on Cassandra three Paxos rounds) would give.
          await new Promise((resolve) => setImmediate(resolve));
          return await putBlock.apply(api.deps.accounts, args);
        } finally {
          inFlight--;
        }
      };
      try {
        await me.c.auth.deleteAccount({ password: "my password" });
      } finally {
        accounts.putBlock = putBlock;
      }
      assert.equal(most, DELETION_UNBLOCKS_IN_FLIGHT);
      const blocked = (await api.storage.accounts.listBlocks(me.userId)).map((b) => b.userId);
      assert.deepEqual(blocked.sort(), [...peers].sort(), "every peer's sends are refused, told the account is gone");
    });

    it("signs out every device, leaves groups, drops friends and blocks, releases the name, and keeps the messages sent", async () => {
      const me = await api.signUp("ivan", "my password");
      const phone = (await api.anon.auth.login({ username: "ivan", password: "my password" })).credentials!;
      const [friend, peer, member] = [await api.signUp(), await api.signUp(), await api.signUp()];
      await me.c.users.sendFriendRequest({ userId: friend.userId });
      await friend.c.users.respondFriendRequest({ userId: me.userId, accept: true });
      await me.c.users.sendFriendRequest({ userId: member.userId });
      await me.c.users.blockUser({ userId: peer.userId });
      await me.c.users.unblockUser({ userId: peer.userId });
      await peer.c.users.blockUser({ userId: me.userId });
      const dm = (await me.c.channels.openDirect({ userId: friend.userId })).channel!.channelId;
      await me.c.messages.sendMessage({ channelId: dm, clientMsgId: "last words", text: "bye for now" });
      const group = (await me.c.channels.createGroup({ title: "mine", memberUserIds: [member.userId] })).channel!.channelId;

      const wrong = await rpcError(() => me.c.auth.deleteAccount({ password: "not my password" }));
      assert.deepEqual([wrong.code, wrong.rawMessage], [Code.PermissionDenied, "password is wrong"]);
      await me.c.auth.deleteAccount({ password: "my password" });

      assert.deepEqual(
        api.sessions.closed.map((c) => [c.deviceId, c.code]).sort(),
        [me.deviceId, phone.deviceId].map((d) => [d, CloseCode.loggedOut]).sort(),
      );
      assert.equal((await rpcError(() => me.c.users.getMe({}))).code, Code.Unauthenticated, "its tokens are dead");
      assert.equal((await rpcError(() => api.anon.auth.refresh({ refreshToken: phone.refreshToken }))).code, Code.Unauthenticated);
      assert.equal((await rpcError(() => api.anon.auth.login({ username: "ivan", password: "my password" }))).code, Code.Unauthenticated);

      assert.deepEqual((await friend.c.users.listFriends({})).friends, []);
      assert.deepEqual((await member.c.users.listFriendRequests({})).requests, []);
      assert.deepEqual((await peer.c.users.listBlockedUsers({})).blockedUsers, []);
      const left = (await member.c.channels.describeChannel({ channelId: group })).channel!;
      assert.deepEqual([left.memberCount, left.myRole], [1, MemberRole.OWNER], "the group passed to the one who stays");

      const [shown] = (await friend.c.users.getUsers({ userIds: [me.userId] })).users;
      assert.deepEqual([shown?.deleted, shown?.username, shown?.displayName], [true, "", ""]);
      const history = await friend.c.messages.listMessages({ channelId: dm });
      assert.deepEqual(history.messages.map((m) => [m.text, m.senderUserId]), [["bye for now", me.userId]], "what it sent stays");
      assert.deepEqual((await friend.c.users.searchUsers({ query: "ivan" })).users, []);
      assert.equal((await rpcError(() => friend.c.channels.openDirect({ userId: me.userId }))).code, Code.NotFound);
      assert.equal((await rpcError(() => friend.c.users.sendFriendRequest({ userId: me.userId }))).code, Code.NotFound);

      const again = await api.signUp("Ivan", "another password");
      assert.notEqual(again.userId, me.userId, "the name is free for a new account");
    });
  });

  it("answers PushService with Unimplemented", async () => {
    const u = await api.signUp();
    const err = await rpcError(() => u.c.push.getVapidPublicKey({}));
    assert.equal(err.code, Code.Unimplemented);
    assert.match(err.rawMessage, /not available/);
  });
});

describe("DeviceGate", () => {
  it("keeps a device refused once signed out here, even when a check read it signed in before the sign-out", async () => {
    const reads: (() => void)[] = [];
    let revoked = false;
    const device = { userId: 1n, deviceId: 2n, name: "phone", platform: "ios", createdAtMs: 0, lastSeenAtMs: 0 } as const;
    // Each read answers when the test says, with what the store held when it was made.
    const accounts = {
      getDevice: () => {
        const seen = { ...device, revoked };
        return new Promise((resolve) => reads.push(() => resolve(seen)));
      },
    } as unknown as AccountStore;
    const gate = new DeviceGate(accounts);
    const inFlight = gate.check(1n, 2n);
    // Logout: stored, and this process told, before that read returns.
    revoked = true;
    gate.forget(1n, 2n);
    reads[0]!();
    await assert.rejects(inFlight, /this device is signed out/);
    await assert.rejects(gate.check(1n, 2n), /this device is signed out/);
    assert.equal(reads.length, 1, "refused from memory, not trusted for recheckMs");
  });
});
