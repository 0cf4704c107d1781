import assert from "node:assert/strict";
import { CassandraAccountStore } from "./account-store.js";
import { CassandraChannelStore } from "./channel-store.js";
import { CassandraInbox } from "./inbox.js";
import { CassandraMessageLog } from "./message-log.js";
import { NewestEntries } from "./newest.js";
import { CassandraPushEndpointStore } from "./push-endpoint-store.js";
import { Db, repeatable, type Client } from "./session.js";
import { UserSearch } from "./user-search.js";

/**
 * Every statement of every adapter, decided: `again` ones the driver may send
 * twice (to another coordinator after a dropped connection or a timeout),
 * `once` ones never. A statement added without being listed here fails, so
 * whoever adds it decides.
 */
const DECIDED: Record<string, { again: string[]; once: string[] }> = {
  account: {
    again: ["byName", "insertUser", "user", "usersIn", "device", "devices", "putToken", "putTokenIndex", "token", "deleteToken",
      "usedToken", "markRevoked", "moveSuccessor", "deviceTokens", "unindexDevice", "request", "requestRow",
      "requests", "visibility", "visibilityIn", "setVisibility", "friend", "friends", "block", "blocks", "blockers", "blockersAmong",
      "pendingIn"],
    once: ["claim", "takeOver", "release", "displayName", "passwordHash", "deleteUser", "insertDevice", "touch", "revoke", "forget", "dropDevice",
      "markFirst", "putFriend", "unfriend", "putRequest", "moveRequest", "deleteRequest", "putBlock", "putBlocker", "deleteBlock", "deleteBlocker",
      "putPending", "movePending", "dropPending"],
  },
  channel: {
    again: ["channel", "insertMetaPlain", "insertMemberPlain", "insertMember", "deleteMember", "deleteChannel", "updateTitle", "member", "memberIn", "members",
      "state", "code", "setCode", "count", "channelsIn", "membersIn", "setRole", "directOf", "index", "unindex", "memberships", "membershipsOf", "kindsAsMember",
      "putMute", "deleteMute", "mute", "mutes", "deletePlace", "place", "places", "inviteOf", "putInviteOf", "dropInviteOf", "putInviteCode",
      "dropInviteCode", "channelOfCode", "barred", "barredAt", "joinPoints"],
    once: ["insertMeta", "bump", "advanceRead", "clearThrough", "markJoined", "claimDirect", "bar", "liftBar", "takeTurn", "giveTurn", "keepTurn"],
  },
  inbox: {
    again: ["putHead", "insert", "one", "range", "firstKept", "dedup", "dedupsOf", "putDedup", "cursor", "putCursor", "dropCursor", "emptyText",
      "ttlLeft", "markDeleted"],
    once: [],
  },
  log: {
    again: ["putHead", "insert", "one", "target", "putReaction", "changeRow", "clearRowText", "changeHead", "putEdit", "edits",
      "firstEdits", "range", "rangeAscending", "senders", "dedup", "putDedup", "changeKey", "putChangeKey", "legacyDedup", "upgradedAt"],
    once: [],
  },
  push: {
    again: ["get", "list", "owner"],
    once: ["update", "insert", "remove", "removeIf", "removeIfFailing", "removeIfRegistration", "removeIfRegistrationFailing", "removeIfKindAddress", "settings", "markFailing", "countFailing", "clearFailing", "claim", "takeOver", "release"],
  },
  search: { again: ["put", "delete", "putDir", "find", "findAfter", "children"], once: [] },
  newest: { again: ["row", "legacyRow", "seq", "legacySeq"], once: [] },
};

const keyspaceOnly = { t: (n: string) => `ks.${n}` } as unknown as Db;

function statementsOf(): Record<string, Record<string, string>> {
  const stores = {
    account: new CassandraAccountStore(keyspaceOnly),
    channel: new CassandraChannelStore(keyspaceOnly, { latest: async () => new Map() }),
    inbox: new CassandraInbox(keyspaceOnly, 1000),
    log: new CassandraMessageLog(keyspaceOnly, 1000),
    push: new CassandraPushEndpointStore(keyspaceOnly),
    search: new UserSearch(keyspaceOnly),
    newest: new NewestEntries(keyspaceOnly, { newest: "n", legacy: "l" }, "k", "c"),
  };
  return Object.fromEntries(Object.entries(stores).map(([name, s]) => [name, (s as unknown as { q: Record<string, string> }).q]));
}

/** A client that answers every request with an empty applied result and keeps the options it was given. */
function recordingClient() {
  const seen: { query: string; isIdempotent: unknown; logged?: unknown }[] = [];
  const row = { get: (c: string) => (c === "[applied]" ? true : null) };
  const answer = async (query: string, o: { isIdempotent?: unknown; logged?: unknown }) => {
    seen.push({ query, isIdempotent: o.isIdempotent, ...("logged" in o ? { logged: o.logged } : {}) });
    return { rows: [row], first: () => row, pageState: null };
  };
  const client = {
    options: { encoding: { useBigIntAsLong: true } },
    execute: (query: string, _p: unknown, o: object) => answer(query, o),
    batch: (st: { query: string }[], o: object) => answer(st.map((s) => s.query).join("; "), o),
  } as unknown as Client;
  return { db: new Db(client, "ks"), seen };
}

describe("cassandra: which statements the driver may send again", () => {
  it("has a decision for every statement of every adapter, and each one's shape agrees with it", () => {
    const all = statementsOf();
    assert.deepEqual(Object.keys(all).sort(), Object.keys(DECIDED).sort());
    for (const [store, q] of Object.entries(all)) {
      const d = DECIDED[store]!;
      assert.deepEqual(Object.keys(q).sort(), [...d.again, ...d.once].sort(), `${store}: statements without a decision, or gone`);
      for (const name of d.again) assert.ok(repeatable(q[name]!), `${store}.${name} is listed as safe to repeat: ${q[name]}`);
      for (const name of d.once) assert.ok(!repeatable(q[name]!), `${store}.${name} is listed as run once: ${q[name]}`);
    }
  });

  it("tells a repeatable statement from a condition, a counter and a list append", () => {
    assert.ok(repeatable("SELECT a FROM ks.t WHERE k = ?"));
    assert.ok(repeatable("INSERT INTO ks.t (k, v) VALUES (?, ?) USING TIMESTAMP ?"));
    assert.ok(repeatable("UPDATE ks.t USING TIMESTAMP ? SET m[?] = ? WHERE k = ?"));
    assert.ok(repeatable("DELETE FROM ks.t WHERE k = ?"));
    assert.ok(!repeatable("INSERT INTO ks.t (k, v) VALUES (?, ?) IF NOT EXISTS"));
    assert.ok(!repeatable("UPDATE ks.t SET v = ? WHERE k = ? IF v = ?"));
    assert.ok(!repeatable("UPDATE ks.t SET n = n + ? WHERE k = ?"));
    assert.ok(!repeatable("UPDATE ks.t SET l = l + [?] WHERE k = ?"));
    assert.ok(!repeatable("UPDATE ks.t SET l = ? + l WHERE k = ?"));
  });

  it("sends reads and plain writes as idempotent, conditions never", async () => {
    const { db, seen } = recordingClient();
    const select = "SELECT v FROM ks.t WHERE k = ?";
    const plain = { query: "INSERT INTO ks.t (k, v) VALUES (?, ?)", params: [1, 2] };
    const cond = { query: "UPDATE ks.t SET v = ? WHERE k = ? IF v = ?", params: [1, 2, 3] };
    await db.rows(select, [1]);
    await db.page(select, [1], 10);
    await db.one(select, [1]);
    await db.serialOne(select, [1]);
    await db.write(plain.query, plain.params);
    await db.batch([plain, plain], { logged: true });
    await db.lwt(cond.query, cond.params);
    await db.batch([cond, plain], { logged: false, conditional: true });
    assert.deepEqual(seen.map((s) => s.isIdempotent), [true, true, true, true, true, true, false, false]);
  });

  it("sends plain writes made together as one unlogged batch, and those over Cassandra's batch warning one by one", async () => {
    const { db, seen } = recordingClient();
    const row = "INSERT INTO ks.t (k, v) VALUES (?, ?) USING TIMESTAMP ?";
    const dedup = "INSERT INTO ks.d (k, id) VALUES (?, ?)";
    await db.writeTogether([
      { query: row, params: [1n, "a short text", 5n] },
      { query: dedup, params: [1n, 2n] },
    ]);
    assert.deepEqual(seen, [{ query: `${row}; ${dedup}`, isIdempotent: true, logged: false }]);
    seen.length = 0;
    await db.writeTogether([
      { query: row, params: [1n, "é".repeat(1_400), 5n] },
      { query: dedup, params: [1n, 2n] },
    ]);
    assert.deepEqual(seen, [
      { query: row, isIdempotent: true },
      { query: dedup, isIdempotent: true },
    ]);
    seen.length = 0;
    await assert.rejects(db.writeTogether([{ query: dedup, params: [1n, 2n] }, { query: "UPDATE ks.t SET n = n + ? WHERE k = ?", params: [1, 2] }]), /not a plain write/);
    assert.equal(seen.length, 0);
  });

  it("refuses a condition or an increment passed as a plain write, before sending it", async () => {
    const { db, seen } = recordingClient();
    await assert.rejects(db.write("UPDATE ks.t SET v = ? WHERE k = ? IF EXISTS", [1, 2]), /not a plain write/);
    await assert.rejects(db.write("UPDATE ks.t SET n = n + ? WHERE k = ?", [1, 2]), /not a plain write/);
    assert.equal(seen.length, 0);
  });
});
