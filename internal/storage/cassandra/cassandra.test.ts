import assert from "node:assert/strict";
import cassandra from "cassandra-driver";
import { randomBytes } from "node:crypto";
import { dropKeyspace, SCHEMA_CHANGE_TIMEOUT_MS } from "../../../test/support/cassandra.js";
import { engineConfig } from "../../../test/support/engines.js";
import { waitFor, waitOut } from "../../../test/support/wait.js";
import { MAX_BARS, type MembershipCheck } from "../../channels/store.js";
import { ChatError } from "../../model/errors.js";
import type { ChannelRecord, MemberRecord, NewMessage, StoredMessage } from "../../model/types.js";
import {
  accountStoreContract,
  channelStoreContract,
  inboxContract,
  messageLogContract,
  type MakeStore,
} from "../contract/index.js";
import { rejectsWith, uniqueId, uniqueName } from "../contract/helpers.js";
import {
  applySchema,
  CassandraAccountStore,
  CassandraChannelStore,
  CassandraInbox,
  CassandraMessageLog,
  createClient,
  openCassandraStorage,
  type CassandraStorage,
} from "./index.js";
import { bucketOf } from "./buckets.js";
import { encodeChange } from "./change-cell.js";
import { ADDED_COLUMNS, DEVICE_DEDUP_SINCE, LEGACY_DEDUP_WINDOW_MS, SCHEMA_VERSION, tableId, TABLE_NAMES } from "./schema.js";
import { Db, mapLimit, StorageUnavailable, type Statement } from "./session.js";

// Small buckets so the contract suites cross bucket boundaries all the time.
const BUCKET = 8;
const MAX_INT64 = (1n << 63n) - 1n;

function connection() {
  // Throws (fails the run) when the engines are not up: never a skip.
  const cfg = engineConfig();
  // Schema changes (applySchema, a keyspace's drop) outlast the driver's 12 s on a loaded node.
  return { contactPoints: cfg.cassandraContactPoints, localDataCenter: cfg.cassandraDc, readTimeoutMs: SCHEMA_CHANGE_TIMEOUT_MS };
}
/** A test that applies a schema (or makes and drops a keyspace of its own): schema changes of up to SCHEMA_CHANGE_TIMEOUT_MS. */
const KEYSPACE_TEST_TIMEOUT_MS = 5 * SCHEMA_CHANGE_TIMEOUT_MS;

const newKeyspace = () => `chat_test_${randomBytes(5).toString("hex")}`;

describe("cassandra storage", function () {
  this.timeout(120_000);
  const keyspace = newKeyspace();
  let storage: CassandraStorage | undefined;
  const s = (): CassandraStorage => {
    if (!storage) throw new Error("cassandra storage did not open");
    return storage;
  };

  before(async () => {
    storage = await openCassandraStorage({ ...connection(), keyspace, bucketSize: BUCKET });
  });
  after(async () => {
    if (!storage) return;
    const open = storage;
    await dropKeyspace(open.client, keyspace, () => open.close());
  });

  // Fresh adapter objects per suite (cold caches), one shared keyspace.
  const make = <S>(build: (st: CassandraStorage) => S): MakeStore<S> => async () => ({
    store: build(s()),
    close: async () => undefined,
  });
  accountStoreContract(make((st) => new CassandraAccountStore(st.db)));
  channelStoreContract(make((st) => {
    const log = new CassandraMessageLog(st.db, st.schema.bucketSize);
    return { channels: new CassandraChannelStore(st.db, log), log };
  }));
  messageLogContract(make((st) => new CassandraMessageLog(st.db, st.schema.bucketSize)));
  inboxContract(make((st) => new CassandraInbox(st.db, st.schema.bucketSize)));

  describe("engine specifics", () => {
    const msg = (channelId: bigint, over: Partial<NewMessage> = {}): NewMessage => ({
      messageId: uniqueId(),
      channelId,
      senderUserId: uniqueId(),
      senderDeviceId: uniqueId(),
      clientMsgId: uniqueName("c-"),
      text: "hello",
      sentAtMs: 1_767_225_600_000,
      ...over,
    });
    const seqs = (ms: { seq: bigint }[]) => ms.map((m) => m.seq);
    const range = (from: number, to: number) =>
      Array.from({ length: Math.abs(to - from) + 1 }, (_, i) => BigInt(from < to ? from + i : from - i));

    it("a read returns every row it selects, past the driver's page of 5,000", async () => {
      const db = s().db;
      await db.client.execute(`CREATE TABLE IF NOT EXISTS ${db.t("paging_probe")} (p int, c int, PRIMARY KEY (p, c))`);
      const insert = `INSERT INTO ${db.t("paging_probe")} (p, c) VALUES (?, ?)`;
      const total = 5_050;
      const batches: Statement[][] = [];
      for (let c = 0; c < total; c += 50) {
        batches.push(Array.from({ length: Math.min(50, total - c) }, (_, k) => ({ query: insert, params: [0, c + k] })));
      }
      await mapLimit(batches, 8, (b) => db.batch(b, { logged: false }));
      const rows = await db.rows(`SELECT c FROM ${db.t("paging_probe")} WHERE p = ?`, [0]);
      assert.equal(rows.length, total);
      assert.deepEqual(rows.map((r) => r.get("c") as number), Array.from({ length: total }, (_, i) => i));
    });

    it("stores history in buckets of bucketSize seqs and pages across them both ways", async () => {
      const log = new CassandraMessageLog(s().db, BUCKET);
      const channelId = uniqueId();
      const n = BUCKET * 3 + 3;
      const stored: StoredMessage[] = [];
      for (let i = 0; i < n; i++) stored.push((await log.append(msg(channelId, { text: `m${i + 1}` }))).message);

      const placed = await s().client.execute(
        `SELECT bucket, seq FROM ${keyspace}.messages WHERE channel_id = ? AND bucket IN (0, 1, 2, 3)`, [channelId], { prepare: true });
      for (const r of placed.rows) assert.equal(r.get("bucket"), (r.get("seq") as bigint) / BigInt(BUCKET));
      assert.equal(placed.rowLength, n);

      for (const limit of [1, 3, BUCKET, BUCKET + 1, 100]) {
        const back: StoredMessage[] = [];
        for (let anchor = 0n; ; ) {
          const p = await log.page(channelId, { anchorSeq: anchor, direction: "backward", limit });
          if (p.length === 0) break;
          back.push(...p);
          anchor = p[p.length - 1]!.seq;
        }
        assert.deepStrictEqual(back, [...stored].reverse(), `backward, limit ${limit}`);
        const fwd: StoredMessage[] = [];
        for (let anchor = 0n; ; ) {
          const p = await log.page(channelId, { anchorSeq: anchor, direction: "forward", limit });
          if (p.length === 0) break;
          fwd.push(...p);
          anchor = p[p.length - 1]!.seq;
        }
        assert.deepStrictEqual(fwd, stored, `forward, limit ${limit}`);
      }
      // Pages that start or end exactly on a bucket edge.
      const edge = BigInt(BUCKET * 2);
      assert.deepStrictEqual(seqs(await log.page(channelId, { anchorSeq: edge, direction: "backward", limit: BUCKET })),
        range(BUCKET * 2 - 1, BUCKET));
      assert.deepStrictEqual(seqs(await log.page(channelId, { anchorSeq: edge - 1n, direction: "forward", limit: 2 })),
        range(BUCKET * 2, BUCKET * 2 + 1));
      assert.deepStrictEqual((await log.latest([channelId])).get(channelId), stored[n - 1]);
    });

    it("reads an inbox across buckets", async () => {
      const inbox = new CassandraInbox(s().db, BUCKET);
      const u = uniqueId();
      const ms: StoredMessage[] = [];
      for (let i = 0; i < BUCKET * 2 + 5; i++) {
        const m = { ...msg(uniqueId()), seq: BigInt(i + 1) };
        ms.push(m);
        await inbox.append(u, m);
      }
      for (const limit of [1, 5, BUCKET, 1000]) {
        const seen: StoredMessage[] = [];
        for (let after = 0n; ; ) {
          const page = await inbox.readAfter(u, after, limit);
          if (page.length === 0) break;
          seen.push(...page.map((e) => e.message));
          after = page[page.length - 1]!.inboxSeq;
        }
        assert.deepStrictEqual(seen, ms, `limit ${limit}`);
      }
      assert.deepStrictEqual((await inbox.readAfter(u, BigInt(BUCKET - 1), 2)).map((e) => e.inboxSeq), range(BUCKET, BUCKET + 1));
    });

    it("keeps inbox entries for its retention window: reads skip what expired, the newest entry and the seqs stay", async () => {
      const u = uniqueId();
      // Entries that live one second, spread over six buckets.
      const shortLived = new CassandraInbox(s().db, BUCKET, undefined, 1);
      const n = BUCKET * 5 + 3;
      for (let i = 0; i < n; i++) await shortLived.append(u, { ...msg(uniqueId()), seq: 1n });
      const reader = new CassandraInbox(s().db, BUCKET);
      // Waits on the rows themselves: a read through the inbox cannot tell the
      // newest row from the head's copy standing in for it, and the rows were
      // written across a second boundary at times, so the newest may outlive the rest.
      const db = s().db;
      const buckets = Array.from({ length: Number(bucketOf(BigInt(n), BUCKET)) + 1 }, (_, b) => BigInt(b));
      const liveRows = async () =>
        (await Promise.all(buckets.map((b) => db.rows(`SELECT inbox_seq FROM ${db.t("inbox")} WHERE user_id = ? AND bucket = ?`, [u, b])))).flat().length;
      await waitFor(async () => (await liveRows()) === 0, "inbox rows with a one-second TTL to expire", 30_000, 100);
      assert.deepStrictEqual((await reader.readAfter(u, 0n, 3)).map((e) => e.inboxSeq), [BigInt(n)]);
      // Later entries take the next seqs, and reads from any cursor below them
      // skip the expired pages, the newest entry before the silence too once
      // it is no longer the newest (a device below it fills the gap from
      // history, told by expiredThrough).
      const kept = new CassandraInbox(s().db, BUCKET, undefined, 3600);
      const a = await kept.append(u, { ...msg(uniqueId()), seq: 1n });
      const b = await kept.append(u, { ...msg(uniqueId()), seq: 2n });
      assert.deepStrictEqual([a.entry.inboxSeq, b.entry.inboxSeq], [BigInt(n + 1), BigInt(n + 2)]);
      for (const [after, limit] of [[0n, 1], [0n, 2], [0n, 1000], [3n, 1], [BigInt(BUCKET), 5], [BigInt(BUCKET * 3 + 1), 2], [BigInt(n), 1000]] as const) {
        const want = [n + 1, n + 2].map(BigInt).filter((q) => q > after).slice(0, limit);
        assert.deepStrictEqual((await reader.readAfter(u, after, limit)).map((e) => e.inboxSeq), want, `after ${after}, limit ${limit}`);
      }
      assert.equal(await reader.head(u), BigInt(n + 2));
    });

    it("round-trips 64-bit ids above 2^53 exactly", async () => {
      const st = s();
      const big = [2n ** 53n + 1n, 2n ** 62n + 12345n, MAX_INT64 - 7n];
      const [u, c, d] = big as [bigint, bigint, bigint];
      const name = uniqueName("big_");
      await st.accounts.createUser({ userId: u, username: name, displayName: "B", passwordHash: "h", createdAtMs: 1 });
      assert.equal((await st.accounts.findUserByUsername(name))?.userId, u);
      await st.accounts.createDevice({
        userId: u, deviceId: d, name: "n", platform: "cli", createdAtMs: 1, lastSeenAtMs: 1, revoked: false,
      });
      assert.equal((await st.accounts.listDevices(u))[0]?.deviceId, d);
      await st.accounts.addFriendship(u, d, 1);
      assert.deepStrictEqual(await st.accounts.listFriends(u), [d]);
      await st.accounts.putRefreshToken("t-" + name, { userId: u, deviceId: d, expiresAtMs: 2 ** 52 });
      assert.equal(await st.accounts.refreshTokenOwner("t-" + name), u);
      assert.deepStrictEqual(await st.accounts.takeRefreshToken("t-" + name, { atMs: 1, successorHash: "n-" + name }), { record: { userId: u, deviceId: d, expiresAtMs: 2 ** 52 }, reused: false });
      assert.equal(await st.accounts.refreshTokenOwner("t-" + name), u, "a used token is still its user's");
      assert.equal(await st.accounts.refreshTokenOwner("never-" + name), undefined);

      const direct = await st.channels.getOrCreateDirect(
        { channelId: c, kind: "direct", title: "", createdAtMs: 1, createdBy: u }, u, d);
      assert.equal(direct.channelId, c);
      assert.deepStrictEqual((await st.channels.listMemberships(d)).map((r) => r.channelId), [c]);

      const m = { messageId: d, channelId: c, senderUserId: u, senderDeviceId: d, clientMsgId: "x", text: "t", sentAtMs: 1 };
      const stored = (await st.messages.append(m)).message;
      assert.deepStrictEqual(stored, { ...m, seq: 1n });
      assert.equal((await st.channels.advanceReadSeq(c, u, MAX_INT64 - 1n)).readSeq, 1n, "stops at the newest message");
      assert.deepStrictEqual((await st.messages.latest([c])).get(c), stored);
      assert.deepStrictEqual(await st.messages.findByClientMsgId(c, u, d, "x"), stored);
      await st.inbox.append(u, stored);
      assert.deepStrictEqual((await st.inbox.readAfter(u, 0n, 1))[0]?.message, stored);
      await st.inbox.advanceCursor(u, d, MAX_INT64 - 1n);
      assert.equal(await st.inbox.getCursor(u, d), MAX_INT64 - 1n);
    });

    it("creates the inbox tables to expire by day: time-window compaction, a day of grace", async () => {
      for (const table of ["inbox", "inbox_dedup"]) {
        const r = await s().client.execute(
          "SELECT compaction, gc_grace_seconds FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?",
          [keyspace, table],
          { prepare: true },
        );
        const row = r.first();
        assert.match(String(row?.get("compaction")?.class), /TimeWindowCompactionStrategy$/, table);
        assert.equal(row?.get("gc_grace_seconds"), 86_400, table);
      }
    });

    it("applySchema again is harmless: data and the keyspace's bucket size stay", async function () {
      this.timeout(KEYSPACE_TEST_TIMEOUT_MS);
      const st = s();
      const channelId = uniqueId();
      const first = (await st.messages.append(msg(channelId))).message;
      const again = await applySchema(st.client, { keyspace, bucketSize: 1000 });
      assert.equal(again.bucketSize, BUCKET, "an existing keyspace keeps its layout");
      await applySchema(st.client, { keyspace });
      assert.deepStrictEqual(await st.messages.page(channelId, { anchorSeq: 0n, direction: "backward", limit: 5 }), [first]);
    });

    it("upgrades a keyspace of schema 1 in place and refuses one newer than the build", async function () {
      this.timeout(KEYSPACE_TEST_TIMEOUT_MS);
      const st = s();
      const meta = (v: string) =>
        st.client.execute(`UPDATE ${keyspace}.meta SET value = ? WHERE key = 'schema_version'`, [v], { prepare: true });
      const stored = async () =>
        (await st.client.execute(`SELECT value FROM ${keyspace}.meta WHERE key = 'schema_version'`)).first()?.get("value");
      await meta("1");
      await applySchema(st.client, { keyspace });
      assert.equal(await stored(), String(SCHEMA_VERSION));
      await meta(String(SCHEMA_VERSION + 1));
      await assert.rejects(applySchema(st.client, { keyspace }), /newer than this build/);
      await meta(String(SCHEMA_VERSION));
    });

    it("an upgrade that a later build's upgrade overtook (both read the older version) refuses the keyspace, never moves its version back", async function () {
      this.timeout(KEYSPACE_TEST_TIMEOUT_MS);
      const ks = newKeyspace();
      const client = createClient(connection());
      const version = async () =>
        (await client.execute(`SELECT value FROM ${ks}.meta WHERE key = 'schema_version'`)).first()?.get("value") as string;
      try {
        await applySchema(client, { keyspace: ks });
        await client.execute(`UPDATE ${ks}.meta SET value = ? WHERE key = 'schema_version' IF value = ?`, ["7", String(SCHEMA_VERSION)], { prepare: true });
        const later = String(SCHEMA_VERSION + 1);
        // This build's upgrade from 7 has read the version; the later build's lands before it writes.
        let overtaken = false;
        const racing = new Proxy(client, {
          get(target, prop, receiver) {
            if (prop !== "execute") return Reflect.get(target, prop, receiver);
            return async (query: string, params?: unknown[], options?: object) => {
              if (!overtaken && /^UPDATE \S+\.meta SET value/.test(query)) {
                overtaken = true;
                await target.execute(`UPDATE ${ks}.meta SET value = ? WHERE key = 'schema_version' IF value = ?`, [later, "7"], { prepare: true });
              }
              return target.execute(query, params, options);
            };
          },
        });
        await assert.rejects(applySchema(racing, { keyspace: ks }), /newer than this build/);
        assert.ok(overtaken);
        assert.equal(await version(), later);
      } finally {
        await dropKeyspace(client, ks, () => client.shutdown());
      }
    });

    it("upgrades a keyspace of schema 2 to per-device dedup: for a day, a send from before is still caught, by its own device only", async function () {
      this.timeout(KEYSPACE_TEST_TIMEOUT_MS);
      const st = s();
      const cql = (q: string, params: unknown[] = []) => st.client.execute(q, params, { prepare: true });
      const marker = async () =>
        (await cql(`SELECT value FROM ${keyspace}.meta WHERE key = ?`, [DEVICE_DEDUP_SINCE])).first()?.get("value") as string | undefined;
      await cql(`DELETE FROM ${keyspace}.meta WHERE key = ?`, [DEVICE_DEDUP_SINCE]);
      await cql(`UPDATE ${keyspace}.meta SET value = '2' WHERE key = 'schema_version'`);
      const before = Date.now();
      await applySchema(st.client, { keyspace });
      const since = Number(await marker());
      assert.ok(since >= before && since <= Date.now(), `upgrade moment ${since}`);
      await applySchema(st.client, { keyspace });
      assert.equal(Number(await marker()), since, "a later start keeps the moment of the upgrade");

      // Two sends of user's phone, as a build of schema 2 stored them: their
      // dedup rows only in message_dedup, keyed without the device.
      const [channelId, user, phone, web] = [uniqueId(), uniqueId(), uniqueId(), uniqueId()];
      const writer = new CassandraMessageLog(st.db, BUCKET);
      const old = [];
      for (const id of ["1", "2"]) {
        const { message } = await writer.append(msg(channelId, { senderUserId: user, senderDeviceId: phone, clientMsgId: id }));
        old.push(message);
        await cql(`DELETE FROM ${keyspace}.message_dedup_by_device WHERE channel_id = ? AND sender_user_id = ? AND sender_device_id = ? AND client_msg_id = ?`,
          [channelId, user, phone, id]);
        await cql(`INSERT INTO ${keyspace}.message_dedup (channel_id, sender_user_id, client_msg_id, seq, message_id) VALUES (?, ?, ?, ?, ?)`,
          [channelId, user, id, message.seq, message.messageId]);
      }
      const [first, second] = old as [StoredMessage, StoredMessage];

      const log = new CassandraMessageLog(st.db, BUCKET);
      assert.deepStrictEqual(await log.append({ ...first, messageId: uniqueId(), text: "again" }), { message: first, duplicate: true });
      assert.deepStrictEqual(await log.findByClientMsgId(channelId, user, phone, "2"), second);
      assert.equal(await log.findByClientMsgId(channelId, user, web, "2"), undefined, "another device's send under the old key");
      const fromWeb = msg(channelId, { senderUserId: user, senderDeviceId: web, clientMsgId: "1", text: "from the web" });
      assert.deepStrictEqual(await log.append(fromWeb), { message: { ...fromWeb, seq: 3n }, duplicate: false });
      assert.deepStrictEqual(await log.append({ ...fromWeb, messageId: uniqueId() }), { message: { ...fromWeb, seq: 3n }, duplicate: true });
      assert.deepStrictEqual(await new CassandraMessageLog(st.db, BUCKET).append({ ...second, messageId: uniqueId() }),
        { message: second, duplicate: true }, "a cold writer");

      // A day later the old table is no longer read.
      await cql(`UPDATE ${keyspace}.meta SET value = ? WHERE key = ?`, [String(since - LEGACY_DEDUP_WINDOW_MS - 1000), DEVICE_DEDUP_SINCE]);
      const late = new CassandraMessageLog(st.db, BUCKET);
      assert.equal(await late.findByClientMsgId(channelId, user, phone, "2"), undefined);
      assert.deepStrictEqual(await late.findByClientMsgId(channelId, user, web, "1"), { ...fromWeb, seq: 3n });
      assert.deepStrictEqual(seqs(await late.page(channelId, { anchorSeq: 0n, direction: "forward", limit: 10 })), range(1, 3));
    });

    it("adds the columns of schema 4 to a keyspace of schema 3 (two processes at once); again is harmless; old rows take changes", async function () {
      this.timeout(KEYSPACE_TEST_TIMEOUT_MS);
      const ks = newKeyspace();
      const [a, b] = [createClient(connection()), createClient(connection())];
      const cql = (q: string, params: unknown[] = []) => a.execute(q, params, { prepare: true });
      try {
        // The tables a build of schema 3 made, before edits and deletes.
        await a.execute(`CREATE KEYSPACE ${ks} WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`);
        for (const ddl of [
          `meta (key text PRIMARY KEY, value text)`,
          `channels (channel_id bigint, user_id bigint,
             kind text static, title text static, created_at_ms bigint static, created_by bigint static,
             member_count int static, version bigint static,
             role text, joined_at_ms bigint, read_seq bigint, join_order bigint,
             PRIMARY KEY ((channel_id), user_id))`,
          `messages (channel_id bigint, bucket bigint, seq bigint, message_id bigint, sender_user_id bigint,
             sender_device_id bigint, client_msg_id text, text text, sent_at_ms bigint,
             PRIMARY KEY ((channel_id, bucket), seq)) WITH CLUSTERING ORDER BY (seq DESC)`,
          `channel_newest (channel_id bigint PRIMARY KEY, last_seq bigint, message_id bigint, sender_user_id bigint,
             sender_device_id bigint, client_msg_id text, text text, sent_at_ms bigint)`,
          `inbox (user_id bigint, bucket bigint, inbox_seq bigint, message_id bigint, channel_id bigint, seq bigint,
             sender_user_id bigint, sender_device_id bigint, client_msg_id text, text text, sent_at_ms bigint,
             PRIMARY KEY ((user_id, bucket), inbox_seq))`,
          `inbox_newest (user_id bigint PRIMARY KEY, last_seq bigint, message_id bigint, channel_id bigint, seq bigint,
             sender_user_id bigint, sender_device_id bigint, client_msg_id text, text text, sent_at_ms bigint)`,
          // As before the refresh reuse grace.
          `used_refresh_tokens (token_hash text PRIMARY KEY, user_id bigint, device_id bigint, expires_at_ms bigint)`,
        ]) await a.execute(`CREATE TABLE ${ks}.${ddl}`);
        await cql(`INSERT INTO ${ks}.used_refresh_tokens (token_hash, user_id, device_id, expires_at_ms) VALUES ('old', 7, 8, ?)`,
          [BigInt(2 ** 52)]);
        await cql(`INSERT INTO ${ks}.meta (key, value) VALUES ('bucket_size', '8')`);
        await cql(`INSERT INTO ${ks}.meta (key, value) VALUES ('schema_version', '3')`);
        // A message as that build stored it: its row at the clock's timestamp, the head at its seq.
        const old = { ...msg(uniqueId(), { text: "said before the upgrade" }), seq: 1n };
        const cols = "message_id, sender_user_id, sender_device_id, client_msg_id, text, sent_at_ms";
        const values = [old.messageId, old.senderUserId, old.senderDeviceId, old.clientMsgId, old.text, BigInt(old.sentAtMs)];
        await cql(`INSERT INTO ${ks}.messages (channel_id, bucket, seq, ${cols}) VALUES (?, 0, 1, ?, ?, ?, ?, ?, ?)`, [old.channelId, ...values]);
        await cql(`INSERT INTO ${ks}.channel_newest (channel_id, last_seq, ${cols}) VALUES (?, 1, ?, ?, ?, ?, ?, ?) USING TIMESTAMP 1`,
          [old.channelId, ...values]);

        const columns = async () => {
          const r = await cql("SELECT table_name, column_name, type, kind FROM system_schema.columns WHERE keyspace_name = ?", [ks]);
          return new Set(r.rows.map((row) =>
            `${row.get("table_name")}.${row.get("column_name")} ${row.get("type")}${row.get("kind") === "static" ? " static" : ""}`));
        };
        const wanted = Object.entries(ADDED_COLUMNS).flatMap(([t, cs]) => Object.entries(cs).map(([c, type]) => `${t}.${c} ${type}`));
        assert.equal([...await columns()].filter((c) => wanted.includes(c)).length, 0);
        await Promise.all([applySchema(a, { keyspace: ks }), applySchema(b, { keyspace: ks })]);
        const after = await columns();
        for (const c of wanted) assert.ok(after.has(c), `${c} added`);
        await applySchema(a, { keyspace: ks });
        assert.deepStrictEqual(await columns(), after);
        assert.equal((await cql(`SELECT value FROM ${ks}.meta WHERE key = 'schema_version'`)).first()?.get("value"), String(SCHEMA_VERSION));

        const db = new Db(a, ks);
        // A token marked used by that build: a reuse, with no time or successor to grant a retry.
        assert.deepStrictEqual(await new CassandraAccountStore(db).takeRefreshToken("old", { atMs: 1, successorHash: "next" }),
          { record: { userId: 7n, deviceId: 8n, expiresAtMs: 2 ** 52 }, reused: true });
        const log = new CassandraMessageLog(db, 8);
        assert.deepStrictEqual(await log.get(old.channelId, 1n), old);
        const del = msg(old.channelId, { text: "", deleted: true, targetSeq: 1n });
        const deleted = { ...old, text: "", deleted: true };
        assert.deepStrictEqual(await log.amend(del), deleted);
        assert.deepStrictEqual((await log.latest([old.channelId])).get(old.channelId), deleted);
        const texts = await Promise.all([`messages WHERE channel_id = ? AND bucket = 0 AND seq = 1`, `channel_newest WHERE channel_id = ?`]
          .map(async (where) => (await cql(`SELECT text FROM ${ks}.${where}`, [old.channelId])).first()?.get("text")));
        assert.deepStrictEqual(texts, [null, null], "a row written at the clock's timestamp loses its text too");
        // Copies of changes in an inbox that was there before.
        const inbox = new CassandraInbox(db, 8);
        const u = uniqueId();
        const change = { ...del, seq: 0n };
        await inbox.append(u, old);
        await inbox.append(u, change);
        assert.deepStrictEqual(await inbox.readAfter(u, 0n, 10), [{ inboxSeq: 1n, message: old }, { inboxSeq: 2n, message: change }]);
      } finally {
        await dropKeyspace(a, ks, () => Promise.all([a.shutdown(), b.shutdown()]));
      }
    });

    it("changes: the latest wins whatever order the writes land in, and a head or row written again cannot undo one", async () => {
      const cql = (q: string, params: unknown[]) => s().client.execute(q, params, { prepare: true });
      const log = new CassandraMessageLog(s().db, BUCKET);
      const channelId = uniqueId();
      const stored = (await log.append(msg(channelId, { text: "original" }))).message;
      const change = (over: Partial<NewMessage>) => msg(channelId, { text: "edited", targetSeq: 1n, ...over });
      const first = change({ text: "first" });
      const second = change({ text: "second", sentAtMs: first.sentAtMs + 1 });
      const edited = { ...stored, text: "second", editedAtMs: second.sentAtMs };
      assert.deepStrictEqual(await log.amend(second), edited);
      // A writer that decided to apply `first` before `second` landed (it
      // stalled in between) writes its cells last, as amend would have.
      const late = encodeChange({ seq: 1n, changedBy: first.messageId, deleted: false, editedAtMs: first.sentAtMs, text: first.text });
      await cql(`UPDATE ${keyspace}.messages USING TIMESTAMP 1 SET change = ? WHERE channel_id = ? AND bucket = 0 AND seq = 1`, [late, channelId]);
      await cql(`UPDATE ${keyspace}.channel_newest USING TIMESTAMP 1 SET change = ?, text = null WHERE channel_id = ?`, [late, channelId]);
      // A writer that fell behind (its reads made before the message was
      // stored, its writes landing now) writes the row and the head again.
      const stale = Object.create(s().db) as Db;
      stale.one = async () => undefined;
      const behind = new CassandraMessageLog(stale, BUCKET);
      const { seq: _seq, ...record } = stored;
      assert.deepStrictEqual(await behind.append(record), { message: stored, duplicate: false }, "taken for new: its rows are written again");
      for (const reader of [log, new CassandraMessageLog(s().db, BUCKET)]) {
        assert.deepStrictEqual(await reader.get(channelId, 1n), edited);
        assert.deepStrictEqual((await reader.latest([channelId])).get(channelId), edited);
        assert.deepStrictEqual(await reader.page(channelId, { anchorSeq: 0n, direction: "backward", limit: 5 }), [edited]);
      }
      assert.equal(await log.amend(first), undefined);
      // The delete's text is gone from storage, not only from reads.
      const del = change({ text: "", deleted: true });
      assert.deepStrictEqual(await log.amend(del), { ...stored, text: "", deleted: true });
      await new CassandraMessageLog(stale, BUCKET).append(record);
      const texts = await Promise.all([`messages WHERE channel_id = ? AND bucket = 0 AND seq = 1`, `channel_newest WHERE channel_id = ?`]
        .map(async (where) => (await cql(`SELECT text FROM ${keyspace}.${where}`, [channelId])).first()?.get("text")));
      assert.deepStrictEqual(texts, [null, null]);
    });

    it("changes: one refused (a later change came first) keeps its send key, so its resend under a new id is refused too", async () => {
      const log = new CassandraMessageLog(s().db, BUCKET);
      const channelId = uniqueId();
      const stored = (await log.append(msg(channelId, { text: "original" }))).message;
      const phone = msg(channelId, { text: "from the phone", targetSeq: 1n });
      const web = msg(channelId, { text: "from the web", targetSeq: 1n });
      const edited = await log.amend(web); // minted later on another chat server, in the queue first
      assert.equal(await log.amend(phone), undefined);
      assert.equal(await log.amend({ ...phone, messageId: uniqueId() }), undefined, "the phone's resend, minted again");
      assert.deepStrictEqual(await log.get(channelId, 1n), edited);
      assert.equal(await log.findChange(channelId, phone.senderUserId, phone.senderDeviceId, phone.clientMsgId), phone.messageId);
      assert.notDeepEqual(edited, stored);
    });

    it("changes: a head written without a change cell (an older build) does not take the previous newest's change", async () => {
      const log = new CassandraMessageLog(s().db, BUCKET);
      const channelId = uniqueId();
      const m1 = (await log.append(msg(channelId))).message;
      await log.amend(msg(channelId, { text: "", deleted: true, targetSeq: 1n }));
      const m2 = { ...msg(channelId, { text: "from an old build" }), seq: 2n };
      await s().client.execute(
        `INSERT INTO ${keyspace}.channel_newest (channel_id, last_seq, message_id, sender_user_id, sender_device_id, client_msg_id, text, sent_at_ms)
           VALUES (?, 2, ?, ?, ?, ?, ?, ?) USING TIMESTAMP 2`,
        [channelId, m2.messageId, m2.senderUserId, m2.senderDeviceId, m2.clientMsgId, m2.text, BigInt(m2.sentAtMs)], { prepare: true });
      assert.deepStrictEqual((await log.latest([channelId])).get(channelId), m2);
      assert.deepStrictEqual(await log.get(channelId, 1n), { ...m1, text: "", deleted: true });
    });

    it("changes: a head from before schema 2 whose row was never written is carried over and changed", async () => {
      const log = new CassandraMessageLog(s().db, BUCKET);
      const channelId = uniqueId();
      // As in the carry-over test above: the head only in channel_heads, no row.
      const dead = { ...msg(channelId, { text: "orphan" }), seq: 1n };
      await s().client.execute(
        `UPDATE ${keyspace}.channel_heads SET last_seq = ?, message_id = ?, sender_user_id = ?, sender_device_id = ?,
           client_msg_id = ?, text = ?, sent_at_ms = ? WHERE channel_id = ?`,
        [dead.seq, dead.messageId, dead.senderUserId, dead.senderDeviceId, dead.clientMsgId, dead.text, BigInt(dead.sentAtMs), channelId],
        { prepare: true });
      assert.deepStrictEqual(await log.get(channelId, 1n), dead);
      const edit = msg(channelId, { text: "kept", targetSeq: 1n });
      const edited = { ...dead, text: "kept", editedAtMs: edit.sentAtMs };
      assert.deepStrictEqual(await log.amend(edit), edited);
      const reader = new CassandraMessageLog(s().db, BUCKET);
      assert.deepStrictEqual(await reader.get(channelId, 1n), edited);
      assert.deepStrictEqual((await reader.latest([channelId])).get(channelId), edited);
      assert.equal((await reader.append(msg(channelId))).message.seq, 2n);
    });

    it("changes: one that fails fails those queued behind it on its channel, so none overtakes it", async () => {
      const flaky = Object.create(s().db) as Db;
      const log = new CassandraMessageLog(flaky, BUCKET);
      const [c1, c2] = [uniqueId(), uniqueId()];
      const [m1, m2] = [(await log.append(msg(c1))).message, (await log.append(msg(c2))).message];
      let failures = 1;
      const [write, batch] = [flaky.write.bind(flaky), flaky.batch.bind(flaky)];
      // The first write for c1 fails; c2's go through whenever they land.
      const fail = (params: unknown[]) => {
        if (params.includes(c1) && failures-- > 0) throw new Error("cassandra went away");
      };
      flaky.write = async (q, p) => (fail(p), write(q, p));
      flaky.batch = async (st, o) => (fail(st.flatMap((x) => x.params)), batch(st, o));
      const del = msg(c1, { text: "", deleted: true, targetSeq: 1n });
      const edit = msg(c1, { text: "after the delete", targetSeq: 1n });
      const other = msg(c2, { text: "elsewhere", targetSeq: 1n });
      const tries = [log.amend(del), log.amend(edit), log.amend(other)];
      const results = await Promise.allSettled(tries);
      assert.deepStrictEqual(results.map((r) => r.status), ["rejected", "rejected", "fulfilled"]);
      assert.deepStrictEqual(await log.get(c1, 1n), m1);
      // Retried in order, as the pipeline retries its batch.
      assert.deepStrictEqual(await log.amend(del), { ...m1, text: "", deleted: true });
      assert.equal(await log.amend(edit), undefined);
      assert.deepStrictEqual(await log.amend(other), { ...m2, text: "elsewhere", editedAtMs: other.sentAtMs });
    });

    it("changes: a delete of the newest message beside its append in a retried batch keeps the chat list's copy deleted", async () => {
      const flaky = Object.create(s().db) as Db;
      const log = new CassandraMessageLog(flaky, BUCKET);
      const channelId = uniqueId();
      await log.append(msg(channelId, { text: "first" }));
      const second = msg(channelId, { text: "taken back" });
      // The append's head write fails: its row and dedup row are written, the head still says 1.
      let failures = 1;
      const write = flaky.write.bind(flaky);
      flaky.write = async (q, p) => {
        if (q.startsWith("INSERT") && q.includes("channel_newest") && failures-- > 0) throw new Error("cassandra went away");
        return write(q, p);
      };
      await assert.rejects(log.append(second));
      // A chat server found row 2 meanwhile and took its delete; the batch comes again with both, in order.
      const del = msg(channelId, { text: "", deleted: true, targetSeq: 2n });
      const retry = new CassandraMessageLog(s().db, BUCKET);
      const [appended, deleted] = await Promise.all([retry.append(second), retry.amend(del)]);
      assert.equal(appended.message.seq, 2n);
      assert.equal(deleted?.deleted, true);
      const reader = new CassandraMessageLog(s().db, BUCKET);
      const newest = (await reader.latest([channelId])).get(channelId);
      assert.deepStrictEqual([newest?.seq, newest?.text, newest?.deleted], [2n, "", true]);
      assert.deepStrictEqual(newest, await reader.get(channelId, 2n));
    });

    it("two processes applying the schema to a new keyspace at once agree", async function () {
      this.timeout(KEYSPACE_TEST_TIMEOUT_MS);
      const ks = newKeyspace();
      const [a, b] = [createClient(connection()), createClient(connection())];
      try {
        const infos = await Promise.all([
          applySchema(a, { keyspace: ks, bucketSize: 16 }),
          applySchema(b, { keyspace: ks, bucketSize: 32 }),
        ]);
        assert.equal(infos[0].bucketSize, infos[1].bucketSize, "one bucket size wins for both");
        const ids = await a.execute("SELECT table_name, id FROM system_schema.tables WHERE keyspace_name = ?", [ks], { prepare: true });
        assert.equal(ids.rowLength, TABLE_NAMES.length);
        for (const r of ids.rows) assert.equal(String(r.get("id")), tableId(ks, r.get("table_name") as string));
        const upgraded = await a.execute(`SELECT value FROM ${ks}.meta WHERE key = ?`, [DEVICE_DEDUP_SINCE], { prepare: true });
        assert.equal(upgraded.rowLength, 0, "a keyspace created at schema 3 never reads message_dedup");
      } finally {
        await dropKeyspace(a, ks, () => Promise.all([a.shutdown(), b.shutdown()]));
      }
    });

    it("overlapping log writers (a rebalance) give every record its place in the stream, once", async () => {
      // Adapter objects with their own head caches stand for processes. Each
      // consumes the channel's records in stream order from where the group
      // had committed; two replay the same records at the same moment, and a
      // third lags one record behind them.
      const [w1, w2, w3] = [1, 2, 3].map(() => new CassandraMessageLog(s().db, BUCKET));
      const channelId = uniqueId();
      const records = Array.from({ length: 3 * BUCKET + 3 }, (_, i) => msg(channelId, { text: `r${i}` }));
      for (const r of records.slice(0, 3)) await w1!.append(r);
      for (let i = 3; i <= records.length; i++) {
        await Promise.all([
          i < records.length ? w1!.append(records[i]!) : undefined,
          i < records.length ? w2!.append(records[i]!) : undefined,
          w3!.append(records[i - 1]!),
        ]);
      }
      const all = await w3!.page(channelId, { anchorSeq: 0n, direction: "forward", limit: 1000 });
      assert.deepStrictEqual(all, records.map((r, i) => ({ ...r, seq: BigInt(i + 1) })));
      for (const r of records) assert.equal((await w2!.append(r)).duplicate, true);
    });

    it("a writer whose channel was appended to elsewhere (its partition moved away and back) goes on after it", async () => {
      const [a, b] = [new CassandraMessageLog(s().db, BUCKET), new CassandraMessageLog(s().db, BUCKET)];
      const channelId = uniqueId();
      for (let i = 0; i < 3; i++) await a.append(msg(channelId));
      for (let i = 0; i < 4; i++) await b.append(msg(channelId));
      // a's cache still says 3: the stored head (7) is what counts.
      assert.equal((await a.append(msg(channelId))).message.seq, 8n);
      assert.equal(a.stats.overtaken, 1);
      const u = uniqueId();
      const [ia, ib] = [new CassandraInbox(s().db, BUCKET), new CassandraInbox(s().db, BUCKET)];
      await ia.append(u, { ...msg(uniqueId()), seq: 1n });
      await ib.append(u, { ...msg(uniqueId()), seq: 1n });
      assert.equal((await ia.append(u, { ...msg(uniqueId()), seq: 1n })).entry.inboxSeq, 3n);
    });

    it("appends with plain writes only: no lightweight transaction, no serial read", async () => {
      const noPaxos = Object.create(s().db) as Db;
      noPaxos.lwt = () => assert.fail("an append used a lightweight transaction");
      noPaxos.serialOne = () => assert.fail("an append used a serial read");
      const log = new CassandraMessageLog(noPaxos, BUCKET);
      const inbox = new CassandraInbox(noPaxos, BUCKET);
      const [u, d] = [uniqueId(), uniqueId()];
      noPaxos.one = () => assert.fail("a cursor advance read something");
      await inbox.advanceCursor(u, d, 5n);
      delete (noPaxos as { one?: unknown }).one;
      assert.equal(await inbox.getCursor(u, d), 5n);
      const channelId = uniqueId();
      const first = await log.append(msg(channelId));
      await log.append(msg(channelId));
      assert.deepStrictEqual(await log.append(first.message), { message: first.message, duplicate: true });
      await inbox.append(uniqueId(), first.message);
    });

    it("overlapping inbox writers keep inbox seqs gap-free, in stream order, each message once", async () => {
      const [w1, w2] = [new CassandraInbox(s().db, BUCKET), new CassandraInbox(s().db, BUCKET)];
      const u = uniqueId();
      const ms = Array.from({ length: 30 }, (_, i) => ({ ...msg(uniqueId()), seq: BigInt(i + 1) }));
      await Promise.all([
        (async () => { for (const m of ms) await w1.append(u, m); })(),
        (async () => { for (const m of ms) await w2.append(u, m); })(),
      ]);
      const entries = await w1.readAfter(u, 0n, 1000);
      assert.deepStrictEqual(entries, ms.map((message, i) => ({ inboxSeq: BigInt(i + 1), message })));
      assert.equal(await w2.head(u), BigInt(ms.length));
    });

    it("a deleted text stays deleted when a writer that stalled writes its inbox row again later", async () => {
      const [w1, stalled] = [new CassandraInbox(s().db, BUCKET), new CassandraInbox(s().db, BUCKET)];
      const u = uniqueId();
      const m = { ...msg(uniqueId(), { text: "to be deleted" }), seq: 1n };
      const { entry } = await w1.append(u, m);
      await w1.emptyTexts(u, [m.messageId]);
      // The stalled writer found no dedup row before w1 wrote one, and writes the row only now.
      const ops = (stalled as unknown as { ops(): { writeEntry(userId: bigint, e: typeof entry): Promise<void> } }).ops();
      await ops.writeEntry(u, entry);
      const [back] = await w1.readAfter(u, 0n, 10);
      assert.equal(back?.message.text, "", "the text is not back");
    });

    it("a deleted copy's mark expires with its row, never after it (no husk of an entry left)", async () => {
      const inbox = new CassandraInbox(s().db, BUCKET, undefined, 3_600);
      const u = uniqueId();
      const m = { ...msg(uniqueId(), { text: "to be deleted" }), seq: 1n };
      await inbox.append(u, m);
      // The row was written a while ago: a TTL of the full retention on the mark would outlive the row by that long.
      const key = [u, bucketOf(1n, BUCKET), 1n];
      const written = (await s().client.execute(`SELECT WRITETIME(channel_id) AS at FROM ${keyspace}.inbox WHERE user_id = ? AND bucket = ? AND inbox_seq = ?`,
        key, { prepare: true })).first().get("at") as bigint;
      await s().client.execute(`UPDATE ${keyspace}.inbox USING TTL 1000 AND TIMESTAMP ? SET channel_id = ? WHERE user_id = ? AND bucket = ? AND inbox_seq = ?`,
        [written + 1n, m.channelId, ...key], { prepare: true });
      await inbox.emptyTexts(u, [m.messageId], [m.messageId]);
      const r = (await s().client.execute(`SELECT deleted, text, TTL(deleted) AS left FROM ${keyspace}.inbox WHERE user_id = ? AND bucket = ? AND inbox_seq = ?`,
        [u, bucketOf(1n, BUCKET), 1n], { prepare: true })).first();
      assert.deepEqual([r.get("deleted"), r.get("text")], [true, null]);
      const left = r.get("left") as number;
      assert.ok(left > 0 && left <= 1000, `the mark's TTL (${left} s) is within the row's (1000 s)`);
      // Kept forever (no retention), the mark is too.
      const forever = new CassandraInbox(s().db, BUCKET);
      const v = uniqueId();
      await forever.append(v, m);
      await forever.emptyTexts(v, [m.messageId], [m.messageId]);
      const f = (await s().client.execute(`SELECT deleted, TTL(deleted) AS left FROM ${keyspace}.inbox WHERE user_id = ? AND bucket = ? AND inbox_seq = ?`,
        [v, bucketOf(1n, BUCKET), 1n], { prepare: true })).first();
      assert.deepEqual([f.get("deleted"), f.get("left")], [true, null]);
    });

    it("finishes an append whose writer died between its rows and the head", async () => {
      const log = new CassandraMessageLog(s().db, BUCKET);
      const channelId = uniqueId();
      for (let i = 0; i < BUCKET - 1; i++) await log.append(msg(channelId));
      // The writer of seq BUCKET wrote the row and the dedup row, then died.
      const dead = { ...msg(channelId, { text: "orphan" }), seq: BigInt(BUCKET) };
      await s().client.execute(
        `INSERT INTO ${keyspace}.messages (channel_id, bucket, seq, message_id, sender_user_id, sender_device_id,
           client_msg_id, text, sent_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        [channelId, bucketOf(dead.seq, BUCKET), dead.seq, dead.messageId, dead.senderUserId, dead.senderDeviceId, dead.clientMsgId, dead.text,
          BigInt(dead.sentAtMs)],
        { prepare: true });
      await s().client.execute(
        `INSERT INTO ${keyspace}.message_dedup_by_device (channel_id, sender_user_id, sender_device_id, client_msg_id, seq, message_id)
           VALUES (?, ?, ?, ?, ?, ?)`,
        [channelId, dead.senderUserId, dead.senderDeviceId, dead.clientMsgId, dead.seq, dead.messageId],
        { prepare: true });
      // A client's resend of it, ahead of the redelivered record, is not
      // taken for a new message (its head was not written, its seq is taken).
      const heir = new CassandraMessageLog(s().db, BUCKET);
      const { seq: _seq, ...record } = dead;
      assert.deepStrictEqual(await heir.append({ ...record, messageId: uniqueId() }), { message: dead, duplicate: true });
      assert.deepStrictEqual(await heir.append(record), { message: dead, duplicate: true });
      assert.equal((await heir.append(msg(channelId))).message.seq, BigInt(BUCKET + 1));
      assert.deepStrictEqual(seqs(await log.page(channelId, { anchorSeq: 0n, direction: "forward", limit: 100 })), range(1, BUCKET + 1));
    });

    it("a resend whose first copy's rows are not written yet is refused for a retry, not stored again", async () => {
      const channelId = uniqueId();
      const first = { ...msg(channelId), seq: 1n };
      // The first copy's writer has written only the dedup row so far.
      await s().client.execute(
        `INSERT INTO ${keyspace}.message_dedup_by_device (channel_id, sender_user_id, sender_device_id, client_msg_id, seq, message_id)
           VALUES (?, ?, ?, ?, ?, ?)`,
        [channelId, first.senderUserId, first.senderDeviceId, first.clientMsgId, 1n, first.messageId],
        { prepare: true });
      const log = new CassandraMessageLog(s().db, BUCKET);
      const { seq: _seq, ...record } = first;
      await assert.rejects(log.append({ ...record, messageId: uniqueId() }), (e: Error & { code?: string }) => e.code === "unavailable");
      // The first copy itself (redelivered) writes its rows and the head.
      assert.deepStrictEqual(await log.append(record), { message: first, duplicate: true });
      assert.deepStrictEqual(await log.page(channelId, { anchorSeq: 0n, direction: "backward", limit: 5 }), [first]);
    });

    it("carries over a head from before schema 2 whose writer died after winning the seq", async () => {
      const log = new CassandraMessageLog(s().db, BUCKET);
      const channelId = uniqueId();
      for (let i = 0; i < BUCKET - 1; i++) await log.append(msg(channelId));
      // As a keyspace of schema 1 left it: rows and dedup rows, the head only
      // in channel_heads (the newest-entry row taken away at its own stamp, so
      // later heads still win), where a writer won seq BUCKET by the head CAS
      // and died before writing the rows.
      await s().client.execute(`DELETE FROM ${keyspace}.channel_newest USING TIMESTAMP ? WHERE channel_id = ?`,
        [BigInt(BUCKET - 1), channelId], { prepare: true });
      const dead = { ...msg(channelId, { text: "orphan" }), seq: BigInt(BUCKET) };
      await s().client.execute(
        `UPDATE ${keyspace}.channel_heads SET last_seq = ?, message_id = ?, sender_user_id = ?, sender_device_id = ?,
           client_msg_id = ?, text = ?, sent_at_ms = ? WHERE channel_id = ?`,
        [dead.seq, dead.messageId, dead.senderUserId, dead.senderDeviceId, dead.clientMsgId, dead.text, BigInt(dead.sentAtMs), channelId],
        { prepare: true });
      const reader = new CassandraMessageLog(s().db, BUCKET);
      assert.deepStrictEqual((await reader.page(channelId, { anchorSeq: 0n, direction: "backward", limit: 1 }))[0], dead);
      // The Kafka record is redelivered to a new owner: it is found, not stored twice.
      const heir = new CassandraMessageLog(s().db, BUCKET);
      const { seq: _seq, ...record } = dead;
      const redo = await heir.append(record);
      assert.deepStrictEqual(redo, { message: dead, duplicate: true });
      assert.equal(heir.stats.helped, 1, "the heir writes the dead writer's rows from the head");
      const next = await heir.append(msg(channelId));
      assert.equal(next.message.seq, BigInt(BUCKET + 1));
      assert.deepStrictEqual(await reader.findByClientMsgId(channelId, dead.senderUserId, dead.senderDeviceId, dead.clientMsgId), dead);
      const all = await reader.page(channelId, { anchorSeq: 0n, direction: "forward", limit: 100 });
      assert.deepStrictEqual(seqs(all), range(1, BUCKET + 1));
    });

    it("device cursors under concurrent advances end at the largest", async () => {
      const [u, d] = [uniqueId(), uniqueId()];
      const values = Array.from({ length: 60 }, () => BigInt(1 + Math.floor(Math.random() * 10_000)));
      await Promise.all(values.map((v) => s().inbox.advanceCursor(u, d, v)));
      const max = values.reduce((a, b) => (a > b ? a : b));
      assert.equal(await s().inbox.getCursor(u, d), max);
    });

    it("gives a channel's turn (changeInTurn) to one process at a time, by its lease", async () => {
      const st = s();
      let refusals = 0;
      const watching = Object.create(st.db) as Db;
      watching.lwt = async (...args: Parameters<Db["lwt"]>) => {
        const r = await st.db.lwt(...args);
        if (args[0].includes("channel_turns") && args[0].includes("INSERT") && !r.applied) refusals++;
        return r;
      };
      // Two stores are two processes: each has its own line of turns, and only the lease keeps them apart.
      const [one, two] = [0, 1].map(() => new CassandraChannelStore(watching, new CassandraMessageLog(st.db, BUCKET)));
      const id = uniqueId();
      const seen: string[] = [];
      const work = (name: string) => async () => {
        seen.push(`${name} in`);
        // The first in holds its turn until the other has been refused it since (or has wrongly come in).
        if (seen.length === 1) {
          const before = refusals;
          await waitFor(() => refusals > before || seen.length > 1, "the other process refused the turn meanwhile");
        }
        seen.push(`${name} out`);
      };
      await Promise.all([one!.changeInTurn(id, work("a")), two!.changeInTurn(id, work("b"))]);
      assert.deepStrictEqual(seen.map((e) => e.slice(2)), ["in", "out", "in", "out"], seen.join(", "));
      const lease = await st.client.execute(`SELECT holder FROM ${keyspace}.channel_turns WHERE channel_id = ?`, [id], { prepare: true });
      assert.equal(lease.rowLength, 0, "given back");
    });

    it("keeps a channel's turn while its change runs past the lease, so another process's change and note cannot come in between", async function () {
      this.timeout(60_000);
      const st = s();
      const id = uniqueId();
      let refusedTwo!: () => void;
      const twoWaits = new Promise<void>((r) => (refusedTwo = r));
      const watching = Object.create(st.db) as Db;
      watching.lwt = async (...args: Parameters<Db["lwt"]>) => {
        const r = await st.db.lwt(...args);
        if (args[0].includes("channel_turns") && args[0].includes("INSERT") && !r.applied) refusedTwo();
        return r;
      };
      // A 3 s lease, renewed each second (a third of it), with room for a renewal slow on a loaded
      // Cassandra: the default's 10 s, waited out, was most of this test's time.
      const TURN_TTL_S = 3;
      const one = new CassandraChannelStore(st.db, new CassandraMessageLog(st.db, BUCKET), TURN_TTL_S);
      const two = new CassandraChannelStore(watching, new CassandraMessageLog(st.db, BUCKET), TURN_TTL_S);
      const seen: string[] = [];
      let entered!: () => void;
      const oneIn = new Promise<void>((r) => (entered = r));
      let release!: () => void;
      const stalled = new Promise<void>((r) => (release = r));
      const first = one.changeInTurn(id, async () => {
        seen.push("a in");
        entered();
        await stalled;
        seen.push("a out");
      });
      await oneIn;
      // The change stalls past its lease (a store step or a note write slow to answer). A wait of time
      // itself: the lease is a TTL on Cassandra's own clock, which no test clock moves.
      await waitOut(TURN_TTL_S * 1000 + 1_500);
      const second = two.changeInTurn(id, async () => {
        seen.push("b in");
        seen.push("b out");
      });
      await Promise.race([twoWaits, second]);
      release();
      await Promise.all([first, second]);
      assert.deepStrictEqual(seen, ["a in", "a out", "b in", "b out"]);
    });

    it("gives a channel's turn back when taking it timed out after it landed, so the next change need not wait out its lease", async () => {
      const st = s();
      const late = Object.create(st.db) as Db;
      late.lwt = async (...args: Parameters<Db["lwt"]>) => {
        const r = await st.db.lwt(...args);
        if (args[0].includes("channel_turns") && args[0].includes("INSERT")) throw new StorageUnavailable("cassandra write timeout: CAS", true, undefined);
        return r;
      };
      const id = uniqueId();
      let ran = false;
      await assert.rejects(new CassandraChannelStore(late, new CassandraMessageLog(st.db, BUCKET)).changeInTurn(id, async () => {
        ran = true;
      }), { code: "unavailable" });
      assert.equal(ran, false);
      const lease = await st.client.execute(`SELECT holder FROM ${keyspace}.channel_turns WHERE channel_id = ?`, [id], { prepare: true });
      assert.equal(lease.rowLength, 0, "given back");
    });

    it("a place written whole by an older build (INSERT, with its row marker) is no place once a change clears its settings", async () => {
      const st = s();
      const [u, c] = [uniqueId(), uniqueId()];
      await st.client.execute(`INSERT INTO ${keyspace}.channel_places (user_id, channel_id, pinned_at_ms, archived_at_ms, marked_unread_at_ms) VALUES (?, ?, ?, null, null)`,
        [u, c, 1_767_229_200_000n], { prepare: true });
      const channels = new CassandraChannelStore(st.db, new CassandraMessageLog(st.db, BUCKET));
      assert.deepStrictEqual(await channels.listPlaces(u), new Map([[c, { pinnedAtMs: 1_767_229_200_000 }]]));
      await channels.changePlace(u, c, { pinnedAtMs: null });
      const rows = await st.client.execute(`SELECT channel_id FROM ${keyspace}.channel_places WHERE user_id = ?`, [u], { prepare: true });
      assert.equal(rows.rowLength, 1, "the row stays, every setting null");
      assert.deepStrictEqual(await channels.listPlaces(u), new Map());
    });

    /** The storage as a process whose clock is an hour ahead (or behind) reaches it: every request stamped so by its client. */
    const aheadDb = (byMs = 3_600_000): Db => {
      const st = s();
      const stamp = () => cassandra.types.Long.fromString(String(BigInt(Date.now() + byMs) * 1000n));
      const client = Object.create(st.client, {
        execute: { value: (q: string, p?: unknown[], o: cassandra.QueryOptions = {}) => st.client.execute(q, p, { ...o, timestamp: stamp() }) },
        batch: { value: (qs: Statement[], o: cassandra.QueryOptions = {}) => st.client.batch(qs, { ...o, timestamp: stamp() }) },
      }) as cassandra.Client;
      return Object.create(st.db, { client: { value: client } }) as Db;
    };

    // Its user row is written in a logged batch with the search rows (no
    // Paxos round): stamped by its clock, it outranked the compare-and-sets
    // that change or delete the account, for the hour.
    it("an account created by a process whose clock is an hour ahead takes changes and its deletion from this one at once", async () => {
      const ahead = new CassandraAccountStore(aheadDb());
      const here = new CassandraAccountStore(s().db);
      const u = { userId: uniqueId(), username: uniqueName("skew"), displayName: "Before", passwordHash: "old-hash", createdAtMs: 1 };
      await ahead.createUser(u);
      await here.updatePasswordHash(u.userId, "new-hash");
      await here.updateDisplayName(u.userId, "After");
      assert.deepStrictEqual(await here.getUser(u.userId), { ...u, displayName: "After", passwordHash: "new-hash" });
      await here.deleteUser(u.userId);
      assert.equal(await here.findUserByUsername(u.username), undefined);
      assert.deepStrictEqual(await here.searchUsers(u.username, 10), []);
    });

    // A friendship's first row was a compare-and-set, stamped with its Paxos ballot (the
    // node's clock), and every other write of it with the client's: a process whose clock
    // was behind could not take away that row, so one of the two still had the other as a
    // friend; one whose clock was ahead made rows no unfriending here could take away.
    it("a friendship ends on both sides whichever process made it and whichever ends it, their clocks an hour apart", async () => {
      const here = new CassandraAccountStore(s().db);
      for (const [maker, ender] of [
        [here, new CassandraAccountStore(aheadDb(-3_600_000))],
        [new CassandraAccountStore(aheadDb()), here],
      ] as const) {
        const [a, b] = [uniqueId(), uniqueId()];
        await maker.addFriendship(a, b, 1_767_225_600_000);
        assert.equal(await here.areFriends(a, b), true);
        await ender.removeFriendship(a, b);
        assert.deepStrictEqual([await here.areFriends(a, b), await here.areFriends(b, a)], [false, false]);
        assert.deepStrictEqual([await here.listFriends(a), await here.listFriends(b)], [[], []]);
        await ender.addFriendship(b, a, 1_767_229_200_000);
        assert.deepStrictEqual([await here.listFriends(a), await here.listFriends(b)], [[b], [a]], "and can begin again");
      }
    });

    // A block's and a friend request's rows were plain writes, stamped by the writing
    // process's clock: an unblock from one whose clock was ahead left a later block here
    // with no effect for the hour (its tombstone outranked it), and a block made there
    // outlived every unblock from here; one whose clock was behind could unblock nothing.
    const skewed = () => {
      const here = new CassandraAccountStore(s().db);
      const [ahead, behind] = [new CassandraAccountStore(aheadDb()), new CassandraAccountStore(aheadDb(-3_600_000))];
      return { here, pairs: [[ahead, here], [here, ahead], [behind, here], [here, behind]] as const };
    };

    it("a block takes effect and ends whichever process makes it and whichever ends it, their clocks an hour apart", async () => {
      const { here, pairs } = skewed();
      const seen = async (a: bigint, b: bigint) => [
        await here.blockersBetween(a, b), (await here.listBlocks(a)).map((x) => x.userId),
        await here.listBlockers(b, { limit: 10 }), await here.blockersAmong(b, [a]),
      ];
      for (const [i, [one, other]] of pairs.entries()) {
        const [a, b] = [uniqueId(), uniqueId()];
        await one.putBlock(a, b, 1_767_225_600_000);
        assert.deepStrictEqual(await seen(a, b), [[a], [b], [a], [a]], `pair ${i}: blocked`);
        await other.deleteBlock(a, b);
        assert.deepStrictEqual(await seen(a, b), [[], [], [], []], `pair ${i}: unblocked`);
        await one.putBlock(a, b, 1_767_229_200_000);
        assert.deepStrictEqual(await seen(a, b), [[a], [b], [a], [a]], `pair ${i}: blocked again`);
        assert.deepStrictEqual((await here.listBlocks(a)).map((x) => x.atMs), [1_767_229_200_000], `pair ${i}: the new block's time`);
        await other.putBlock(a, b, 1_767_232_800_000);
        assert.deepStrictEqual((await here.listBlocks(a)).map((x) => x.atMs), [1_767_229_200_000], `pair ${i}: blocking again keeps the first time`);
        await one.deleteBlock(a, b);
        assert.deepStrictEqual(await seen(a, b), [[], [], [], []], `pair ${i}: unblocked by its maker`);
      }
    });

    /** The storage as seen by a store whose compare-and-sets run `before` first (awaited), for a chosen interleaving. */
    const interleaved = (before: (query: string) => Promise<void>): Db => {
      const db = s().db;
      return Object.create(db, { lwt: { value: async (q: string, p: unknown[]) => (await before(q), db.lwt(q, p as never)) } }) as Db;
    };
    const indexed = async (here: CassandraAccountStore, a: bigint, b: bigint) =>
      [await here.blockersBetween(a, b), await here.listBlockers(b, { limit: 10 }), await here.blockersAmong(b, [a])];

    // Blocks and blockers rows are two partitions, which no Paxos round spans: each
    // interleaving here once ended with the block in place and its `blockers` row gone,
    // so the blocked user could add the blocker to a group and see their presence.
    it("a block racing an unblock leaves the blockers index as the block ends, in either interleaving", async () => {
      const here = new CassandraAccountStore(s().db);
      {
        // The unblock runs whole between the block's index row and its block row.
        const [a, b] = [uniqueId(), uniqueId()];
        await here.putBlock(a, b, 1_767_225_600_000);
        let once = true;
        const blocking = new CassandraAccountStore(interleaved(async (q) => {
          if (once && q.startsWith(`INSERT INTO ${keyspace}.blocks `)) (once = false), await here.deleteBlock(a, b);
        }));
        await blocking.putBlock(a, b, 1_767_229_200_000);
        assert.equal(once, false, "interleaved");
        assert.deepStrictEqual(await indexed(here, a, b), [[a], [a], [a]], "the block holds, indexed");
      }
      {
        // The block runs whole between the unblock's block row and its index row.
        const [a, b] = [uniqueId(), uniqueId()];
        await here.putBlock(a, b, 1_767_225_600_000);
        let once = true;
        const unblocking = new CassandraAccountStore(interleaved(async (q) => {
          if (once && q.startsWith(`DELETE FROM ${keyspace}.blockers `)) (once = false), await here.putBlock(a, b, 1_767_229_200_000);
        }));
        await unblocking.deleteBlock(a, b);
        assert.equal(once, false, "interleaved");
        assert.deepStrictEqual(await indexed(here, a, b), [[a], [a], [a]], "the block holds, indexed");
      }
    });

    it("a block or unblock cut short between its two rows leaves the blockers index refusing more, never less", async () => {
      const here = new CassandraAccountStore(s().db);
      const failing = (what: string) => new CassandraAccountStore(interleaved(async (q) => {
        if (q.startsWith(what)) throw new Error("cut short");
      }));
      const [a, b] = [uniqueId(), uniqueId()];
      await assert.rejects(failing(`INSERT INTO ${keyspace}.blocks `).putBlock(a, b, 1_767_225_600_000), /cut short/);
      assert.deepStrictEqual(await indexed(here, a, b), [[], [a], [a]], "indexed, not blocked");
      await here.putBlock(a, b, 1_767_225_600_000);
      await assert.rejects(failing(`DELETE FROM ${keyspace}.blockers `).deleteBlock(a, b), /cut short/);
      assert.deepStrictEqual(await indexed(here, a, b), [[], [a], [a]], "unblocked, still indexed");
      await here.deleteBlock(a, b);
      assert.deepStrictEqual(await indexed(here, a, b), [[], [], []]);
    });

    // The two sides of a request are two partitions since their writes became Paxos
    // rounds: one left with the sender's row alone was never shown to the recipient,
    // and a resend (which writes only when the sender's row is missing) never mended it.
    it("a friend request cut short between its two rows never leaves the sender's side alone", async () => {
      const here = new CassandraAccountStore(s().db);
      // Fails the write of one side; once the writes sent beside it (if any) are done, so what they left is there to see.
      const cutShort = (query: string, outgoing: boolean) => {
        const db = s().db;
        const sent = new Set<Promise<unknown>>();
        return new CassandraAccountStore(Object.create(db, { lwt: { value: async (q: string, p: unknown[]) => {
          if (q.startsWith(query) && p.includes(outgoing)) {
            await null;
            await Promise.allSettled([...sent]);
            throw new Error("cut short");
          }
          const run = db.lwt(q, p as never);
          sent.add(run);
          return run;
        } } }) as Db);
      };
      const [a, b] = [uniqueId(), uniqueId()];
      await assert.rejects(cutShort(`INSERT INTO ${keyspace}.friend_requests `, false).putFriendRequest(a, b, 1_767_225_600_000), /cut short/);
      assert.equal(await here.hasFriendRequest(a, b), false, "not sent: a resend writes it whole");
      await here.putFriendRequest(a, b, 1_767_229_200_000);
      assert.deepStrictEqual([(await here.listFriendRequests(a)).length, (await here.listFriendRequests(b)).length], [1, 1]);
      await assert.rejects(cutShort(`DELETE FROM ${keyspace}.friend_requests `, true).deleteFriendRequest(a, b), /cut short/);
      assert.deepStrictEqual([await here.hasFriendRequest(a, b), (await here.listFriendRequests(a)).length, (await here.listFriendRequests(b)).length],
        [true, 1, 1], "nothing taken: withdrawing again takes it whole");
    });

    // A friendship's two rows are two partitions, which no Paxos round spans: an unfriending
    // that ran between them (the other user unfriending as the request was accepted) left one
    // user with the other as a friend and not the other way round, which no logged batch did.
    it("a friendship made and ended at once ends on both sides or on neither, in either interleaving", async () => {
      const here = new CassandraAccountStore(s().db);
      const sides = async (a: bigint, b: bigint) => [await here.areFriends(a, b), await here.areFriends(b, a)];
      {
        // The unfriending runs whole between the friendship's two rows.
        const [a, b] = [uniqueId(), uniqueId()];
        let inserts = 0;
        const making = new CassandraAccountStore(interleaved(async (q) => {
          if (q.startsWith(`INSERT INTO ${keyspace}.friendships `) && ++inserts === 2) await here.removeFriendship(a, b);
        }));
        await making.addFriendship(a, b, 1_767_225_600_000);
        assert.equal(inserts, 2, "interleaved");
        assert.deepStrictEqual(await sides(a, b), [false, false], "ended on both sides");
      }
      {
        // The friendship is made whole between the unfriending's two rows (a's, the lower, is its
        // second delete: the first takes b's, so that the asker's goes last).
        const [a, b] = [uniqueId(), uniqueId()];
        await here.addFriendship(a, b, 1_767_225_600_000);
        let deletes = 0;
        const ending = new CassandraAccountStore(interleaved(async (q) => {
          if (q.startsWith(`DELETE FROM ${keyspace}.friendships `) && ++deletes === 3) await here.addFriendship(b, a, 1_767_229_200_000);
        }));
        await ending.removeFriendship(a, b);
        assert.equal(deletes, 3, "interleaved");
        assert.deepStrictEqual(await sides(a, b), [true, true], "made again on both sides");
      }
      {
        // Made whole after the asker's first delete (b's row), before a's: the unfriending lands after it.
        const [a, b] = [uniqueId(), uniqueId()];
        await here.addFriendship(a, b, 1_767_225_600_000);
        let deletes = 0;
        const ending = new CassandraAccountStore(interleaved(async (q) => {
          if (q.startsWith(`DELETE FROM ${keyspace}.friendships `) && ++deletes === 2) await here.addFriendship(b, a, 1_767_229_200_000);
        }));
        await ending.removeFriendship(a, b);
        assert.equal(deletes, 3, "interleaved");
        assert.deepStrictEqual(await sides(a, b), [false, false], "ended on both sides");
      }
    });

    // An account's deletion reads its own friendship rows alone: one cut short after the
    // asker's row left the other's row, naming a deleted account, where no retry found it.
    it("an unfriending cut short after its first row leaves the asker's row, whichever id is the lower", async () => {
      const here = new CassandraAccountStore(s().db);
      for (const lower of [true, false]) {
        const [lo, hi] = [uniqueId(), uniqueId()];
        const [asker, other] = lower ? [lo, hi] : [hi, lo];
        await here.addFriendship(lo, hi, 1_767_225_600_000);
        let deletes = 0;
        const failing = new CassandraAccountStore(interleaved(async (q) => {
          if (q.startsWith(`DELETE FROM ${keyspace}.friendships `) && ++deletes === 2) throw new Error("cut short");
        }));
        await assert.rejects(failing.removeFriendship(asker, other), /cut short/);
        assert.deepStrictEqual(await here.listFriends(asker), [other], `asker's row kept (asker ${lower ? "lower" : "higher"})`);
        await here.removeFriendship(asker, other);
        assert.deepStrictEqual([await here.listFriends(asker), await here.listFriends(other)], [[], []]);
      }
    });

    // The same two partitions: a withdrawal or decline that ran between a request's two rows
    // (the recipient declining it at once) took the recipient's row and left the sender's
    // alone, pending on their list for good, and a resend (it writes only when that row is
    // missing) never mended it.
    it("a friend request withdrawn between its two rows, or sent between a withdrawal's, leaves no sender's row alone", async () => {
      const here = new CassandraAccountStore(s().db);
      const [a, b] = [uniqueId(), uniqueId()];
      let inserts = 0;
      const asking = new CassandraAccountStore(interleaved(async (q) => {
        if (q.startsWith(`INSERT INTO ${keyspace}.friend_requests `) && ++inserts === 2) await here.deleteFriendRequest(a, b);
      }));
      await asking.putFriendRequest(a, b, 1_767_225_600_000);
      assert.equal(inserts, 2, "interleaved");
      assert.deepStrictEqual([await here.hasFriendRequest(a, b), (await here.listFriendRequests(a)).length, (await here.listFriendRequests(b)).length],
        [false, 0, 0]);
      // The send runs whole between the withdrawal's two rows: its read found the recipient's row still there.
      const [c, d] = [uniqueId(), uniqueId()];
      let deletes = 0;
      const withdrawing = new CassandraAccountStore(interleaved(async (q) => {
        if (q.startsWith(`DELETE FROM ${keyspace}.friend_requests `) && ++deletes === 2) await here.putFriendRequest(c, d, 1_767_225_600_000);
      }));
      await withdrawing.deleteFriendRequest(c, d);
      assert.ok(deletes >= 2, "interleaved");
      assert.deepStrictEqual([await here.hasFriendRequest(c, d), (await here.listFriendRequests(c)).length], [false, 0], "the sender's row not left alone");
    });

    it("a friend request ends on both sides whichever process made it and whichever ends it, their clocks an hour apart", async () => {
      const { here, pairs } = skewed();
      const seen = async (a: bigint, b: bigint) => [
        await here.hasFriendRequest(a, b), (await here.listFriendRequests(a)).length, (await here.listFriendRequests(b)).length,
      ];
      for (const [i, [one, other]] of pairs.entries()) {
        const [a, b] = [uniqueId(), uniqueId()];
        await one.putFriendRequest(a, b, 1_767_225_600_000);
        assert.deepStrictEqual(await seen(a, b), [true, 1, 1], `pair ${i}: asked`);
        await other.deleteFriendRequest(a, b);
        assert.deepStrictEqual(await seen(a, b), [false, 0, 0], `pair ${i}: withdrawn`);
        await one.putFriendRequest(a, b, 1_767_229_200_000);
        assert.deepStrictEqual(await here.listFriendRequests(b), [{ fromUserId: a, toUserId: b, atMs: 1_767_229_200_000 }], `pair ${i}: asked again`);
        await other.putFriendRequest(a, b, 1_767_232_800_000);
        assert.deepStrictEqual(await here.listFriendRequests(a), [{ fromUserId: a, toUserId: b, atMs: 1_767_232_800_000 }], `pair ${i}: asking again moves its time`);
        await one.putFriendRequest(b, a, 1_767_232_800_001);
        await other.addFriendship(b, a, 1_767_236_400_000);
        assert.deepStrictEqual([await seen(a, b), await here.hasFriendRequest(b, a)], [[false, 0, 0], false], `pair ${i}: taken up`);
        await other.removeFriendship(a, b);
        await one.putFriendRequest(b, a, 1_767_240_000_000);
        assert.deepStrictEqual([await here.hasFriendRequest(b, a), (await here.listFriendRequests(a)).length], [true, 1], `pair ${i}: asked after`);
      }
    });

    it("a refresh token stored by a process whose clock is an hour ahead is taken once, and a sign-out here drops it", async () => {
      const ahead = new CassandraAccountStore(aheadDb());
      const here = new CassandraAccountStore(s().db);
      const rec = { userId: uniqueId(), deviceId: uniqueId(), expiresAtMs: Date.now() + 3_600_000 };
      const use = () => ({ atMs: Date.now(), successorHash: uniqueName("succ-") });
      const taken = uniqueName("tok-");
      await ahead.putRefreshToken(taken, rec);
      assert.equal((await here.takeRefreshToken(taken, use()))?.reused, false);
      assert.equal((await here.takeRefreshToken(taken, use()))?.reused, true);
      const signedOut = uniqueName("tok-");
      await ahead.putRefreshToken(signedOut, rec);
      await here.revokeDevice(rec.userId, rec.deviceId);
      assert.equal((await here.takeRefreshToken(signedOut, use()))?.reused, true);
    });

    describe("membership changed by a process whose clock is an hour ahead", () => {
      const stores = () => {
        const log = new CassandraMessageLog(s().db, BUCKET);
        return { here: new CassandraChannelStore(s().db, log), ahead: new CassandraChannelStore(aheadDb(), log) };
      };
      const group = async (store: CassandraChannelStore, others: number) => {
        const c: ChannelRecord = { channelId: uniqueId(), kind: "group", title: "g", createdAtMs: 1_767_225_600_000, createdBy: uniqueId() };
        const m = (userId: bigint, role: MemberRecord["role"] = "member"): MemberRecord =>
          ({ channelId: c.channelId, userId, role, joinedAtMs: c.createdAtMs, readSeq: 0n });
        await store.createGroup(c, [m(c.createdBy, "owner"), ...Array.from({ length: others }, () => m(uniqueId()))]);
        return { g: c.channelId, owner: c.createdBy, newcomer: () => m(uniqueId()) };
      };

      // Every write of a member row is a Paxos round, stamped with its ballot,
      // which is above every earlier round's on the partition whatever the clocks.
      it("a removal after its add takes the member out, from the group and the member's list", async () => {
        const { here, ahead } = stores();
        const { g, owner, newcomer } = await group(here, 0);
        const x = newcomer();
        for (let round = 0; round < 2; round++) {
          assert.deepStrictEqual(await ahead.addMembers(g, [x], 100), [x.userId]);
          assert.deepStrictEqual(await here.removeMember(g, x.userId), { removed: true });
          assert.equal(await here.getMember(g, x.userId), undefined);
          assert.deepStrictEqual((await here.listMembers(g)).map((m) => m.userId), [owner]);
          assert.equal(await here.memberCount(g), 1);
          assert.deepStrictEqual(await here.listMemberships(x.userId), []);
        }
      });

      // Its direct chat's rows are written before the pair's claim, without a
      // Paxos round: stamped by its clock, they outranked this process's
      // compare-and-sets of the same cells for the hour.
      it("a direct chat it opened takes read positions from this process at once", async () => {
        const { here, ahead } = stores();
        const [a, b] = [uniqueId(), uniqueId()];
        const c = await ahead.getOrCreateDirect({ channelId: uniqueId(), kind: "direct", title: "", createdAtMs: 1, createdBy: a }, a, b);
        await new CassandraMessageLog(s().db, BUCKET).append(msg(c.channelId, { senderUserId: a }));
        assert.equal((await here.advanceReadSeq(c.channelId, b, 1n)).readSeq, 1n);
        assert.equal((await here.getMember(c.channelId, b))?.readSeq, 1n);
        // And a loser's candidate it deletes is gone for good.
        const [x, y] = [uniqueId(), uniqueId()];
        const won = await here.getOrCreateDirect({ channelId: uniqueId(), kind: "direct", title: "", createdAtMs: 1, createdBy: x }, x, y);
        const lost = uniqueId();
        assert.equal((await ahead.getOrCreateDirect({ channelId: lost, kind: "direct", title: "", createdAtMs: 1, createdBy: y }, y, x)).channelId, won.channelId);
        assert.equal(await here.getChannel(lost), undefined);
      });

      it("adds racing from it and from this process never take a group past its limit", async () => {
        const { here, ahead } = stores();
        const { g, newcomer } = await group(here, 96);
        const racers = Array.from({ length: 8 }, (_, i) => (i % 2 ? here : ahead).addMembers(g, [newcomer(), newcomer()], 100));
        const results = await Promise.allSettled(racers);
        assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
        for (const r of results) if (r.status === "rejected") assert.equal((r.reason as { code?: string }).code, "group_full");
        assert.equal((await here.listMembers(g)).length, 99);
        assert.equal(await here.memberCount(g), 99);
      });
    });

    describe("invite codes in the channel partition (schema 8)", () => {
      /** A Db that runs `hook` once, just before its next conditional batch goes out: another change lands in between. */
      class HookedDb extends Db {
        hook?: () => Promise<unknown>;
        override async batch(statements: Statement[], o: { logged: boolean; conditional?: boolean }) {
          const hook = o.conditional ? this.hook : undefined;
          if (hook) this.hook = undefined;
          await hook?.();
          return super.batch(statements, o);
        }
      }
      const code = () => uniqueName("code");
      const managerCheck = (by: bigint): MembershipCheck => (ms) => {
        const mine = ms.find((m) => m.userId === by);
        if (!mine) throw new ChatError("not_a_member", "not a member");
        if (mine.role === "member") throw new ChatError("permission_denied", "not a manager");
      };
      const stores = () => {
        const st = s();
        const log = new CassandraMessageLog(st.db, BUCKET);
        const hooked = new HookedDb(st.client, keyspace);
        return { plain: new CassandraChannelStore(st.db, log), racing: new CassandraChannelStore(hooked, log), hooked };
      };
      const group = async (store: CassandraChannelStore, others = 2) => {
        const c: ChannelRecord = { channelId: uniqueId(), kind: "group", title: "g", createdAtMs: 1_767_225_600_000, createdBy: uniqueId() };
        const m = (userId: bigint, role: MemberRecord["role"], i: number): MemberRecord =>
          ({ channelId: c.channelId, userId, role, joinedAtMs: c.createdAtMs + i, readSeq: 0n });
        const members = [m(c.createdBy, "owner", 0), ...Array.from({ length: others }, (_, i) => m(uniqueId(), "member", i + 1))];
        await store.createGroup(c, members);
        return { g: c.channelId, users: members.map((x) => x.userId), joiner: () => m(uniqueId(), "member", 100) };
      };
      const stored = async (g: bigint) =>
        (await s().client.execute(`SELECT invite_code FROM ${keyspace}.channels WHERE channel_id = ? LIMIT 1`, [g], { prepare: true }))
          .first()?.get("invite_code") as string | null | undefined;
      /** A code as a build before schema 8 made it: named in channel_invites alone. */
      const legacyCode = async (g: bigint) => {
        const c = code();
        await s().client.execute(`INSERT INTO ${keyspace}.invite_codes (code, channel_id) VALUES (?, ?)`, [c, g], { prepare: true });
        await s().client.execute(`INSERT INTO ${keyspace}.channel_invites (channel_id, code) VALUES (?, ?)`, [g, c], { prepare: true });
        return c;
      };

      it("a join planned on a code that is reset or revoked before its batch lands loses the fence and adds nobody", async () => {
        const { plain, racing, hooked } = stores();
        const { g, joiner } = await group(plain);
        const first = code();
        await plain.setInviteCode(g, first);
        let second = "";
        hooked.hook = async () => plain.setInviteCode(g, (second = code()));
        await rejectsWith(racing.addMembers(g, [joiner()], 100, undefined, first), "not_found", "invite link does not work");
        assert.notEqual(second, "", "the reset landed between the join's read and its batch");
        hooked.hook = () => plain.setInviteCode(g, undefined);
        await rejectsWith(racing.addMembers(g, [joiner()], 100, undefined, second), "not_found");
        assert.equal(await plain.memberCount(g), 3);
        assert.equal((await plain.listMembers(g)).length, 3);
      });

      it("a bar an older build made (no time in barred_at) is the first one the bar past MAX_BARS lifts", async () => {
        const { plain } = stores();
        const { g, users } = await group(plain, 1);
        const [legacy, ...timed] = Array.from({ length: MAX_BARS }, () => uniqueId());
        // MAX_BARS bars: one as an older build writes it (the set alone), the rest with when, from 1 on.
        const when = timed.map((id, i) => `${id}: ${i + 1}`).join(", ");
        await s().client.execute(`UPDATE ${keyspace}.channels SET barred = barred + ?, barred_at = barred_at + {${when}} WHERE channel_id = ?`,
          [[legacy!, ...timed], g], { prepare: true });
        assert.deepStrictEqual(await plain.removeMember(g, users[1]!, undefined, true), { removed: true });
        assert.deepStrictEqual(
          await Promise.all([legacy!, timed[0]!, users[1]!].map((id) => plain.isBarred(g, id))),
          [false, true, true],
        );
      });

      it("a join planned before a removal that bars the joiner lands loses the fence and is refused", async () => {
        const { plain, racing, hooked } = stores();
        const { g, users } = await group(plain);
        const link = code();
        await plain.setInviteCode(g, link);
        const x: MemberRecord = { channelId: g, userId: users[1]!, role: "member", joinedAtMs: 2, readSeq: 0n };
        await plain.removeMember(g, x.userId); // x left: neither in nor barred when the join reads
        let barred = false;
        hooked.hook = async () => {
          await plain.addMembers(g, [x], 100);
          barred = (await plain.removeMember(g, x.userId, undefined, true)).removed;
        };
        await rejectsWith(racing.addMembers(g, [x], 100, undefined, link), "permission_denied", "an admin removed you");
        assert.ok(barred, "the add back and the removal landed between the join's read and its batch");
        assert.equal(await plain.getMember(g, x.userId), undefined);
        assert.equal(await plain.memberCount(g), 2);
      });

      it("a reset, a revocation or a first claim by an admin removed or demoted before its batch lands is refused", async () => {
        const { plain, racing, hooked } = stores();
        const { g, users } = await group(plain);
        const [owner, x] = [users[0]!, users[1]!];
        await plain.setRole(g, x, "admin");
        const lockout = code();
        // x resets; the owner removes x and resets the link to lock x out before x's batch lands.
        hooked.hook = async () => {
          await plain.removeMember(g, x);
          await plain.setInviteCode(g, lockout, managerCheck(owner));
        };
        const xs = code();
        await rejectsWith(racing.setInviteCode(g, xs, managerCheck(x)), "not_a_member");
        assert.equal(await plain.inviteCodeOf(g), lockout);
        assert.equal(await plain.channelOfInvite(xs), undefined);
        await rejectsWith(plain.addMembers(g, [{ channelId: g, userId: x, role: "member", joinedAtMs: 1, readSeq: 0n }], 100, undefined, xs), "not_found");

        // Back in as an admin, then demoted while revoking.
        await plain.addMembers(g, [{ channelId: g, userId: x, role: "member", joinedAtMs: 2, readSeq: 0n }], 100);
        await plain.setRole(g, x, "admin");
        hooked.hook = () => plain.setRole(g, x, "member");
        await rejectsWith(racing.setInviteCode(g, undefined, managerCheck(x)), "permission_denied");
        assert.equal(await plain.inviteCodeOf(g), lockout);

        // A group with no code: x's first claim, removed before it lands, makes none.
        await plain.setRole(g, x, "admin");
        await plain.setInviteCode(g, undefined);
        hooked.hook = () => plain.removeMember(g, x);
        const claimed = code();
        await rejectsWith(racing.claimInviteCode(g, claimed, managerCheck(x)), "not_a_member");
        assert.equal(await plain.inviteCodeOf(g), undefined);
        assert.equal(await plain.channelOfInvite(claimed), undefined);
        assert.equal(await stored(g), "", "taken away, not unknown");
      });

      it("a code made before schema 8 keeps working; the first claim carries it over, and a reset or revocation stops it", async () => {
        const { plain, racing, hooked } = stores();
        // Joined by, then carried over by a claim.
        const a = await group(plain);
        const la = await legacyCode(a.g);
        assert.equal(await stored(a.g), null);
        assert.equal(await plain.inviteCodeOf(a.g), la);
        assert.equal(await plain.channelOfInvite(la), a.g);
        const j = a.joiner();
        assert.deepStrictEqual(await plain.addMembers(a.g, [j], 100, undefined, la), [j.userId]);
        assert.equal(await plain.claimInviteCode(a.g, code(), managerCheck(a.users[0]!)), la);
        assert.equal(await stored(a.g), la);
        assert.equal(await plain.channelOfInvite(la), a.g);
        // Reset: the old code stops, for joins too, and the older builds' table follows.
        const b = await group(plain);
        const lb = await legacyCode(b.g);
        const nb = code();
        await plain.setInviteCode(b.g, nb);
        assert.equal(await plain.channelOfInvite(lb), undefined);
        assert.equal(await plain.channelOfInvite(nb), b.g);
        await rejectsWith(plain.addMembers(b.g, [b.joiner()], 100, undefined, lb), "not_found");
        const legacyRow = await s().client.execute(`SELECT code FROM ${keyspace}.channel_invites WHERE channel_id = ?`, [b.g], { prepare: true });
        assert.equal(legacyRow.first()?.get("code"), nb);
        // Revoked.
        const c = await group(plain);
        const lc = await legacyCode(c.g);
        await plain.setInviteCode(c.g, undefined);
        assert.equal(await plain.inviteCodeOf(c.g), undefined);
        assert.equal(await plain.channelOfInvite(lc), undefined);
        // A join on a legacy code, reset before the join's batch lands.
        const d = await group(plain);
        const ld = await legacyCode(d.g);
        hooked.hook = () => plain.setInviteCode(d.g, code());
        await rejectsWith(racing.addMembers(d.g, [d.joiner()], 100, undefined, ld), "not_found");
        assert.equal(await plain.memberCount(d.g), 3);
      });
    });

    it("gives a device back when its create timed out after it landed, so the account lists (and counts) no device nobody holds", async () => {
      const st = s();
      const late = Object.create(st.db) as Db;
      late.lwt = async (...args: Parameters<Db["lwt"]>) => {
        const r = await st.db.lwt(...args);
        if (args[0].includes("devices") && args[0].includes("IF NOT EXISTS")) throw new StorageUnavailable("cassandra write timeout: CAS", true, undefined);
        return r;
      };
      const userId = uniqueId();
      const device = { userId, deviceId: uniqueId(), name: "n", platform: "cli" as const, createdAtMs: 5, lastSeenAtMs: 5, revoked: false };
      await assert.rejects(new CassandraAccountStore(late).createDevice(device), { code: "unavailable" });
      assert.deepStrictEqual(await st.accounts.listDevices(userId), []);
      // The login's own undo (auth-service) after it finds nothing to sign out, and brings nothing back.
      await st.accounts.revokeDevice(userId, device.deviceId);
      assert.deepStrictEqual(await st.accounts.listDevices(userId), []);
      // A create that failed for certain (refused unsent) leaves nothing to give back, and gives nothing.
      const other = { ...device, deviceId: uniqueId() };
      await st.accounts.createDevice(other);
      const early = Object.create(st.db) as Db;
      early.lwt = async () => { throw new StorageUnavailable("cassandra unavailable", false, undefined); };
      await assert.rejects(new CassandraAccountStore(early).createDevice(other), { code: "unavailable" });
      assert.deepStrictEqual((await st.accounts.listDevices(userId)).map((d) => d.deviceId), [other.deviceId]);
    });

    it("gives a username's claim back when it timed out after it landed, so a sign-up tried again is not refused the name", async () => {
      const st = s();
      const late = Object.create(st.db) as Db;
      late.lwt = async (...args: Parameters<Db["lwt"]>) => {
        const r = await st.db.lwt(...args);
        if (args[0].includes("usernames") && args[0].includes("IF NOT EXISTS")) throw new StorageUnavailable("cassandra write timeout: CAS", true, undefined);
        return r;
      };
      const user = () => ({ userId: uniqueId(), username: uniqueName("retry_"), displayName: "d", passwordHash: "h", createdAtMs: 1 });
      const first = user();
      await assert.rejects(new CassandraAccountStore(late).createUser(first), { code: "unavailable" });
      // The sign-up tried again mints another id.
      const again = { ...user(), username: first.username };
      await st.accounts.createUser(again);
      assert.deepStrictEqual(await st.accounts.findUserByUsername(first.username), again);
    });

    it("a username claim left by a creator that died is taken over once stale, not before", async () => {
      const st = s();
      const [stale, fresh] = [uniqueName("stale_"), uniqueName("fresh_")];
      const claim = `INSERT INTO ${keyspace}.usernames (username_lower, user_id, reserved_at_ms) VALUES (?, ?, ?)`;
      await st.client.execute(claim, [stale, uniqueId(), BigInt(Date.now() - 3_600_000)], { prepare: true });
      await st.client.execute(claim, [fresh, uniqueId(), BigInt(Date.now())], { prepare: true });
      const user = (username: string) => ({ userId: uniqueId(), username, displayName: "d", passwordHash: "h", createdAtMs: 1 });
      const u = user(stale);
      await st.accounts.createUser(u);
      assert.deepStrictEqual(await st.accounts.findUserByUsername(stale), u);
      await assert.rejects(st.accounts.createUser(user(fresh)), { code: "already_exists" });
    });

    it("lists a direct chat in both users' lists even when its creator died right after claiming the pair", async () => {
      const st = s();
      const dying = Object.create(st.db) as Db;
      dying.lwt = async (...args: Parameters<Db["lwt"]>) => {
        await st.db.lwt(...args);
        throw new StorageUnavailable("the process died here", true, undefined);
      };
      dying.serialOne = async () => {
        throw new StorageUnavailable("dead processes read nothing", false, undefined);
      };
      const [a, b] = [uniqueId(), uniqueId()];
      const candidate: ChannelRecord = { channelId: uniqueId(), kind: "direct", title: "", createdAtMs: 1, createdBy: a };
      await assert.rejects(new CassandraChannelStore(dying, new CassandraMessageLog(st.db, BUCKET)).getOrCreateDirect(candidate, a, b));
      for (const user of [a, b]) {
        assert.deepStrictEqual((await st.channels.listMemberships(user)).map((m) => m.channelId), [candidate.channelId]);
      }
    });

    it("leaves no second, empty direct chat behind when its claim on the pair timed out and another creator's won", async () => {
      const st = s();
      const [a, b] = [uniqueId(), uniqueId()];
      const rival: ChannelRecord = { channelId: uniqueId(), kind: "direct", title: "", createdAtMs: 1, createdBy: b };
      const late = Object.create(st.db) as Db;
      late.lwt = async () => {
        // Timed out before applying, while the other side's open won the pair.
        await st.channels.getOrCreateDirect(rival, b, a);
        throw new StorageUnavailable("cassandra write timeout: CAS", true, undefined);
      };
      const candidate: ChannelRecord = { channelId: uniqueId(), kind: "direct", title: "", createdAtMs: 1, createdBy: a };
      const got = await new CassandraChannelStore(late, new CassandraMessageLog(st.db, BUCKET)).getOrCreateDirect(candidate, a, b);
      assert.equal(got.channelId, rival.channelId);
      for (const user of [a, b]) {
        assert.deepStrictEqual((await st.channels.listMemberships(user)).map((m) => m.channelId), [rival.channelId]);
      }
      assert.equal(await st.channels.getChannel(candidate.channelId), undefined);
    });

    it("deletes a direct chat whose claim timed out and never applied, and says to try again", async () => {
      const st = s();
      const [a, b] = [uniqueId(), uniqueId()];
      const late = Object.create(st.db) as Db;
      late.lwt = async () => {
        throw new StorageUnavailable("cassandra write timeout: CAS", true, undefined);
      };
      const candidate: ChannelRecord = { channelId: uniqueId(), kind: "direct", title: "", createdAtMs: 1, createdBy: a };
      await assert.rejects(new CassandraChannelStore(late, new CassandraMessageLog(st.db, BUCKET)).getOrCreateDirect(candidate, a, b), { code: "unavailable" });
      for (const user of [a, b]) assert.deepStrictEqual(await st.channels.listMemberships(user), []);
      // The next try opens it.
      const opened = await st.channels.getOrCreateDirect({ ...candidate, channelId: uniqueId() }, a, b);
      for (const user of [a, b]) {
        assert.deepStrictEqual((await st.channels.listMemberships(user)).map((m) => m.channelId), [opened.channelId]);
      }
    });

    it("opens a direct chat whose claim landed before its connection closed: the pair's chat, not deleted as a loser", async () => {
      const st = s();
      const [a, b] = [uniqueId(), uniqueId()];
      const client = Object.create(st.client, {
        execute: {
          value: async (q: string, p?: unknown[], o?: cassandra.QueryOptions) => {
            const rs = await st.client.execute(q, p, o);
            if (!q.includes("direct_channels") || !q.includes(" IF ")) return rs;
            throw Object.assign(new (cassandra.errors.DriverError as unknown as new (m: string) => Error)("Socket was closed"), { isSocketError: true, requestNotWritten: false });
          },
        },
      }) as cassandra.Client;
      const dropped = Object.create(st.db, { client: { value: client } }) as Db;
      const candidate: ChannelRecord = { channelId: uniqueId(), kind: "direct", title: "", createdAtMs: 1, createdBy: a };
      const opened = await new CassandraChannelStore(dropped, new CassandraMessageLog(st.db, BUCKET)).getOrCreateDirect(candidate, a, b)
        .catch((e: unknown) => e);
      assert.ok(!(opened instanceof Error) || (opened instanceof ChatError && opened.code === "unavailable"), String(opened));
      const again = await st.channels.getOrCreateDirect({ ...candidate, channelId: uniqueId() }, b, a);
      assert.equal(again.channelId, candidate.channelId);
      for (const user of [a, b]) {
        assert.deepStrictEqual((await st.channels.listMemberships(user)).map((m) => m.channelId), [candidate.channelId]);
      }
    });

    it("leaves no empty direct chat in a list when its open failed before the claim could apply (the claim refused unsent, an index write failed)", async () => {
      const st = s();
      const unsent = Object.create(st.db) as Db;
      unsent.lwt = async () => {
        throw new StorageUnavailable("cassandra unreachable: no host", false, undefined);
      };
      let writes = 0;
      const halfIndexed = Object.create(st.db) as Db;
      halfIndexed.write = async (...args: Parameters<Db["write"]>) => {
        if (args[0].includes("user_channels") && writes++ === 1) throw new StorageUnavailable("cassandra unavailable: index", false, undefined);
        return st.db.write(...args);
      };
      for (const db of [unsent, halfIndexed]) {
        const [a, b] = [uniqueId(), uniqueId()];
        const candidate: ChannelRecord = { channelId: uniqueId(), kind: "direct", title: "", createdAtMs: 1, createdBy: a };
        await assert.rejects(new CassandraChannelStore(db, new CassandraMessageLog(st.db, BUCKET)).getOrCreateDirect(candidate, a, b), { code: "unavailable" });
        for (const user of [a, b]) assert.deepStrictEqual(await st.channels.listMemberships(user), []);
        const opened = await st.channels.getOrCreateDirect({ ...candidate, channelId: uniqueId() }, a, b);
        for (const user of [a, b]) {
          assert.deepStrictEqual((await st.channels.listMemberships(user)).map((m) => m.channelId), [opened.channelId]);
        }
      }
    });

    it("keeps a username's claim when the user's batch timed out (it may still land), so no other account takes the name", async () => {
      const st = s();
      const name = uniqueName("timedout_");
      const late = Object.create(st.db) as Db;
      late.batch = async (...args: Parameters<Db["batch"]>) => {
        await st.db.batch(...args); // Cassandra applied it after all, from its batch log
        throw new StorageUnavailable("cassandra write timeout: BATCH", true, undefined);
      };
      const user = (username: string) => ({ userId: uniqueId(), username, displayName: "d", passwordHash: "h", createdAtMs: 1 });
      const first = user(name);
      await assert.rejects(new CassandraAccountStore(late).createUser(first), { code: "unavailable" });
      await assert.rejects(st.accounts.createUser(user(name)), { code: "already_exists" });
      assert.deepStrictEqual(await st.accounts.findUserByUsername(name), first);
    });

    it("searchUsers walks partitions in order for prefixes shorter than a partition key", async function () {
      this.timeout(KEYSPACE_TEST_TIMEOUT_MS);
      // A keyspace of its own: short prefixes span every name in it.
      const ks = newKeyspace();
      const own = await openCassandraStorage({ ...connection(), keyspace: ks });
      try {
        const names = ["bob", "b.x", "ab", "abz", "abc", "abcd", "a", "b0b", "zed", "Bo", "b"];
        for (const username of names) {
          await own.accounts.createUser({ userId: uniqueId(), username, displayName: "", passwordHash: "h", createdAtMs: 1 });
        }
        const find = async (p: string, limit = 100) => (await own.accounts.searchUsers(p, limit)).map((x) => x.username);
        const sorted = (xs: string[]) => [...xs].sort((x, y) => (x.toLowerCase() < y.toLowerCase() ? -1 : 1));
        assert.deepStrictEqual(await find(""), sorted(names));
        assert.deepStrictEqual(await find("B"), sorted(["bob", "b.x", "b0b", "Bo", "b"]));
        assert.deepStrictEqual(await find("b", 3), ["b", "b.x", "b0b"]);
        assert.deepStrictEqual(await find("ab"), ["ab", "abc", "abcd", "abz"]);
        assert.deepStrictEqual(await find("abc"), ["abc", "abcd"]);
        assert.deepStrictEqual(await find("q"), []);
        assert.equal((await own.accounts.getUser((await own.accounts.findUserByUsername("BO"))!.userId))?.displayName, "");
      } finally {
        await dropKeyspace(own.client, ks, () => own.close());
      }
    });

    it("opening fails (does not hang or skip) when no node answers", async () => {
      await assert.rejects(
        openCassandraStorage({ contactPoints: ["127.0.0.1:1"], localDataCenter: "datacenter1", keyspace: "nowhere" }),
        /All host\(s\) tried|unreachable|ECONNREFUSED/,
      );
    });
  });
});
