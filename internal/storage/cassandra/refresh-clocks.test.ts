import assert from "node:assert/strict";
import { scratchCassandra } from "../../../test/support/cassandra.js";
import { RefreshTokens } from "../../auth/refresh.js";
import { uniqueId } from "../contract/helpers.js";
import { CassandraAccountStore } from "./index.js";

// Api processes whose clocks disagree share one store: the reuse grace of one's refresh, retried
// through another, must not be judged by the difference of their clocks.
describe("cassandra refresh retries across api processes with skewed clocks", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();
  const SKEW_MS = 5 * 60_000;

  async function twoApis(skewMs: number) {
    const accounts = new CassandraAccountStore(storage().db);
    const [userId, deviceId] = [uniqueId(), uniqueId()];
    await accounts.createDevice({ userId, deviceId, name: "phone", platform: "ios", createdAtMs: Date.now(), lastSeenAtMs: Date.now(), revoked: false });
    const signedOut: unknown[] = [];
    const api = (offsetMs: number) =>
      new RefreshTokens(accounts, { now: () => Date.now() + offsetMs, onReuse: async (r) => void signedOut.push(r) });
    return { first: api(0), other: api(skewMs), userId, deviceId, signedOut, accounts };
  }

  for (const [skew, what] of [[SKEW_MS, "ahead"], [-SKEW_MS, "behind"]] as const) {
    it(`a retry at once through a process whose clock is ${what} by 5 minutes gets a working pair`, async () => {
      const { first, other, userId, deviceId, signedOut, accounts } = await twoApis(skew);
      const { token } = await first.issue(userId, deviceId);
      await first.rotate(token); // its reply lost
      const retried = await other.rotate(token);
      assert.deepEqual(signedOut, []);
      assert.equal((await accounts.getDevice(userId, deviceId))?.revoked, false);
      await other.rotate(retried.token);
    });
  }

  it("a replay after the grace through a process whose clock is behind signs the device out", async () => {
    // A grace shorter than the skew: the replay comes past it however the clocks read.
    const accounts = new CassandraAccountStore(storage().db);
    const [userId, deviceId] = [uniqueId(), uniqueId()];
    await accounts.createDevice({ userId, deviceId, name: "phone", platform: "ios", createdAtMs: Date.now(), lastSeenAtMs: Date.now(), revoked: false });
    const signedOut: unknown[] = [];
    const first = new RefreshTokens(accounts, { reuseGraceMs: 2_000, onReuse: async (r) => void signedOut.push(r) });
    const behind = new RefreshTokens(accounts, { reuseGraceMs: 2_000, now: () => Date.now() - SKEW_MS, onReuse: async (r) => void signedOut.push(r) });
    const { token } = await first.issue(userId, deviceId);
    const start = Date.now();
    await first.rotate(token);
    // Waits out the grace by the wall clock (Cassandra's and this process's are one here).
    await new Promise<void>((resolve) => {
      const poll = () => (Date.now() - start > 3_100 ? resolve() : setTimeout(poll, 50));
      poll();
    });
    await assert.rejects(behind.rotate(token), /already used/);
    assert.equal(signedOut.length, 1);
  });
});
