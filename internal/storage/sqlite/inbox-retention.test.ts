import assert from "node:assert/strict";
import { expiredThrough } from "../../messages/inbox.js";
import type { NewMessage } from "../../model/types.js";
import { waitFor } from "../../../test/support/wait.js";
import { openSqliteStorage, type SqliteStorage } from "./index.js";

const DAY = 86_400_000;

const send = (messageId: bigint, sentAtMs: number, channelId = 7n): NewMessage => ({
  messageId,
  channelId,
  senderUserId: 1n,
  senderDeviceId: 11n,
  clientMsgId: `c${messageId}`,
  text: `text ${messageId}`,
  sentAtMs,
});

describe("sqlite inbox retention", () => {
  let s: SqliteStorage | undefined;
  let now = 100 * DAY;
  afterEach(async () => {
    await s?.close();
    s = undefined;
  });

  const open = (retentionMs: number, sweepIntervalMs?: number) =>
    (s = openSqliteStorage(":memory:", { inboxRetention: { retentionMs, sweepIntervalMs, now: () => now } }));

  it("takes entries older than the retention away, each inbox keeping its newest, and a read after them says what expired", async () => {
    const st = open(30 * DAY);
    // User 2 gets messages 1..3 long ago and 4 lately; user 3 only the old ones.
    await st.writer.write(send(101n, now - 40 * DAY), [1n, 2n, 3n]);
    await st.writer.write(send(102n, now - 35 * DAY), [1n, 2n, 3n]);
    await st.writer.write(send(103n, now - 31 * DAY), [1n, 2n, 3n]);
    await st.writer.write(send(104n, now - 1 * DAY, 8n), [1n, 2n]);

    assert.equal(await st.inboxRetention.sweep(), 8, "users 1 and 2: 1..3; user 3: 1 and 2");
    const user2 = await st.inbox.readAfter(2n, 0n, 10);
    assert.deepEqual(user2.map((e) => e.inboxSeq), [4n]);
    assert.equal(expiredThrough(0n, user2), 3n, "a device at cursor 0 is told 1..3 are gone");
    // User 3's newest entry is old but stays: the next entry takes its seq + 1.
    assert.deepEqual((await st.inbox.readAfter(3n, 0n, 10)).map((e) => e.inboxSeq), [3n]);
    assert.equal(await st.inbox.head(3n), 3n);
    const next = await st.writer.write(send(105n, now, 9n), [1n, 3n]);
    assert.deepEqual(next.entries.map((e) => [e.userId, e.entry.inboxSeq]), [[1n, 5n], [3n, 4n]]);
    // History is not the inbox: every message is still in the channel's log.
    assert.equal((await st.messages.page(7n, { anchorSeq: 0n, direction: "forward", limit: 10 })).length, 3);
    assert.equal(await st.inboxRetention.sweep(), 1, "user 3's old newest entry goes once a newer one came");
  });

  it("walks past more rows than one step holds, and keeps what is younger than the retention", async () => {
    const st = open(30 * DAY);
    const members = Array.from({ length: 100 }, (_, i) => BigInt(i + 1));
    for (let i = 0; i < 10; i++) await st.writer.write(send(BigInt(200 + i), now - 60 * DAY + i), members);
    for (let i = 0; i < 3; i++) await st.writer.write(send(BigInt(300 + i), now - 29 * DAY + i), members);
    assert.equal(await st.inboxRetention.sweep(), 1_000);
    for (const user of [1n, 50n, 100n]) {
      assert.deepEqual((await st.inbox.readAfter(user, 0n, 20)).map((e) => e.inboxSeq), [11n, 12n, 13n]);
    }
  });

  it("a clock set back from years ahead: its entries stop no sweep, and go with the first entry written after them that expired", async () => {
    const st = open(30 * DAY);
    const ahead = now + 4 * 365 * DAY;
    // Sent while the clock ran four years ahead, before it was set right.
    await st.writer.write(send(101n, ahead), [2n]);
    await st.writer.write(send(102n, ahead + 1), [2n, 4n]);
    for (let i = 0; i < 5; i++) await st.writer.write(send(BigInt(200 + i), now + i), [2n, 3n]);
    await st.writer.write(send(103n, ahead + 2), [2n]);
    now += 40 * DAY;
    await st.writer.write(send(300n, now, 8n), [2n, 3n]);

    // User 2: 1, 2 (ahead), 3..7 (expired), 8 (ahead, after them: kept), 9; user 3: 1..5 expired, 6; user 4: 1 (its newest).
    assert.equal(await st.inboxRetention.sweep(), 12);
    const user2 = await st.inbox.readAfter(2n, 0n, 20);
    assert.deepEqual(user2.map((e) => e.inboxSeq), [8n, 9n]);
    assert.equal(expiredThrough(0n, user2), 7n, "what expired is a prefix: a device at 0 is told so");
    assert.deepEqual((await st.inbox.readAfter(3n, 0n, 20)).map((e) => e.inboxSeq), [6n]);
    assert.deepEqual((await st.inbox.readAfter(4n, 0n, 20)).map((e) => e.inboxSeq), [1n]);
    assert.equal(await st.inboxRetention.sweep(), 0, "nothing more until a row after 8 expires");
  });

  it("keeps an entry stamped ahead of the clock while every entry written after it is kept", async () => {
    const st = open(30 * DAY);
    await st.writer.write(send(101n, now - 40 * DAY), [2n]);
    await st.writer.write(send(102n, now + 365 * DAY), [2n]);
    await st.writer.write(send(103n, now - 1 * DAY), [2n]);
    await st.writer.write(send(104n, now), [2n]);
    assert.equal(await st.inboxRetention.sweep(), 1);
    assert.deepEqual((await st.inbox.readAfter(2n, 0n, 10)).map((e) => e.inboxSeq), [2n, 3n, 4n]);
  });

  it("takes entries stamped ahead of the clock across more rows than one step holds", async () => {
    const st = open(30 * DAY);
    const members = Array.from({ length: 100 }, (_, i) => BigInt(i + 1));
    for (let i = 0; i < 4; i++) await st.writer.write(send(BigInt(200 + i), now + 365 * DAY + i), members);
    for (let i = 0; i < 4; i++) await st.writer.write(send(BigInt(300 + i), now + i), members);
    now += 40 * DAY;
    for (let i = 0; i < 2; i++) await st.writer.write(send(BigInt(400 + i), now + i), members);
    assert.equal(await st.inboxRetention.sweep(), 800);
    for (const user of [1n, 50n, 100n]) {
      assert.deepEqual((await st.inbox.readAfter(user, 0n, 20)).map((e) => e.inboxSeq), [9n, 10n]);
    }
  });

  it("keeps every entry when the retention is 0 (forever)", async () => {
    const st = open(0);
    await st.writer.write(send(101n, now - 4_000 * DAY), [1n, 2n]);
    assert.equal(await st.inboxRetention.sweep(), 0);
    assert.equal((await st.inbox.readAfter(2n, 0n, 10)).length, 1);
  });

  it("sweeps by itself every interval", async () => {
    const st = open(30 * DAY, 20);
    await st.writer.write(send(101n, now - 40 * DAY), [2n]);
    await st.writer.write(send(102n, now - 40 * DAY), [2n]);
    await waitFor(async () => (await st.inbox.readAfter(2n, 0n, 10)).length === 1, "the expired entry taken away");
  });
});
