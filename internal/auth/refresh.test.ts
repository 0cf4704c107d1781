import assert from "node:assert/strict";
import { isChatError } from "../model/errors.js";
import type { RefreshTokenRecord } from "../model/types.js";
import { openDatabase, SqliteAccountStore, type SqliteDatabase } from "../storage/sqlite/index.js";
import { hashRefreshToken, REFRESH_REUSE_GRACE_MS, RefreshTokens } from "./refresh.js";

describe("auth: refresh tokens", () => {
  const clock = { ms: 1_800_000_000_000 };
  const now = () => clock.ms;
  let db: SqliteDatabase;
  let accounts: SqliteAccountStore;
  let signedOut: RefreshTokenRecord[];
  const userId = 1n;
  let deviceId = 0n;

  /** RefreshTokens over a fresh store, whose onReuse signs the device out as the api does; and a first token. */
  async function start(options: { reuseGraceMs?: number } = {}): Promise<{ refresh: RefreshTokens; token: string }> {
    const refresh = new RefreshTokens(accounts, {
      now,
      ...options,
      onReuse: async (record) => {
        signedOut.push(record);
        await accounts.revokeDevice(record.userId, record.deviceId);
      },
    });
    return { refresh, token: (await refresh.issue(userId, deviceId)).token };
  }

  const refused = (p: Promise<unknown>, message: RegExp) =>
    assert.rejects(p, (e) => isChatError(e) && e.code === "unauthenticated" && message.test(e.message));
  const reuse = /already used: the device is signed out/;
  const revoked = async () => (await accounts.getDevice(userId, deviceId))?.revoked;

  beforeEach(async () => {
    db = openDatabase(":memory:");
    accounts = new SqliteAccountStore(db, now);
    signedOut = [];
    deviceId++;
    await accounts.createUser({ userId, username: "u", displayName: "U", passwordHash: "h", createdAtMs: 1 }).catch(() => {});
    await accounts.createDevice({ userId, deviceId, name: "phone", platform: "ios", createdAtMs: 1, lastSeenAtMs: 1, revoked: false });
  });
  afterEach(() => db.close());

  it("a retry within the grace, the reply to the first use lost, keeps the device signed in, and its token works", async () => {
    const { refresh, token } = await start();
    await refresh.rotate(token); // its reply never arrives
    clock.ms += REFRESH_REUSE_GRACE_MS;
    const retry = await refresh.rotate(token);
    assert.deepStrictEqual(retry.record, { userId, deviceId, expiresAtMs: retry.record.expiresAtMs });
    assert.equal(retry.expiresAtMs, clock.ms + 30 * 24 * 3_600_000);
    assert.deepStrictEqual([signedOut, await revoked()], [[], false]);
    const after = await refresh.rotate(retry.token);
    assert.equal(after.record.deviceId, deviceId);
    assert.deepStrictEqual(signedOut, []);
  });

  it("the successor a retry took counts as used: whoever presents it later is a second holder, and the device is signed out", async () => {
    const { refresh, token } = await start();
    const first = await refresh.rotate(token); // delivered after all, to someone
    const retry = await refresh.rotate(token);
    await refused(refresh.rotate(first.token), reuse);
    assert.deepStrictEqual(signedOut.map((r) => r.deviceId), [deviceId]);
    assert.equal(await revoked(), true);
    await refused(refresh.rotate(retry.token), /^device was signed out; sign in again$/);
  });

  it("a reuse after the grace signs the device out", async () => {
    const { refresh, token } = await start();
    const first = await refresh.rotate(token);
    clock.ms += REFRESH_REUSE_GRACE_MS + 1;
    await refused(refresh.rotate(token), reuse);
    assert.deepStrictEqual([signedOut.length, await revoked()], [1, true]);
    await refused(refresh.rotate(first.token), /^device was signed out; sign in again$/);
  });

  it("a reuse within the grace once the successor was used (the chain moved on) signs the device out", async () => {
    const { refresh, token } = await start();
    const first = await refresh.rotate(token);
    const second = await refresh.rotate(first.token);
    await refused(refresh.rotate(token), reuse);
    assert.deepStrictEqual([signedOut.length, await revoked()], [1, true]);
    await refused(refresh.rotate(second.token), /^device was signed out; sign in again$/);
  });

  it("a second retry within the grace, the first retry's reply lost too, works; the grace runs from the first use", async () => {
    const { refresh, token } = await start();
    await refresh.rotate(token);
    clock.ms += 20_000;
    await refresh.rotate(token);
    clock.ms += 20_000;
    const again = await refresh.rotate(token);
    assert.deepStrictEqual([signedOut, await revoked()], [[], false]);
    await refresh.rotate(again.token);
    clock.ms += REFRESH_REUSE_GRACE_MS - 40_000 + 1;
    await refused(refresh.rotate(token), reuse);
  });

  it("racing retries (each sent as the one before timed out): all answered, the device signed in, one token live", async () => {
    const { refresh, token } = await start();
    await refresh.rotate(token);
    // The loser of the race for the successor follows the mark the winner moved on (it signed the device out).
    const got = await Promise.all([refresh.rotate(token), refresh.rotate(token), refresh.rotate(token)]);
    assert.deepStrictEqual([signedOut, await revoked()], [[], false]);
    const marks = await Promise.all(got.map((g) => accounts.refreshTokenMark(hashRefreshToken(g.token))));
    const live = got.filter((_, i) => marks[i] === undefined);
    assert.equal(live.length, 1, "one unused");
    await refresh.rotate(live[0]!.token);
  });

  it("a use and its retry in flight together (a client that gave up waiting): the retry's token goes on, the first one's counts as used", async () => {
    const { refresh, token } = await start();
    const [first, retry] = await Promise.all([refresh.rotate(token), refresh.rotate(token)]);
    assert.deepStrictEqual([signedOut, await revoked()], [[], false]);
    await refresh.rotate(retry.token);
    await refused(refresh.rotate(first.token), reuse);
    assert.deepStrictEqual([signedOut.length, await revoked()], [1, true]);
  });

  it("a retry after the refresh failed past its take (a store timeout before the answer) keeps the device signed in", async () => {
    let failNext: string | undefined;
    const flaky = new Proxy(accounts, {
      get(target, key) {
        const value = Reflect.get(target, key, target) as unknown;
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          if (key === failNext) {
            failNext = undefined;
            return Promise.reject(new Error("store timed out"));
          }
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const refresh = new RefreshTokens(flaky, { now, onReuse: async (record) => void signedOut.push(record) });
    const { token } = await refresh.issue(userId, deviceId);
    failNext = "getDevice";
    await assert.rejects(refresh.rotate(token), /store timed out/);
    const retry = await refresh.rotate(token);
    assert.deepStrictEqual([signedOut, await revoked()], [[], false]);
    // And so at the next refresh too.
    failNext = "getDevice";
    await assert.rejects(refresh.rotate(retry.token), /store timed out/);
    clock.ms += 1_000;
    await refresh.rotate(retry.token);
    assert.deepStrictEqual([signedOut, await revoked()], [[], false]);
  });

  it("a retry for a device signed out meanwhile is refused as signed out, not taken for a second holder", async () => {
    const { refresh, token } = await start();
    const first = await refresh.rotate(token);
    await accounts.revokeDevice(userId, deviceId);
    // Logged out (or revoked elsewhere) while the reply was lost: nothing was stolen, and nothing is left to sign out.
    await refused(refresh.rotate(token), /^device was signed out; sign in again$/);
    await refused(refresh.rotate(first.token), /^device was signed out; sign in again$/);
    clock.ms += REFRESH_REUSE_GRACE_MS + 1;
    await refused(refresh.rotate(token), /^device was signed out; sign in again$/);
    assert.deepStrictEqual(signedOut, []);
  });

  it("an expired token is refused, retried or not, and signs nothing out", async () => {
    const { refresh, token } = await start({ reuseGraceMs: 3_600_000 });
    clock.ms += 30 * 24 * 3_600_000;
    await refused(refresh.rotate(token), /expired/);
    await refused(refresh.rotate(token), /expired/);
    assert.deepStrictEqual(signedOut, []);
  });

  it("takes its grace from the option; 0 turns it off", async () => {
    const short = await start({ reuseGraceMs: 5_000 });
    await short.refresh.rotate(short.token);
    clock.ms += 5_000;
    await short.refresh.rotate(short.token);
    clock.ms += 1;
    await refused(short.refresh.rotate(short.token), reuse);

    deviceId++;
    await accounts.createDevice({ userId, deviceId, name: "web", platform: "web", createdAtMs: 1, lastSeenAtMs: 1, revoked: false });
    const none = await start({ reuseGraceMs: 0 });
    await none.refresh.rotate(none.token);
    clock.ms += 1;
    await refused(none.refresh.rotate(none.token), reuse);
  });

  it("with the grace 0, a second use in the same millisecond signs the device out too", async () => {
    const { refresh, token } = await start({ reuseGraceMs: 0 });
    await refresh.rotate(token);
    await refused(refresh.rotate(token), reuse);
    assert.deepStrictEqual([signedOut.length, await revoked()], [1, true]);
  });
});
