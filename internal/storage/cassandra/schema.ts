import { createHash } from "node:crypto";
import { assertKeyspaceName, type Client } from "./session.js";

/**
 * Bumped when a table changes; stored in the keyspace's meta table, and a
 * build refuses a keyspace newer than itself. 2: appends write the
 * *_newest tables with plain writes instead of compare-and-setting the
 * *_heads tables, so a build of version 1 must not append beside it.
 * 3: resends are deduplicated per sending device (client_msg_id is unique
 * per device, session.proto) in message_dedup_by_device; message_dedup,
 * keyed without the device, is only read for a day after the upgrade
 * (DEVICE_DEDUP_SINCE).
 * 4: edits and deletes (ADDED_COLUMNS). A changed message's text lives in
 * its `change` cell and the text column is cleared, so an older build would
 * read it as null; and its head writes would not clear the change of the
 * message they replace in channel_newest.
 * 5: replies (reply_to_seq in ADDED_COLUMNS); an older build would store a
 * reply without what it answers.
 * 6: reactions (`messages.reactions`, `reaction` on inbox entries); an older
 * build would take a reaction's entry for an edit to its emoji.
 * 7: notes about the channel (`note` on messages, channel_newest and inbox
 * entries); an older build would show a note as an empty message.
 * 8: a group's invite code lives in its channel partition (`invite_code`,
 * static), where the fence of membership changes compares it; an older
 * build would reset or revoke a link in `channel_invites` alone, which this
 * one reads only for a group whose `invite_code` was never written.
 */
export const SCHEMA_VERSION = 8;

/**
 * Meta key: when (epoch ms) an existing keyspace moved to schema 3. Messages
 * accepted before it are only in message_dedup, so for
 * LEGACY_DEDUP_WINDOW_MS after it a resend missing from the new table is
 * also looked up there. A keyspace created at 3 has no such key.
 */
export const DEVICE_DEDUP_SINCE = "device_dedup_since_ms";
/** Devices resend within seconds to minutes; a day covers clients that were offline over the upgrade. */
export const LEGACY_DEDUP_WINDOW_MS = 86_400_000;

/**
 * Messages per history bucket (and entries per inbox bucket) in a new
 * keyspace. Typical texts are ~100-200 bytes, so a bucket is ~200 KB; the
 * worst case (1000 texts of 100,000 code points) is ~400 MB, which is why it
 * is not larger. Fixed per keyspace once chosen: the stored value wins.
 */
export const DEFAULT_BUCKET_SIZE = 1000;

export interface SchemaOptions {
  keyspace: string;
  /**
   * Replication map of the keyspace, used only when it is created. Default
   * { class: "SimpleStrategy", replication_factor: 1 } (one local node);
   * production: { class: "NetworkTopologyStrategy", <dc>: 3 }.
   */
  replication?: Record<string, string | number>;
  /** Bucket size for a new keyspace; an existing keyspace keeps its own. */
  bucketSize?: number;
  /** How long to wait for all nodes to agree on the schema. */
  agreementTimeoutMs?: number;
}

export interface SchemaInfo {
  keyspace: string;
  /** The keyspace's bucket size (as stored, whatever was asked for). */
  bucketSize: number;
}

const EXPIRING = `compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}
             AND gc_grace_seconds = 86400`;

// Partition and clustering keys are the design; see docs/architecture.md.
const TABLES: Record<string, string> = {
  meta: `(key text PRIMARY KEY, value text)`,

  users: `(user_id bigint PRIMARY KEY, username text, display_name text, password_hash text, created_at_ms bigint)`,
  // The uniqueness claim (LWT). reserved_at_ms lets a claim whose creator died
  // before writing the user row be taken over later.
  usernames: `(username_lower text PRIMARY KEY, user_id bigint, reserved_at_ms bigint)`,
  // Prefix search: one partition per first SEARCH_PREFIX code points of the
  // lower-cased name, sorted by name inside.
  user_search: `(prefix text, username_lower text, user_id bigint, PRIMARY KEY ((prefix), username_lower))`,
  // Which search partitions exist, for queries shorter than a partition prefix.
  user_search_dir: `(parent text, child text, PRIMARY KEY ((parent), child))`,
  devices: `(user_id bigint, device_id bigint, name text, platform text, created_at_ms bigint,
             last_seen_at_ms bigint, revoked boolean, PRIMARY KEY ((user_id), device_id))`,
  refresh_tokens: `(token_hash text PRIMARY KEY, user_id bigint, device_id bigint, expires_at_ms bigint)`,
  // expires_at_ms: what a sign-out's mark of the token needs, so it reads no token row.
  refresh_tokens_by_device: `(user_id bigint, device_id bigint, token_hash text, expires_at_ms bigint,
             PRIMARY KEY ((user_id, device_id), token_hash))`,
  // Tokens taken once, kept (TTL) until they would have expired: a second use is a stolen copy,
  // or a client retrying a refresh whose reply it lost (used_at_ms, successor_hash; RefreshTokens).
  used_refresh_tokens: `(token_hash text PRIMARY KEY, user_id bigint, device_id bigint, expires_at_ms bigint,
             used_at_ms bigint, successor_hash text)`,
  // Each request is stored in both users' partitions (outgoing = from the partition owner).
  friend_requests: `(user_id bigint, other_user_id bigint, outgoing boolean, at_ms bigint,
             PRIMARY KEY ((user_id), other_user_id, outgoing))`,
  friendships: `(user_id bigint, friend_user_id bigint, since_ms bigint, PRIMARY KEY ((user_id), friend_user_id))`,
  // A block is stored once per side, as a friendship: whom a user blocked in
  // their partition of blocks, who blocked them in theirs of blockers.
  blocks: `(user_id bigint, blocked_user_id bigint, at_ms bigint, PRIMARY KEY ((user_id), blocked_user_id))`,
  blockers: `(user_id bigint, blocker_user_id bigint, PRIMARY KEY ((user_id), blocker_user_id))`,
  // Who may see a user's presence, for users who chose (a table of its own, so no column is added to users).
  presence_settings: `(user_id bigint PRIMARY KEY, visibility text)`,
  // Account deletions recorded before the account is marked deleted, removed once their final pass
  // ran (AccountStore.putPendingDeletion); what the deletion sweeper of the api role finishes when
  // the process running one died in between. Spread over PENDING_DELETION_BUCKETS partitions by
  // user id, so no one of them takes every write; a sweep reads them all. A row is short-lived, and
  // one brought back by a replica that missed its delete past the short gc grace costs one sweep
  // that finds the deletion done (every step of it may run again), so tombstones are dropped soon.
  // Added to existing keyspaces by the IF NOT EXISTS on start-up; an older build beside this one
  // records none, its deletions cut short left as before.
  pending_deletions: `(bucket int, user_id bigint, device_id bigint, at_ms bigint, PRIMARY KEY ((bucket), user_id))
             WITH gc_grace_seconds = 10800`,
  // Last-seen times beyond Redis (internal/presence/cassandra.ts), added to existing keyspaces by the
  // IF NOT EXISTS on start-up: each written with its time as the write timestamp, the latest wins.
  presence_last_seen: `(user_id bigint PRIMARY KEY, at_ms bigint)`,

  // One partition per channel: its metadata (static) and its members (at most
  // a group's limit, 2 for a direct channel). version is the fence every
  // membership change compares-and-sets, in the same partition as the rows.
  // invite_code is a group's invite code, changed through the same fence so
  // that a join compares it as it lands: '' for none, null for a group whose
  // code (if any) is still only in channel_invites (made before schema 8).
  // barred: those removed by someone else and not added back since, whom a
  // join by the link refuses; in the partition, so the removal that bars them
  // and a join that reads it go through the same fence.
  channels: `(channel_id bigint, user_id bigint,
             kind text static, title text static, created_at_ms bigint static, created_by bigint static,
             member_count int static, version bigint static, invite_code text static, barred set<bigint> static,
             barred_at map<bigint, bigint> static,
             role text, joined_at_ms bigint, read_seq bigint, join_order bigint, cleared_seq bigint, joined_seq bigint,
             PRIMARY KEY ((channel_id), user_id))`,
  // Whose turn it is to change a group and write its note (ChannelStore.changeInTurn): a lease,
  // written with a TTL, taken and given back by compare-and-set. Added to existing keyspaces by the
  // IF NOT EXISTS on start-up; an older build beside this one changes groups without taking it.
  channel_turns: `(channel_id bigint PRIMARY KEY, holder text)`,
  direct_channels: `(user_lo bigint, user_hi bigint, channel_id bigint, PRIMARY KEY ((user_lo, user_hi)))`,
  // A user's channels; written with the channel's membership version as the
  // write timestamp, so the last membership change wins whatever the order.
  user_channels: `(user_id bigint, channel_id bigint, PRIMARY KEY ((user_id), channel_id))`,
  // A user's channel mutes, apart from the channel partition: notifications
  // read a user's mutes in one partition, and a mute never moves the fence.
  channel_mutes: `(user_id bigint, channel_id bigint, until_ms bigint, PRIMARY KEY ((user_id), channel_id))`,
  // Channels a user pinned or archived (ChannelStore.setPlace), added to
  // existing keyspaces by the IF NOT EXISTS on start-up; older builds never read it.
  channel_places: `(user_id bigint, channel_id bigint, pinned_at_ms bigint, archived_at_ms bigint, marked_unread_at_ms bigint,
                   PRIMARY KEY ((user_id), channel_id))`,
  // The way back from an invite code to its group; a code counts only while
  // its group names it (channels.invite_code), so a row left behind by a
  // reset that failed half-way leads nowhere. channel_invites is where a
  // group named its code before schema 8: read for a group whose
  // invite_code was never written, and kept in step (best effort) for
  // processes of an older build still running during an upgrade.
  channel_invites: `(channel_id bigint PRIMARY KEY, code text)`,
  invite_codes: `(code text PRIMARY KEY, channel_id bigint)`,

  // Before schema 2, the seq fence of a channel (compare-and-set on
  // last_seq) with a copy of the newest message; now only read, for a channel
  // not appended to since (see SequencedAppender), and never written.
  channel_heads: `(channel_id bigint PRIMARY KEY, last_seq bigint, message_id bigint, sender_user_id bigint,
             sender_device_id bigint, client_msg_id text, text text, sent_at_ms bigint)`,
  // change: the last edit or delete applied (change-cell.ts); text is
  // cleared then, so a deleted text is not kept.
  messages: `(channel_id bigint, bucket bigint, seq bigint, message_id bigint, sender_user_id bigint,
             sender_device_id bigint, client_msg_id text, text text, sent_at_ms bigint, change blob, reply_to_seq bigint,
             reactions map<bigint, blob>, note text,
             PRIMARY KEY ((channel_id, bucket), seq)) WITH CLUSTERING ORDER BY (seq DESC)`,
  // Before schema 3: the dedup key without the device (which swallowed a
  // second device's message with the same client_msg_id). Now only read, for
  // a day after an upgrade (DEVICE_DEDUP_SINCE), never written.
  message_dedup: `(channel_id bigint, sender_user_id bigint, client_msg_id text, seq bigint, message_id bigint,
             PRIMARY KEY ((channel_id, sender_user_id, client_msg_id)))`,
  // The edits of a message (not its delete), by id: what a delete must empty
  // in the inboxes besides the message's own copies. A new table, created by
  // the IF NOT EXISTS on start-up in a keyspace of schema 4.
  message_edits: `(channel_id bigint, seq bigint, change_id bigint, PRIMARY KEY ((channel_id, seq), change_id))`,
  message_dedup_by_device: `(channel_id bigint, sender_user_id bigint, sender_device_id bigint, client_msg_id text,
             seq bigint, message_id bigint,
             PRIMARY KEY ((channel_id, sender_user_id, sender_device_id, client_msg_id)))`,
  // A change's (edit, delete, reaction) id by its send key, as message_dedup_by_device is a
  // message's: a client's resend of it under a new id (its chat server forgot the send) is
  // then known and never applied again. A new table, created by the IF NOT EXISTS on
  // start-up; an older build writes none, and its changes are deduplicated as before.
  change_dedup: `(channel_id bigint, sender_user_id bigint, sender_device_id bigint, client_msg_id text, change_id bigint,
             PRIMARY KEY ((channel_id, sender_user_id, sender_device_id, client_msg_id)))`,
  // The newest message of a channel, written after its rows with its seq as
  // the write timestamp: a late write from an overlapping writer never moves
  // it back. Its seq bounds history reads; latest() reads the message, with
  // its change, kept in step by the log (CassandraMessageLog.amend).
  channel_newest: `(channel_id bigint PRIMARY KEY, last_seq bigint, message_id bigint, sender_user_id bigint,
             sender_device_id bigint, client_msg_id text, text text, sent_at_ms bigint, change blob, reply_to_seq bigint,
             note text)`,

  // Before schema 2 (as channel_heads): only read, never written.
  inbox_heads: `(user_id bigint PRIMARY KEY, last_seq bigint, message_id bigint, channel_id bigint, seq bigint,
             sender_user_id bigint, sender_device_id bigint, client_msg_id text, text text, sent_at_ms bigint)`,
  // Inbox rows carry the retention TTL (CHAT_INBOX_RETENTION_S) and are
  // written once, oldest first: SSTables by day then expire whole and are
  // dropped without a merge, and with no deletes to spread, a day of grace
  // is enough. (Options of a new keyspace; an older one keeps its own.)
  inbox: `(user_id bigint, bucket bigint, inbox_seq bigint, message_id bigint, channel_id bigint, seq bigint,
             sender_user_id bigint, sender_device_id bigint, client_msg_id text, text text, sent_at_ms bigint,
             target_seq bigint, edited_at_ms bigint, deleted boolean, reply_to_seq bigint, reaction boolean, note text,
             PRIMARY KEY ((user_id, bucket), inbox_seq)) WITH CLUSTERING ORDER BY (inbox_seq ASC) AND ${EXPIRING}`,
  inbox_dedup: `(user_id bigint, message_id bigint, inbox_seq bigint, PRIMARY KEY ((user_id, message_id))) WITH ${EXPIRING}`,
  // The newest entry of an inbox (as channel_newest), with no TTL: the seq
  // and the newest entry outlive the retention window.
  inbox_newest: `(user_id bigint PRIMARY KEY, last_seq bigint, message_id bigint, channel_id bigint, seq bigint,
             sender_user_id bigint, sender_device_id bigint, client_msg_id text, text text, sent_at_ms bigint,
             target_seq bigint, edited_at_ms bigint, deleted boolean, reply_to_seq bigint, reaction boolean, note text)`,
  // Written with the cursor as the write timestamp: the highest cursor wins
  // without a read or a Paxos round.
  inbox_cursors: `(user_id bigint, device_id bigint, seq bigint, PRIMARY KEY ((user_id), device_id))`,

  // Push endpoints (push-endpoint-store.ts), added to existing keyspaces by
  // the IF NOT EXISTS on start-up. One per device; a user's in one partition.
  push_endpoints: `(user_id bigint, device_id bigint, kind text, address text, p256dh text, auth text, apns_topic text,
             hide_preview boolean, muted boolean, updated_at_ms bigint, PRIMARY KEY ((user_id), device_id))`,
  // Which device owns an address (compare-and-set), so an address reaches one device only.
  push_addresses: `(kind text, address text, user_id bigint, device_id bigint, PRIMARY KEY ((kind, address)))`,
};

export const TABLE_NAMES = Object.keys(TABLES);

/**
 * Columns added to tables after they were first created, with their types
 * ("<type> static" for a static column). A new table is created with them
 * (tableBody), whether TABLES lists them or not, so a new keyspace waits on
 * no ALTER; CREATE TABLE IF NOT EXISTS leaves an existing table as it is, so
 * applySchema adds these where missing.
 */
export const ADDED_COLUMNS: Record<string, Record<string, string>> = {
  // Schema 4: edits and deletes (change, target_seq, edited_at_ms, deleted); 5: replies (reply_to_seq);
  // 6: reactions (reactions, reaction); 7: notes (note).
  // Where a member cleared the history (ChannelStore.clearHistory): no new
  // version, since an older build beside this one only shows what it hides.
  // Schema 8: the group's invite code, in the partition its joins are fenced on.
  // Where a member joined (MemberRecord.joinedSeq), likewise: an older build beside this one counts
  // a joiner's earlier history as unread, and shows them as having read nothing.
  // Who is barred from the link (ChannelStore.removeMember), likewise: an older build beside this
  // one lets a removed member back by the link, as before, and an add back there leaves the bar
  // (the link refuses them, should they leave, until a manager adds them again on this build).
  // When each was barred (the version of the removal), so the bar past MAX_BARS lifts the oldest,
  // likewise: a bar an older build made has none, and counts as older than any with one.
  channels: {
    cleared_seq: "bigint", invite_code: "text static", joined_seq: "bigint", barred: "set<bigint> static",
    barred_at: "map<bigint, bigint> static",
  },
  // MarkUnread, likewise: an older build shows a marked chat as it is.
  channel_places: { marked_unread_at_ms: "bigint" },
  messages: { change: "blob", reply_to_seq: "bigint", reactions: "map<bigint, blob>", note: "text" },
  channel_newest: { change: "blob", reply_to_seq: "bigint", note: "text" },
  inbox: { target_seq: "bigint", edited_at_ms: "bigint", deleted: "boolean", reply_to_seq: "bigint", reaction: "boolean", note: "text" },
  inbox_newest: { target_seq: "bigint", edited_at_ms: "bigint", deleted: "boolean", reply_to_seq: "bigint", reaction: "boolean", note: "text" },
  // The refresh reuse grace: no new version, since an older build beside this one writes marks
  // without them, which read as today's (no grace), and never reads them.
  used_refresh_tokens: { used_at_ms: "bigint", successor_hash: "text" },
  // A sign-out marks the device's tokens from their index rows, likewise: an index row an older
  // build wrote has none, and the sign-out reads that token's row for it, as before.
  refresh_tokens_by_device: { expires_at_ms: "bigint", current_hash: "text" },
  // A device's refreshes overwrite one index row, keyed by their chain (the token issued at
  // sign-in), likewise: a token an older build issued is its own chain, and its successor
  // overwrites its row; an older build beside this one indexes its tokens a row each, as before,
  // and its sign-out may miss one this build issued (named in current_hash, which it does not
  // read), whose take then finds the device signed out.
  refresh_tokens: { chain: "text" },
  // Since when every send to an endpoint failed (PushEndpoint.failingSinceMs), likewise: an
  // older build beside this one neither writes nor clears it, and removes only dead endpoints.
  // failed_sends: that streak's failed sends (PushEndpoint.failedSends); null beside a
  // failing_since_ms an older build set reads as one.
  push_endpoints: { failing_since_ms: "bigint", failed_sends: "int" },
  // Whom a pending deletion tells the account is offline (PendingDeletion.tellOffline), recorded
  // before its friendships are dropped, likewise: an older build beside this one records none and
  // leaves those recorded (its move of the record keeps them), its sweep telling only those it finds.
  pending_deletions: { tell_offline: "set<bigint>" },
};

/**
 * Creates the keyspace and tables unless they exist, waits for schema
 * agreement, and returns the keyspace's layout. Idempotent, and safe when
 * several processes start at once: each table is created with an id derived
 * from its name, so two concurrent CREATE TABLE IF NOT EXISTS on different
 * coordinators describe the very same table instead of two that clash.
 */
export async function applySchema(client: Client, o: SchemaOptions): Promise<SchemaInfo> {
  const ks = o.keyspace;
  assertKeyspaceName(ks);
  const wait = o.agreementTimeoutMs ?? 60_000;
  const replication = o.replication ?? { class: "SimpleStrategy", replication_factor: 1 };
  await ddl(client, `CREATE KEYSPACE IF NOT EXISTS ${ks} WITH replication = ${cqlMap(replication)}`, wait);
  for (const name of TABLE_NAMES) {
    const body = tableBody(name);
    const withId = body.includes(" WITH ") ? " AND" : " WITH";
    await ddl(client, `CREATE TABLE IF NOT EXISTS ${ks}.${name} ${body}${withId} ID = ${tableId(ks, name)}`, wait);
  }
  // Before the version is written: a process that finds version 4 may rely on them.
  for (const [table, columns] of Object.entries(ADDED_COLUMNS)) await addMissingColumns(client, ks, table, columns, wait);

  const wanted = o.bucketSize ?? DEFAULT_BUCKET_SIZE;
  if (!Number.isSafeInteger(wanted) || wanted < 1) throw new Error(`bucketSize must be a positive integer, got ${wanted}`);
  const bucketSize = Number(await claimMeta(client, ks, "bucket_size", String(wanted)));
  const stored = await claimMeta(client, ks, "schema_version", String(SCHEMA_VERSION));
  const version = Number(stored);
  if (version > SCHEMA_VERSION) throw newerKeyspace(ks, version);
  // An older keyspace is upgraded in place (its new tables exist now); older
  // builds then refuse it rather than append beside this one. The moment of
  // the move to 3 is claimed before the version, so a starter that dies in
  // between leaves it for the next one (whose claim finds the first value).
  if (version < SCHEMA_VERSION) {
    if (version < 3) await claimMeta(client, ks, DEVICE_DEDUP_SINCE, String(Date.now()));
    await raiseVersion(client, ks, stored);
  }
  return { keyspace: ks, bucketSize };
}

/**
 * Moves schema_version up from `from` to this build's, compare-and-set as
 * its claim was. A plain write landing after a later build's upgrade (both
 * read the older version) moved the version back down, and builds older
 * than that one then started beside it; the refusal of a newer keyspace
 * holds for this race too.
 */
async function raiseVersion(client: Client, ks: string, from: string): Promise<void> {
  for (;;) {
    const r = await client.execute(
      `UPDATE ${ks}.meta SET value = ? WHERE key = 'schema_version' IF value = ?`,
      [String(SCHEMA_VERSION), from],
      { prepare: true },
    );
    const row = r.first();
    if (row.get("[applied]") === true) return;
    const now = row.get("value") as string;
    if (Number(now) > SCHEMA_VERSION) throw newerKeyspace(ks, Number(now));
    if (Number(now) === SCHEMA_VERSION) return;
    from = now;
  }
}

function newerKeyspace(ks: string, version: number): Error {
  return new Error(`keyspace ${ks} has schema version ${version}, newer than this build (${SCHEMA_VERSION})`);
}

/** Reads the layout of a keyspace made by applySchema (for processes that do not apply it). */
export async function readSchemaInfo(client: Client, keyspace: string): Promise<SchemaInfo> {
  assertKeyspaceName(keyspace);
  const r = await client.execute(`SELECT value FROM ${keyspace}.meta WHERE key = 'bucket_size'`, [], { prepare: true });
  const v = r.first()?.get("value");
  if (typeof v !== "string") throw new Error(`keyspace ${keyspace} has no layout: run applySchema first`);
  return { keyspace, bucketSize: Number(v) };
}

/**
 * ALTER TABLE ADD for each column the table lacks. (ADD IF NOT EXISTS needs
 * Cassandra 4.1.) Two processes starting at once may both find a column
 * missing: the second ADD is refused as a duplicate, and that is success.
 */
async function addMissingColumns(
  client: Client, ks: string, table: string, columns: Record<string, string>, wait: number,
): Promise<void> {
  const have = await client.execute(
    "SELECT column_name, type, kind FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?",
    [ks, table],
    { prepare: true },
  );
  const types = new Map(have.rows.map((r) => [
    r.get("column_name") as string,
    `${r.get("type") as string}${r.get("kind") === "static" ? " static" : ""}`,
  ]));
  for (const [column, type] of Object.entries(columns)) {
    const existing = types.get(column);
    if (existing !== undefined) {
      // Another type (or a static column where a row's was wanted) would be read wrongly everywhere: refuse to start.
      if (existing !== type) throw new Error(`${ks}.${table}.${column} is ${existing}, expected ${type}`);
      continue;
    }
    try {
      await ddl(client, `ALTER TABLE ${ks}.${table} ADD ${column} ${type}`, wait);
    } catch (e) {
      if (!isDuplicateColumn(e)) throw e;
      // Added by another process: this one's statements need it too.
      await awaitAgreement(client, wait, `ALTER TABLE ${ks}.${table} ADD ${column}`);
    }
  }
}

function isDuplicateColumn(e: unknown): boolean {
  // Cassandra 4 and 5: "Invalid column name x because it conflicts with an existing column".
  return e instanceof Error && /conflicts with an existing column|already exists/i.test(e.message);
}

// The first writer's value wins (LWT), so concurrent starters agree.
async function claimMeta(client: Client, ks: string, key: string, value: string): Promise<string> {
  const r = await client.execute(`INSERT INTO ${ks}.meta (key, value) VALUES (?, ?) IF NOT EXISTS`, [key, value], {
    prepare: true,
  });
  const row = r.first();
  return row.get("[applied]") === true ? value : (row.get("value") as string);
}

async function ddl(client: Client, cql: string, timeoutMs: number): Promise<void> {
  // DDL is not prepared; the driver waits for agreement itself up to
  // maxSchemaAgreementWaitSeconds, and this keeps waiting if it gave up.
  // A schema change on a loaded node can take longer than the driver's 12 s
  // request timeout and still land; failing it there failed the start of
  // every role on a fresh keyspace, so it gets as long as the agreement.
  const rs = await client.execute(cql, [], { readTimeout: timeoutMs });
  // isSchemaInAgreement and checkSchemaAgreement exist at runtime (driver 4.x) but not in its typings.
  if ((rs.info as { isSchemaInAgreement?: boolean }).isSchemaInAgreement) return;
  await awaitAgreement(client, timeoutMs, cql);
}

async function awaitAgreement(client: Client, timeoutMs: number, cql: string): Promise<void> {
  const metadata = client.metadata as unknown as { checkSchemaAgreement(): Promise<boolean> };
  const deadline = Date.now() + timeoutMs;
  while (!(await metadata.checkSchemaAgreement())) {
    if (Date.now() > deadline) throw new Error(`no schema agreement within ${timeoutMs} ms after: ${cql.slice(0, 80)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * The CREATE TABLE body of a table: its TABLES entry with the columns of
 * ADDED_COLUMNS it does not declare. `added: false` gives the table as a
 * build before those columns made it, for tests of the upgrade.
 */
export function tableBody(name: string, o: { added?: boolean } = {}): string {
  const body = TABLES[name];
  if (body === undefined) throw new Error(`no table ${name}`);
  const added = ADDED_COLUMNS[name] ?? {};
  const { parts, rest } = splitDefinitions(body);
  const declared = new Set(parts.map(columnOf));
  const kept = o.added === false
    ? parts.filter((p) => !Object.hasOwn(added, columnOf(p)))
    : [...parts, ...Object.entries(added).filter(([c]) => !declared.has(c)).map(([c, type]) => `${c} ${type}`)];
  return `(${kept.join(", ")})${rest}`;
}

/** The definitions between a body's outer parentheses (commas inside <...> and (...) are not theirs), and what follows. */
function splitDefinitions(body: string): { parts: string[]; rest: string } {
  if (!body.startsWith("(")) throw new Error(`table body must start with "(": ${body.slice(0, 40)}`);
  const parts: string[] = [];
  let depth = 0;
  let start = 1;
  for (let i = 0; i < body.length; i++) {
    const ch = body[i];
    if (ch === "(" || ch === "<") depth++;
    else if (ch === ">") depth--;
    else if (ch === "," && depth === 1) {
      parts.push(body.slice(start, i).trim());
      start = i + 1;
    } else if (ch === ")" && --depth === 0) {
      parts.push(body.slice(start, i).trim());
      return { parts, rest: body.slice(i + 1) };
    }
  }
  throw new Error(`unbalanced table body: ${body.slice(0, 40)}`);
}

/** The column a definition declares; "" for the PRIMARY KEY clause. */
function columnOf(definition: string): string {
  return /^PRIMARY\s+KEY\b/i.test(definition) ? "" : definition.split(/\s+/, 1)[0]!;
}

/** A name-based (version 3) UUID of keyspace.table. */
export function tableId(keyspace: string, table: string): string {
  const h = createHash("md5").update(`chatd:${keyspace}.${table}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x30;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

function cqlMap(m: Record<string, string | number>): string {
  const entries = Object.entries(m).map(([k, v]) => {
    if (!/^[A-Za-z0-9_.-]+$/.test(k) || !/^[A-Za-z0-9_.-]+$/.test(String(v))) {
      throw new Error(`replication option ${k}=${v}: only letters, digits, '_', '.', '-'`);
    }
    return `'${k}': '${v}'`;
  });
  return `{${entries.join(", ")}}`;
}
