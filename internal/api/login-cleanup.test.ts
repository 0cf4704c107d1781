import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import type { AccountStore } from "../accounts/store.js";
import { ChatError } from "../model/errors.js";
import type { Id } from "../model/types.js";
import { rpcError, TestApi } from "./testkit.js";

/** A login that fails against the store after making its device leaves it signed in nowhere. */
describe("api: a login that fails leaves no device behind", () => {
  let api: TestApi;
  afterEach(async () => api.close());

  const outage = () => new ChatError("unavailable", "store away");
  /** Makes the store's `method` fail its next call past `skip` (after doing it when `after`). */
  function failOnce<K extends keyof AccountStore>(store: AccountStore, method: K, after = false, skip = 0): void {
    const real = store[method] as (...args: unknown[]) => Promise<unknown>;
    (store as unknown as Record<K, unknown>)[method] = async (...args: unknown[]) => {
      if (skip-- > 0) return real.apply(store, args);
      (store as unknown as Record<K, unknown>)[method] = real;
      if (after) await real.apply(store, args);
      throw outage();
    };
  }
  const signedIn = async (userId: Id) => (await api.deps.accounts.listDevices(userId)).filter((d) => !d.revoked).map((d) => d.deviceId);

  for (const [what, method, after, skip] of [
    // Past the listing before its device is made (whose failure leaves nothing to undo).
    ["its clean-up of the account's devices", "listDevices", false, 1],
    ["the store of its refresh token", "putRefreshToken", false, 0],
    ["its device's create, which landed", "createDevice", true, 0],
  ] as const) {
    it(`fails UNAVAILABLE, its device signed out, when ${what} fails`, async () => {
      api = await TestApi.start({ maxDevicesPerAccount: 2 });
      const me = await api.signUp("lou", "my password");
      failOnce(api.deps.accounts, method, after, skip);
      const e = await rpcError(() => api.anon.auth.login({ username: "lou", password: "my password" }));
      assert.equal(e.code, Code.Unavailable, e.message);
      // Before, the device stayed signed in, counting toward the limit, though its client got no tokens.
      assert.deepEqual(await signedIn(me.userId), [me.deviceId]);
      const next = (await api.anon.auth.login({ username: "lou", password: "my password" })).credentials!;
      assert.deepEqual((await signedIn(me.userId)).sort(), [me.deviceId, next.deviceId].sort(), "the limit of 2 pruned nobody");
    });
  }

  for (const [what, method, after] of [
    ["the store of its refresh token", "putRefreshToken", false],
    ["its device's create, which landed", "createDevice", true],
    ["its device's create", "createDevice", false],
  ] as const) {
    it(`fails a sign-up UNAVAILABLE, its name free again, when ${what} fails`, async () => {
      api = await TestApi.start();
      failOnce(api.deps.accounts, method, after);
      const e = await rpcError(() => api.anon.auth.signUp({ username: "lou", password: "my password", displayName: "" }));
      assert.equal(e.code, Code.Unavailable, e.message);
      // Before, the account kept the name: the sign-up asked again was refused "username is taken".
      const again = (await api.anon.auth.signUp({ username: "lou", password: "my password", displayName: "" })).credentials!;
      assert.equal((await api.deps.accounts.findUserByUsername("lou"))?.userId, again.userId);
      assert.deepEqual(await signedIn(again.userId), [again.deviceId]);
    });
  }

  it("keeps the account of a failed sign-up that its owner signed in to meanwhile (a retry told 'username is taken', then a login)", async () => {
    api = await TestApi.start();
    const accounts = api.deps.accounts;
    const real = accounts.putRefreshToken.bind(accounts);
    let held: Awaited<ReturnType<typeof api.anon.auth.login>>["credentials"];
    // The sign-up's last step slow, then failing: its client gave up on it meanwhile and logged in.
    accounts.putRefreshToken = async () => {
      accounts.putRefreshToken = real;
      held = (await api.anon.auth.login({ username: "lou", password: "my password" })).credentials!;
      throw outage();
    };
    const e = await rpcError(() => api.anon.auth.signUp({ username: "lou", password: "my password", displayName: "" }));
    assert.equal(e.code, Code.Unavailable, e.message);
    // Deleted before: the login's device was left on an account without a name, its next refresh told 'the account was deleted'.
    assert.equal((await accounts.findUserByUsername("lou"))?.userId, held!.userId);
    assert.deepEqual(await signedIn(held!.userId), [held!.deviceId]);
  });

  it("leaves the newer of two logins at once at the device limit signed in, where each saw the other's device", async () => {
    api = await TestApi.start({ maxDevicesPerAccount: 1 });
    const me = await api.signUp("lou", "my password");
    // Both clean-ups list the devices once both logins made theirs.
    const store = api.deps.accounts;
    const createDevice = store.createDevice;
    let created = 0;
    let release!: () => void;
    const both = new Promise<void>((r) => (release = r));
    store.createDevice = async (device) => {
      await createDevice.call(store, device);
      if (++created === 2) release();
      await both;
    };
    const logins = await Promise.all([1, 2].map(() => api.anon.auth.login({ username: "lou", password: "my password" })));
    const made = logins.map((l) => l.credentials!.deviceId).sort((a, b) => (a < b ? -1 : 1));
    // Before, each signed the other's out with the old device: none was left signed in.
    assert.deepEqual(await signedIn(me.userId), [made[1]]);
  });

  it("signs out at the device limit the device of an earlier login on an api process whose clock is ahead of this one's", async () => {
    api = await TestApi.start({ maxDevicesPerAccount: 1 });
    const me = await api.signUp("lou", "my password");
    // A login on a process a minute ahead (within the clocks' allowed skew)...
    api.clock.ms += 60_000;
    const first = (await api.anon.auth.login({ username: "lou", password: "my password" })).credentials!;
    assert.deepEqual(await signedIn(me.userId), [first.deviceId]);
    // ...then one on this process, later in real time: the device stamped "later" was there before it began, no racing login's.
    api.clock.ms -= 30_000;
    const next = (await api.anon.auth.login({ username: "lou", password: "my password" })).credentials!;
    // Before, it was spared as made after this login's device: two signed in at a limit of 1, and as many more as such logins.
    assert.deepEqual(await signedIn(me.userId), [next.deviceId], "the limit of 1 kept");
  });

  it("signs out at the device limit a device refreshed on an api process whose clock is ahead of this one's", async () => {
    api = await TestApi.start({ maxDevicesPerAccount: 1 });
    const me = await api.signUp("lou", "my password");
    // Refreshed on a process a minute ahead (within the clocks' allowed skew)...
    api.clock.ms += 60_000;
    await api.anon.auth.refresh({ refreshToken: me.refreshToken });
    // ...then a login on this one: the device seen "later" is no racing login's, made after this one's.
    api.clock.ms -= 30_000;
    const next = (await api.anon.auth.login({ username: "lou", password: "my password" })).credentials!;
    assert.deepEqual(await signedIn(me.userId), [next.deviceId], "the limit of 1 kept");
  });
});
