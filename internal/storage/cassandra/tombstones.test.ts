import assert from "node:assert/strict";
import type cassandra from "cassandra-driver";
import { scratchCassandra } from "../../../test/support/cassandra.js";
import { NO_PLACE } from "../../model/types.js";
import { uniqueId } from "../contract/helpers.js";
import { CassandraAccountStore, CassandraChannelStore } from "./index.js";

/**
 * The tombstones a read of a partition meets, as the engine counts them in its
 * trace ("Read n live rows and m tombstone cells"): what slows a partition's
 * reads down, and past 1,000 is logged, past 100,000 refused.
 */
async function tombstonesRead(client: cassandra.Client, query: string, params: unknown[]): Promise<number> {
  const rs = await client.execute(query, params, { prepare: true, traceQuery: true });
  const trace = await client.metadata.getTrace(rs.info.traceId);
  let n = 0;
  for (const e of trace.events) {
    const m = /Read \d+ live rows? and (\d+) tombstone/.exec(e.activity);
    if (m) n += Number(m[1]);
  }
  return n;
}

describe("cassandra: tombstones a path writes", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();
  const T = 1_767_225_600_000;

  it("a user out of channels they never muted or placed leaves no tombstone in their mutes or places; those they had go", async () => {
    const st = storage();
    const channels = new CassandraChannelStore(st.db, st.messages);
    const u = uniqueId();
    const [muted, placed] = [uniqueId(), uniqueId()];
    await channels.setMute(u, muted, T + 3_600_000);
    await channels.changePlace(u, placed, { pinnedAtMs: T });
    // Forgotten as a leave forgets them (api forgetOwnSettings): a mute and a place cleared whole.
    for (let i = 0; i < 5; i++) {
      const c = uniqueId();
      await Promise.all([channels.setMute(u, c, undefined), channels.changePlace(u, c, NO_PLACE)]);
    }
    assert.equal(await tombstonesRead(st.client, `SELECT channel_id FROM ${st.db.t("channel_mutes")} WHERE user_id = ?`, [u]), 0);
    assert.equal(await tombstonesRead(st.client, `SELECT channel_id FROM ${st.db.t("channel_places")} WHERE user_id = ?`, [u]), 0);
    assert.deepStrictEqual(await channels.listMutes(u), new Map([[muted, T + 3_600_000]]));
    assert.deepStrictEqual(await channels.listPlaces(u), new Map([[placed, { pinnedAtMs: T }]]));

    await Promise.all([channels.setMute(u, muted, undefined), channels.changePlace(u, muted, NO_PLACE)]);
    await Promise.all([channels.setMute(u, placed, undefined), channels.changePlace(u, placed, NO_PLACE)]);
    assert.deepStrictEqual(await channels.listMutes(u), new Map());
    assert.deepStrictEqual(await channels.listPlaces(u), new Map());
  });

  it("a device's refreshes overwrite its index row: no tombstone per refresh, and a sign-out still marks the token it holds and every other", async () => {
    const st = storage();
    const accounts = new CassandraAccountStore(st.db);
    const [userId, deviceId] = [uniqueId(), uniqueId()];
    const rec = { userId, deviceId, expiresAtMs: 1_900_000_000_000 };
    const legacy = `tok_legacy_${uniqueId()}`;
    // An index row an older build wrote for a token it issued, with no expiry: its chain goes on from it.
    await st.db.batch([
      { query: `INSERT INTO ${st.db.t("refresh_tokens")} (token_hash, user_id, device_id, expires_at_ms) VALUES (?, ?, ?, ?)`, params: [legacy, userId, deviceId, BigInt(rec.expiresAtMs)] },
      { query: `INSERT INTO ${st.db.t("refresh_tokens_by_device")} (user_id, device_id, token_hash) VALUES (?, ?, ?)`, params: [userId, deviceId, legacy] },
    ], { logged: true });
    const other = `tok_other_${uniqueId()}`;
    await accounts.putRefreshToken(other, rec);
    let [a, b] = [legacy, other];
    let prevB = b;
    for (let i = 0; i < 10; i++) {
      const [na, nb] = [`tok_a${i}_${uniqueId()}`, `tok_b${i}_${uniqueId()}`];
      assert.equal((await accounts.takeRefreshToken(a, { atMs: T + i, successorHash: na, successorExpiresAtMs: rec.expiresAtMs + i }))?.reused, false);
      assert.equal((await accounts.takeRefreshToken(b, { atMs: T + i, successorHash: nb, successorExpiresAtMs: rec.expiresAtMs + i }))?.reused, false);
      prevB = b;
      [a, b] = [na, nb];
    }
    // A retry after a lost reply takes the successor and issues one in its place, in the same chain.
    const last = `tok_retried_${uniqueId()}`;
    assert.equal(await accounts.takeSuccessor(prevB, b, { atMs: T + 20, successorHash: last, successorExpiresAtMs: rec.expiresAtMs + 20 }), true);
    b = last;
    assert.equal(await tombstonesRead(st.client, `SELECT token_hash FROM ${st.db.t("refresh_tokens_by_device")} WHERE user_id = ? AND device_id = ?`, [userId, deviceId]), 0);
    const rows = await st.client.execute(`SELECT token_hash FROM ${st.db.t("refresh_tokens_by_device")} WHERE user_id = ? AND device_id = ?`, [userId, deviceId], { prepare: true });
    assert.equal(rows.rowLength, 2, "a row per token issued at a sign-in, whatever the refreshes since");

    await accounts.revokeDevice(userId, deviceId);
    for (const h of [a, b]) assert.equal((await accounts.takeRefreshToken(h, { atMs: T + 30, successorHash: "never" }))?.reused, true, h);
    assert.deepStrictEqual(await accounts.takeRefreshToken(a, { atMs: T + 30, successorHash: "never" }), { record: { ...rec, expiresAtMs: rec.expiresAtMs + 9 }, reused: true });
  });
});
