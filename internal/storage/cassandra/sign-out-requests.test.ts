import assert from "node:assert/strict";
import { scratchCassandra } from "../../../test/support/cassandra.js";
import { uniqueId, uniqueName } from "../contract/helpers.js";
import { CassandraAccountStore, type Db } from "./index.js";

/** A Db whose requests, single ones and batches, are counted by kind and table ("SELECT refresh_tokens"). */
function countingRequests(db: Db) {
  const count = new Map<string, number>();
  const tally = (query: string) => {
    const kind = /^\s*(\w+)/.exec(query)![1]!.toUpperCase();
    const table = /(?:FROM|INTO|UPDATE)\s+\w+\.(\w+)/i.exec(query)?.[1];
    count.set(`${kind} ${table}`, (count.get(`${kind} ${table}`) ?? 0) + 1);
  };
  const execute = ((query: string, params?: unknown[], options?: object) => {
    tally(query);
    return db.client.execute(query, params, options);
  }) as Db["client"]["execute"];
  const batch = ((statements: { query: string }[], options?: object) => {
    tally(`BATCH ${statements.map((s) => s.query).join("; ")}`);
    return db.client.batch(statements as never, options);
  }) as Db["client"]["batch"];
  const client = Object.create(db.client, { execute: { value: execute }, batch: { value: batch } }) as Db["client"];
  return { db: Object.create(db, { client: { value: client } }) as Db, count };
}

describe("cassandra sign-out requests", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();
  const use = { atMs: 1_800_000_000_000, successorHash: "never" };

  it("marks a device's tokens from their index rows: no read of a token, a mark and a delete each", async () => {
    const { db, count } = countingRequests(storage().db);
    const s = new CassandraAccountStore(db);
    const [userId, deviceId] = [uniqueId(), uniqueId()];
    const recs = [1_900_000_000_000, 1_900_000_000_001, 1_900_000_000_002].map((expiresAtMs) => ({ userId, deviceId, expiresAtMs }));
    const hashes = recs.map(() => uniqueName("tok_"));
    for (const [i, h] of hashes.entries()) await s.putRefreshToken(h, recs[i]!);
    count.clear();
    await s.revokeDevice(userId, deviceId);
    // Before: a SELECT refresh_tokens per token as well (12 requests for 3 tokens, 3N + 3).
    assert.deepStrictEqual(Object.fromEntries([...count].sort()), {
      "DELETE refresh_tokens": 3,
      "DELETE refresh_tokens_by_device": 1,
      "INSERT used_refresh_tokens": 3,
      "SELECT refresh_tokens_by_device": 1,
      "UPDATE devices": 1,
    });
    for (const [i, h] of hashes.entries()) assert.deepStrictEqual(await s.takeRefreshToken(h, use), { record: recs[i], reused: true });
  });

  it("reads the token of an index row an older build wrote (no expiry in it) and marks it all the same", async () => {
    const { db, count } = countingRequests(storage().db);
    const s = new CassandraAccountStore(db);
    const [userId, deviceId] = [uniqueId(), uniqueId()];
    const rec = { userId, deviceId, expiresAtMs: 1_900_000_000_000 };
    const h = uniqueName("tok_");
    await db.batch([
      { query: `INSERT INTO ${db.t("refresh_tokens")} (token_hash, user_id, device_id, expires_at_ms) VALUES (?, ?, ?, ?)`, params: [h, userId, deviceId, BigInt(rec.expiresAtMs)] },
      { query: `INSERT INTO ${db.t("refresh_tokens_by_device")} (user_id, device_id, token_hash) VALUES (?, ?, ?)`, params: [userId, deviceId, h] },
    ], { logged: true });
    count.clear();
    await s.revokeDevice(userId, deviceId);
    assert.equal(count.get("SELECT refresh_tokens"), 1);
    assert.deepStrictEqual(await s.takeRefreshToken(h, use), { record: rec, reused: true });
  });

  it("a token taken before its index row went keeps its use time and successor through the sign-out", async () => {
    const s = new CassandraAccountStore(storage().db);
    const [userId, deviceId] = [uniqueId(), uniqueId()];
    const rec = { userId, deviceId, expiresAtMs: 1_900_000_000_000 };
    const h = uniqueName("tok_");
    await s.putRefreshToken(h, rec);
    assert.deepStrictEqual(await s.takeRefreshToken(h, { atMs: 1_800_000_000_000, successorHash: "next" }), { record: rec, reused: false });
    // As if the take had stopped before deleting its index row.
    const db = storage().db;
    await db.write(`INSERT INTO ${db.t("refresh_tokens_by_device")} (user_id, device_id, token_hash, expires_at_ms) VALUES (?, ?, ?, ?)`,
      [userId, deviceId, h, BigInt(rec.expiresAtMs)]);
    await s.revokeDevice(userId, deviceId);
    const { usedAgoMs, ...taken } = (await s.takeRefreshToken(h, use))!;
    assert.deepStrictEqual(taken, { record: rec, reused: true, usedAtMs: 1_800_000_000_000, successorHash: "next" });
    assert.ok(usedAgoMs !== undefined && usedAgoMs >= 0, "measured on Cassandra's clock: the sign-out left the take's time alone");
  });
});
