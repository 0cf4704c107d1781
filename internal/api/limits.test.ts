import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { HeldPasswords } from "../../test/support/held-passwords.js";
import { MemberRole } from "../../gen/es/chat/v1/types_pb.js";
import { LIGHT_PASSWORD_PARAMS } from "../auth/passwords.js";
import { addressKey, lastForwarded } from "../throttle/address.js";
import type { ApiLimitsConfig } from "../throttle/config.js";
import { MemoryLoginAttempts } from "../throttle/memory.js";
import type { LoginAttempts } from "../throttle/port.js";
import { RETRY_AFTER_HEADER } from "./errors.js";
import type { ApiDeps } from "./deps.js";
import { ApiLimiter } from "./limits.js";
import { rpcError, TestApi } from "./testkit.js";

const OFF: ApiLimitsConfig = { authPerSec: 0, authBurst: 1, callsPerSec: 0, callBurst: 1, loginMaxFailures: 0, loginWindowMs: 60_000, maxDevicesPerAccount: 100 };

describe("api: limits", () => {
  let api: TestApi;
  // The limiter's own clock, moved by the tests.
  const clock = { ms: 0 };
  const now = () => clock.ms;
  async function start(config: Partial<ApiLimitsConfig>, attempts?: LoginAttempts, deps: Partial<ApiDeps> = {}): Promise<void> {
    const c = { ...OFF, ...config };
    api = await TestApi.start({ limits: new ApiLimiter(c, attempts ?? new MemoryLoginAttempts(c.loginWindowMs, { now }), { now }), ...deps });
  }
  beforeEach(() => (clock.ms = Date.UTC(2026, 5, 1)));
  afterEach(async () => api.close());

  const login = (username: string, password: string, ip: string) => api.clients(undefined, ip).auth.login({ username, password });
  const signUp = (username: string, ip: string) => api.clients(undefined, ip).auth.signUp({ username, password: "correct horse" });

  describe("sign-in requests per client address", () => {
    it("refuses past the burst with RATE_LIMITED and a retry time, other addresses unaffected, and refills", async () => {
      await start({ authPerSec: 1, authBurst: 3 });
      const signed = [];
      for (const name of ["ann1", "ann2", "ann3"]) signed.push(await signUp(name, "10.0.0.1"));
      const err = await rpcError(() => login("ann1", "correct horse", "10.0.0.1"));
      assert.equal(err.code, Code.ResourceExhausted);
      assert.equal(err.chatCode, "ERROR_CODE_RATE_LIMITED");
      assert.match(err.rawMessage, /too many sign-in requests from this address/);
      assert.equal(err.metadata.get(RETRY_AFTER_HEADER), "1000");
      // Refused before it ran: the name is still free.
      const refused = await rpcError(() => signUp("ann4", "10.0.0.1"));
      assert.equal(refused.code, Code.ResourceExhausted);
      await signUp("ann4", "10.0.0.2");
      // Refresh costs no hash and is not limited by address (a carrier's NAT is one address).
      for (const s of signed) await api.clients(undefined, "10.0.0.1").auth.refresh({ refreshToken: s.credentials!.refreshToken });
      clock.ms += 1_000;
      await login("ann1", "correct horse", "10.0.0.1");
    });

    it("takes ChangePassword and DeleteAccount, which hash a password too, from the address's allowance: accounts made are no way around it", async () => {
      await start({ authPerSec: 1, authBurst: 2 });
      const me = await api.signUp("ivy", "right password");
      const from = (ip: string) => api.clients(me.accessToken, ip);
      await from("10.0.0.5").auth.changePassword({ currentPassword: "right password", newPassword: "new password 1", keepOtherDevices: true });
      await from("10.0.0.5").auth.changePassword({ currentPassword: "new password 1", newPassword: "new password 2", keepOtherDevices: true });
      for (const call of [
        () => from("10.0.0.5").auth.changePassword({ currentPassword: "new password 2", newPassword: "new password 3", keepOtherDevices: true }),
        () => from("10.0.0.5").auth.deleteAccount({ password: "new password 2" }),
      ]) {
        const err = await rpcError(call);
        assert.deepEqual([err.code, err.chatCode], [Code.ResourceExhausted, "ERROR_CODE_RATE_LIMITED"]);
        assert.match(err.rawMessage, /too many sign-in requests from this address/);
      }
      // Refused before it ran: the password is still the last one changed to.
      await from("10.0.0.6").auth.changePassword({ currentPassword: "new password 2", newPassword: "new password 3", keepOtherDevices: true });
      // Other methods of the account are not taken from it.
      await from("10.0.0.5").users.getMe({});
    });

    it("counts an IPv6 client by its /64", async () => {
      await start({ authPerSec: 1, authBurst: 1 });
      await signUp("v6a", "2001:db8:1:2::1");
      const err = await rpcError(() => signUp("v6b", "2001:db8:1:2:ffff::9"));
      assert.equal(err.code, Code.ResourceExhausted);
      await signUp("v6b", "2001:db8:1:3::1");
    });
  });

  describe("requests per account", () => {
    it("refuses past the burst, per account, and refills", async () => {
      await start({ callsPerSec: 2, callBurst: 3 });
      const [alice, bob] = [await api.signUp("alice"), await api.signUp("bob")];
      for (let i = 0; i < 3; i++) await alice.c.users.getMe({});
      const err = await rpcError(() => alice.c.users.getMe({}));
      assert.equal(err.code, Code.ResourceExhausted);
      assert.match(err.rawMessage, /too many requests for this account/);
      assert.equal(err.metadata.get(RETRY_AFTER_HEADER), "500");
      await bob.c.users.getMe({});
      clock.ms += 500;
      await alice.c.users.getMe({});
    });

    it("refuses SendMessage past the account's send rate, edits and reactions counted, unstored and with a retry time, while others send on", async () => {
      api = await TestApi.start({ limits: new ApiLimiter(OFF, new MemoryLoginAttempts(60_000, { now }), { now, sendRate: { sendsPerSecond: 1, sendBurst: 3 } }) });
      const [alice, bob] = [await api.signUp("alice"), await api.signUp("bob")];
      const channelId = (await alice.c.channels.openDirect({ userId: bob.userId })).channel!.channelId;
      const { messageId } = await alice.c.messages.sendMessage({ channelId, clientMsgId: "a1", text: "hi" });
      assert.ok(messageId > 0n);
      await alice.c.messages.sendMessage({ channelId, clientMsgId: "a2", text: "hi!", editSeq: 1n });
      await alice.c.messages.sendMessage({ channelId, clientMsgId: "a3", text: "👍", reactSeq: 1n });
      const err = await rpcError(() => alice.c.messages.sendMessage({ channelId, clientMsgId: "a4", text: "more" }));
      assert.equal(err.code, Code.ResourceExhausted);
      assert.equal(err.chatCode, "ERROR_CODE_RATE_LIMITED");
      assert.match(err.rawMessage, /too many messages sent by this account/);
      assert.equal(err.metadata.get(RETRY_AFTER_HEADER), "1000");
      await bob.c.messages.sendMessage({ channelId, clientMsgId: "b1", text: "hello" });
      clock.ms += 1_000;
      // Not a duplicate: the refused send was not stored.
      assert.equal((await alice.c.messages.sendMessage({ channelId, clientMsgId: "a4", text: "more" })).duplicate, false);
    });

    it("takes group changes that write a note from the account's send rate, with its sends: refused RATE_LIMITED with a retry time, unmade", async () => {
      api = await TestApi.start({ limits: new ApiLimiter(OFF, new MemoryLoginAttempts(60_000, { now }), { now, sendRate: { sendsPerSecond: 1, sendBurst: 3 } }) });
      const [alice, bob, carol, dave] = [await api.signUp("alice"), await api.signUp("bob"), await api.signUp("carol"), await api.signUp("dave")];
      const channelId = (await alice.c.channels.createGroup({ title: "g", memberUserIds: [bob.userId] })).channel!.channelId;
      const { code } = await alice.c.channels.getInviteLink({ channelId });
      await alice.c.channels.updateGroup({ channelId, title: "g2" });
      // Changes that change nothing write no note, and are not taken.
      await alice.c.channels.updateGroup({ channelId, title: "g2" });
      await alice.c.channels.addMembers({ channelId, userIds: [carol.userId] });
      await alice.c.channels.addMembers({ channelId, userIds: [carol.userId] });
      await alice.c.messages.sendMessage({ channelId, clientMsgId: "a1", text: "hi" });
      const history = async () => (await bob.c.messages.listMessages({ channelId, limit: 200 })).messages.length;
      const before = await history();
      const refusals: [string, () => Promise<unknown>][] = [
        ["rename", () => alice.c.channels.updateGroup({ channelId, title: "g3" })],
        ["add", () => alice.c.channels.addMembers({ channelId, userIds: [dave.userId] })],
        ["removal", () => alice.c.channels.removeMember({ channelId, userId: carol.userId })],
        ["role change", () => alice.c.channels.setMemberRole({ channelId, userId: bob.userId, role: MemberRole.ADMIN })],
        ["leaving", () => alice.c.channels.leaveGroup({ channelId })],
        ["send", () => alice.c.messages.sendMessage({ channelId, clientMsgId: "a2", text: "more" })],
      ];
      for (const [i, [what, call]] of refusals.entries()) {
        const err = await rpcError(call);
        assert.deepEqual([err.code, err.chatCode], [Code.ResourceExhausted, "ERROR_CODE_RATE_LIMITED"], what);
        assert.match(err.rawMessage, /too many messages/, what);
        if (i === 0) assert.equal(err.metadata.get(RETRY_AFTER_HEADER), "1000", what);
        else assert.ok(Number(err.metadata.get(RETRY_AFTER_HEADER)) > 0, what);
      }
      // Nor are these, which change nothing either: one out removed, a role they have.
      await alice.c.channels.removeMember({ channelId, userId: dave.userId });
      await alice.c.channels.setMemberRole({ channelId, userId: bob.userId, role: MemberRole.MEMBER });
      // Nothing of them was made: no note, the group as it was.
      assert.equal(await history(), before);
      const members = (await bob.c.channels.listMembers({ channelId })).members.map((m) => [m.userId, m.role]);
      assert.deepEqual(members, [[alice.userId, MemberRole.OWNER], [bob.userId, MemberRole.MEMBER], [carol.userId, MemberRole.MEMBER]]);
      assert.equal((await bob.c.channels.describeChannel({ channelId })).channel!.title, "g2");
      // A join by link and a leaving are taken from the joiner's own: others change on meanwhile.
      await dave.c.channels.joinByInvite({ code });
      await dave.c.channels.leaveGroup({ channelId });
      await dave.c.channels.joinByInvite({ code });
      assert.equal((await rpcError(() => dave.c.channels.leaveGroup({ channelId }))).chatCode, "ERROR_CODE_RATE_LIMITED");
      await bob.c.messages.sendMessage({ channelId, clientMsgId: "b1", text: "hello" });
      clock.ms += 1_000;
      await dave.c.channels.leaveGroup({ channelId });
      assert.equal((await rpcError(() => dave.c.channels.joinByInvite({ code }))).chatCode, "ERROR_CODE_RATE_LIMITED");
      assert.equal(await api.storage.channels.getMember(channelId, dave.userId), undefined);
      await alice.c.channels.updateGroup({ channelId, title: "g3" });
    });

    it("takes a rename's title from the account's text budget", async () => {
      api = await TestApi.start({ limits: new ApiLimiter(OFF, new MemoryLoginAttempts(60_000, { now }), { now, textBudget: { textBurstBytes: 8, textBytesPerSecond: 1 } }) });
      const alice = await api.signUp("alice");
      const channelId = (await alice.c.channels.createGroup({ title: "g", memberUserIds: [] })).channel!.channelId;
      await alice.c.channels.updateGroup({ channelId, title: "12345" });
      const err = await rpcError(() => alice.c.channels.updateGroup({ channelId, title: "6789" }));
      assert.deepEqual([err.code, err.chatCode], [Code.ResourceExhausted, "ERROR_CODE_RATE_LIMITED"]);
      assert.match(err.rawMessage, /too much text sent by this account/);
      assert.equal((await alice.c.channels.describeChannel({ channelId })).channel!.title, "12345");
    });

    it("refuses SendMessage past the account's text budget (UTF-8 bytes), unstored and with a retry time, while others send on", async () => {
      await start({});
      const [alice, bob] = [await api.signUp("alice"), await api.signUp("bob")];
      const channelId = (await alice.c.channels.openDirect({ userId: bob.userId })).channel!.channelId;
      // The longest text, of 4-byte code points: two fit in the 1 MiB burst, a third does not.
      const long = "😀".repeat(99_999);
      await alice.c.messages.sendMessage({ channelId, clientMsgId: "a1", text: long });
      await alice.c.messages.sendMessage({ channelId, clientMsgId: "a2", text: long });
      const err = await rpcError(() => alice.c.messages.sendMessage({ channelId, clientMsgId: "a3", text: long }));
      assert.equal(err.code, Code.ResourceExhausted);
      assert.match(err.rawMessage, /too much text sent by this account/);
      assert.ok(Number(err.metadata.get(RETRY_AFTER_HEADER)) > 0);
      await bob.c.messages.sendMessage({ channelId, clientMsgId: "b1", text: long });
      clock.ms += 2_000;
      // Not a duplicate: the refused send was not stored.
      assert.equal((await alice.c.messages.sendMessage({ channelId, clientMsgId: "a3", text: long })).duplicate, false);
    });

    it("takes nothing from the text budget for a text refused for its length", async () => {
      await start({});
      const [alice, bob] = [await api.signUp("alice"), await api.signUp("bob")];
      const channelId = (await alice.c.channels.openDirect({ userId: bob.userId })).channel!.channelId;
      const tooLong = await rpcError(() => alice.c.messages.sendMessage({ channelId, clientMsgId: "a0", text: "😀".repeat(100_000) }));
      assert.equal(tooLong.chatCode, "ERROR_CODE_TEXT_TOO_LONG");
      // Two of the longest texts fit in the 1 MiB burst only if the 400,000 bytes refused took none of it.
      const long = "😀".repeat(99_999);
      await alice.c.messages.sendMessage({ channelId, clientMsgId: "a1", text: long });
      await alice.c.messages.sendMessage({ channelId, clientMsgId: "a2", text: long });
    });

    it("holds Refresh to its account's rate before it rotates, a retry of a used token too: each stores a token kept for its life", async () => {
      await start({ callsPerSec: 1, callBurst: 2 });
      const me = await api.signUp("jill");
      await api.anon.auth.refresh({ refreshToken: me.refreshToken });
      // A retry within the grace, as after a lost reply, is a rotation too.
      const second = (await api.anon.auth.refresh({ refreshToken: me.refreshToken })).credentials!.refreshToken;
      for (const token of [second, me.refreshToken]) {
        const err = await rpcError(() => api.anon.auth.refresh({ refreshToken: token }));
        assert.deepEqual([err.code, err.chatCode], [Code.ResourceExhausted, "ERROR_CODE_RATE_LIMITED"]);
      }
      assert.equal((await rpcError(() => api.anon.auth.refresh({ refreshToken: "never-issued" }))).code, Code.Unauthenticated, "a token of nobody's counts against nobody");
      clock.ms += 1_000;
      // Refused before it was taken: the token still works, and the device is still signed in.
      await api.anon.auth.refresh({ refreshToken: second });
    });

    it("holds Refresh with a token nobody was issued to the address's sign-in allowance, before it is taken; one with an owner is not", async () => {
      await start({ authPerSec: 1, authBurst: 2 });
      const me = await api.signUp("jack");
      let takes = 0;
      const take = api.storage.accounts.takeRefreshToken;
      api.storage.accounts.takeRefreshToken = (...args) => (takes++, take.apply(api.storage.accounts, args));
      const from = (ip: string) => api.clients(undefined, ip).auth;
      for (let i = 0; i < 2; i++) assert.equal((await rpcError(() => from("10.0.0.1").refresh({ refreshToken: `made-up-${i}` }))).code, Code.Unauthenticated);
      const err = await rpcError(() => from("10.0.0.1").refresh({ refreshToken: "made-up-2" }));
      assert.deepEqual([err.code, err.chatCode], [Code.ResourceExhausted, "ERROR_CODE_RATE_LIMITED"]);
      assert.match(err.rawMessage, /from this address/);
      assert.equal(takes, 2, "refused before the store was asked to take it");
      // A device behind the same address refreshes on its account's rate; another address has its own allowance.
      await from("10.0.0.1").refresh({ refreshToken: me.refreshToken });
      assert.equal((await rpcError(() => from("10.0.0.2").refresh({ refreshToken: "made-up-3" }))).code, Code.Unauthenticated);
    });

    it("checks the token first: a call without one is UNAUTHENTICATED, not counted", async () => {
      await start({ callsPerSec: 1, callBurst: 1 });
      const alice = await api.signUp("alice");
      for (let i = 0; i < 3; i++) assert.equal((await rpcError(() => api.anon.users.getMe({}))).code, Code.Unauthenticated);
      await alice.c.users.getMe({});
    });

    it("refuses a signed-out device's token without using up its account's allowance", async () => {
      await start({ callsPerSec: 1, callBurst: 2 });
      await api.signUp("alice", "correct horse");
      const stolen = (await api.anon.auth.login({ username: "alice", password: "correct horse" })).credentials!;
      const alice = api.clients((await api.anon.auth.login({ username: "alice", password: "correct horse" })).credentials!.accessToken);
      await alice.auth.revokeDevice({ deviceId: stolen.deviceId });
      const thief = api.clients(stolen.accessToken);
      for (let i = 0; i < 5; i++) assert.equal((await rpcError(() => thief.users.getMe({}))).code, Code.Unauthenticated);
      // The revocation took one of alice's two; one is left.
      await alice.users.getMe({});
      assert.equal((await rpcError(() => alice.users.getMe({}))).code, Code.ResourceExhausted);
    });
  });

  describe("failed logins", () => {
    it("refuses an account's logins from an address after its failures, even with the right password, until the window ends", async () => {
      await start({ loginMaxFailures: 3, loginWindowMs: 60_000 });
      await api.signUp("carol", "right password");
      for (let i = 0; i < 3; i++) assert.equal((await rpcError(() => login("carol", "wrong password", "10.0.0.1"))).code, Code.Unauthenticated);
      const err = await rpcError(() => login("CAROL", "right password", "10.0.0.1"));
      assert.equal(err.code, Code.ResourceExhausted);
      assert.match(err.rawMessage, /too many failed logins for this account/);
      assert.equal(err.metadata.get(RETRY_AFTER_HEADER), "60000");
      // The owner elsewhere still gets in; so does another account from the same address.
      await login("carol", "right password", "10.0.0.2");
      await api.signUp("dave", "right password");
      await login("dave", "right password", "10.0.0.1");
      clock.ms += 60_000;
      await login("carol", "right password", "10.0.0.1");
    });

    it("counts a wrong current password of ChangePassword as a failed login: a stolen token cannot guess the password", async () => {
      await start({ loginMaxFailures: 3 });
      const me = await api.signUp("hank", "right password");
      const change = (current: string) => api.clients(me.accessToken, "10.0.0.9").auth.changePassword({ currentPassword: current, newPassword: "new password" });
      for (let i = 0; i < 3; i++) assert.equal((await rpcError(() => change(`guess ${i}`))).code, Code.PermissionDenied);
      assert.equal((await rpcError(() => change("right password"))).code, Code.ResourceExhausted, "refused even with the right one");
      assert.equal((await rpcError(() => login("hank", "right password", "10.0.0.9"))).code, Code.ResourceExhausted, "as its logins from there are");
    });

    it("checks no more concurrent wrong logins than the allowance", async () => {
      // All 30 under way before the first check is done.
      const passwords = new HeldPasswords(LIGHT_PASSWORD_PARAMS, 30);
      await start({ loginMaxFailures: 10 }, undefined, { passwords });
      await api.signUp("ivan", "right password");
      const codes = await Promise.all(
        Array.from({ length: 30 }, (_, i) => rpcError(() => login("ivan", `guess ${i}`, "10.0.0.1")).then((e) => (passwords.answered(), e.code))),
      );
      assert.equal(passwords.verified, 10);
      assert.equal(codes.filter((c) => c === Code.Unauthenticated).length, 10, "checked");
      assert.equal(codes.filter((c) => c === Code.ResourceExhausted).length, 20, "refused");
      assert.equal((await rpcError(() => login("ivan", "right password", "10.0.0.1"))).code, Code.ResourceExhausted);
    });

    it("checks no more concurrent wrong current passwords of ChangePassword than the allowance", async () => {
      const passwords = new HeldPasswords(LIGHT_PASSWORD_PARAMS, 30);
      await start({ loginMaxFailures: 10 }, undefined, { passwords });
      const me = await api.signUp("judy", "right password");
      const c = api.clients(me.accessToken, "10.0.0.9").auth;
      const codes = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          rpcError(() => c.changePassword({ currentPassword: `guess ${i}`, newPassword: "new password" })).then((e) => (passwords.answered(), e.code)),
        ),
      );
      assert.equal(passwords.verified, 10);
      assert.equal(codes.filter((c) => c === Code.PermissionDenied).length, 10, "checked");
      assert.equal(codes.filter((c) => c === Code.ResourceExhausted).length, 20, "refused");
    });

    it("forgets the failures after a successful login", async () => {
      await start({ loginMaxFailures: 3 });
      await api.signUp("erin", "right password");
      for (let i = 0; i < 2; i++) await rpcError(() => login("erin", "wrong password", "10.0.0.1"));
      await login("erin", "right password", "10.0.0.1");
      for (let i = 0; i < 2; i++) await rpcError(() => login("erin", "wrong password", "10.0.0.1"));
      await login("erin", "right password", "10.0.0.1");
    });

    it("counts unknown names like known ones, so refusals do not reveal which exist", async () => {
      await start({ loginMaxFailures: 2 });
      for (let i = 0; i < 2; i++) assert.equal((await rpcError(() => login("nobody", "any password", "10.0.0.1"))).code, Code.Unauthenticated);
      assert.equal((await rpcError(() => login("nobody", "any password", "10.0.0.1"))).code, Code.ResourceExhausted);
    });

    it("answers a name no account can have as a wrong login, counting it against nobody", async () => {
      await start({ loginMaxFailures: 2 });
      for (let i = 0; i < 4; i++) assert.equal((await rpcError(() => login("nobody|10.0.0.9", "any password", "10.0.0.1"))).code, Code.Unauthenticated);
      assert.equal((await rpcError(() => login("no body", "any password", "10.0.0.1"))).code, Code.Unauthenticated);
    });

    it("keeps an account's counts apart from another's per-address ones, whatever the name", async () => {
      // Straight at the limiter, past the api's check of the name: its keys must not rely on it.
      const limiter = new ApiLimiter({ ...OFF, loginMaxFailures: 3 }, new MemoryLoginAttempts(60_000, { now }), { now });
      for (let i = 0; i < 3; i++) await limiter.checkLogin("alice|10.0.0.9", "10.66.6.6");
      await limiter.checkLogin("alice", "10.0.0.9");
    });

    it("refuses an account's logins from every address after ten times the failures spread over many", async () => {
      await start({ loginMaxFailures: 2 });
      await api.signUp("frank", "right password");
      for (let a = 1; a <= 10; a++) {
        for (let i = 0; i < 2; i++) assert.equal((await rpcError(() => login("frank", "wrong", `10.0.1.${a}`))).code, Code.Unauthenticated);
      }
      assert.equal((await rpcError(() => login("frank", "right password", "10.0.2.1"))).code, Code.ResourceExhausted);
    });

    it("gives a new account under a deleted one's name none of the old one's addresses: its old owner is refused there with everyone else", async () => {
      await start({ loginMaxFailures: 2 });
      const old = (await signUp("ines", "10.0.9.1")).credentials!;
      await api.clients(old.accessToken, "10.0.9.1").auth.deleteAccount({ password: "correct horse" });
      await signUp("ines", "10.0.8.1"); // someone else takes the name
      for (let a = 1; a <= 10; a++) {
        for (let i = 0; i < 2; i++) assert.equal((await rpcError(() => login("ines", "wrong", `10.0.1.${a}`))).code, Code.Unauthenticated);
      }
      assert.equal((await rpcError(() => login("ines", "a guess", "10.0.9.1"))).code, Code.ResourceExhausted, "the deleted account's address is no one's now");
      await login("ines", "correct horse", "10.0.8.1");
    });

    it("starts a new account under a name with the failures counted against the name before forgotten: they were nobody's", async () => {
      await start({ loginMaxFailures: 2 });
      for (let i = 0; i < 2; i++) await rpcError(() => login("jade", "a guess", "10.0.0.1"));
      assert.equal((await rpcError(() => login("jade", "a guess", "10.0.0.1"))).code, Code.ResourceExhausted);
      await signUp("jade", "10.0.0.1");
      await login("jade", "correct horse", "10.0.0.1");
    });

    it("lets the owner in from an address the account signed in from before, while a guesser spread over many has it refused elsewhere", async () => {
      await start({ loginMaxFailures: 2 });
      await signUp("hana", "10.0.9.1"); // made at home
      await login("hana", "correct horse", "10.0.9.2"); // and signed in at work
      for (let a = 1; a <= 10; a++) {
        for (let i = 0; i < 2; i++) assert.equal((await rpcError(() => login("hana", "wrong", `10.0.1.${a}`))).code, Code.Unauthenticated);
      }
      assert.equal((await rpcError(() => login("hana", "correct horse", "10.0.2.1"))).code, Code.ResourceExhausted);
      // A new device at home or at work gets in, and the failures of everyone else are forgotten.
      await login("hana", "correct horse", "10.0.9.1");
      await login("hana", "correct horse", "10.0.2.1");
      // Known for 30 days, not for ever.
      for (let a = 1; a <= 10; a++) for (let i = 0; i < 2; i++) await rpcError(() => login("hana", "wrong", `10.0.3.${a}`));
      clock.ms += 30 * 24 * 3_600_000;
      for (let a = 1; a <= 10; a++) for (let i = 0; i < 2; i++) await rpcError(() => login("hana", "wrong", `10.0.4.${a}`));
      assert.equal((await rpcError(() => login("hana", "correct horse", "10.0.9.2"))).code, Code.ResourceExhausted);
    });

    it("trusts none of the addresses the account signed in from before a password change, except the one it was changed from", async () => {
      await start({ loginMaxFailures: 2 });
      const me = (await signUp("kira", "10.0.9.1")).credentials!; // made at home
      await login("kira", "correct horse", "10.6.6.6"); // the password stolen: a thief signs in from afar
      await api.clients(me.accessToken, "10.0.9.1").auth.changePassword({ currentPassword: "correct horse", newPassword: "new password!" });
      for (let a = 1; a <= 10; a++) {
        for (let i = 0; i < 2; i++) assert.equal((await rpcError(() => login("kira", "wrong", `10.0.1.${a}`))).code, Code.Unauthenticated);
      }
      assert.equal((await rpcError(() => login("kira", "a guess", "10.6.6.6"))).code, Code.ResourceExhausted, "the thief's address is no longer the account's");
      await login("kira", "new password!", "10.0.9.1");
    });

    it("lets logins through when the counter store fails", async () => {
      const broken: LoginAttempts = {
        get: () => Promise.reject(new Error("down")),
        fail: () => Promise.reject(new Error("down")),
        clear: () => Promise.reject(new Error("down")),
        rememberSuccess: () => Promise.reject(new Error("down")),
        succeededBefore: () => Promise.reject(new Error("down")),
        close: async () => {},
      };
      await start({ loginMaxFailures: 1 }, broken);
      await api.signUp("gina", "right password");
      await rpcError(() => login("gina", "wrong", "10.0.0.1"));
      await rpcError(() => login("gina", "wrong", "10.0.0.1"));
      await login("gina", "right password", "10.0.0.1");
    });
  });
});

describe("throttle: client address keys", () => {
  it("keys IPv4, IPv4-mapped IPv6 and IPv6 by /64", () => {
    assert.equal(addressKey("192.0.2.7"), "192.0.2.7");
    assert.equal(addressKey("::ffff:192.0.2.7"), "192.0.2.7");
    assert.equal(addressKey("2001:db8::1"), "2001:db8:0:0::/64");
    assert.equal(addressKey("2001:0db8:0000:0000:1::"), "2001:db8:0:0::/64");
    assert.equal(addressKey("::1"), "0:0:0:0::/64");
    assert.equal(addressKey(undefined), "unknown");
  });

  it("takes the last entry of a forwarding header", () => {
    assert.equal(lastForwarded("203.0.113.9, 10.0.0.1"), "10.0.0.1");
    assert.equal(lastForwarded(["203.0.113.9", "198.51.100.2 "]), "198.51.100.2");
    assert.equal(lastForwarded(""), undefined);
    assert.equal(lastForwarded(undefined), undefined);
  });
});
