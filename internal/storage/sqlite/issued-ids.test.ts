import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStorage, type SqliteStorage } from "./index.js";

describe("sqlite storage: the highest id issued", () => {
  let dir: string;
  let s: SqliteStorage;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "chatd-ids-"));
    s = openSqliteStorage(join(dir, "chat.db"));
  });
  afterEach(async () => {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("is 0 in a new database, then the largest id of any table chatd mints ids for", () => {
    assert.equal(s.highestIssuedId(), 0n);
    const db = s.db;
    db.prepare("INSERT INTO users (user_id, username, username_lower, display_name, password_hash, created_at_ms) VALUES (?, 'a', 'a', 'A', 'x', 0)").run(10n);
    assert.equal(s.highestIssuedId(), 10n);
    db.prepare("INSERT INTO devices (user_id, device_id, name, platform, created_at_ms, last_seen_at_ms) VALUES (10, ?, 'd', 'p', 0, 0)").run(20n);
    assert.equal(s.highestIssuedId(), 20n);
    db.prepare("INSERT INTO channels (channel_id, kind, title, created_at_ms, created_by) VALUES (?, 'group', 't', 0, 10)").run(30n);
    assert.equal(s.highestIssuedId(), 30n);
    db.prepare(
      "INSERT INTO messages (message_id, channel_id, seq, sender_user_id, sender_device_id, client_msg_id, text, sent_at_ms) VALUES (?, 30, 1, 10, 20, 'c', 't', 0)",
    ).run(40n);
    assert.equal(s.highestIssuedId(), 40n);
    db.prepare(
      "INSERT INTO message_changes (change_id, channel_id, target_seq, sender_user_id, sender_device_id, client_msg_id, deleted, changed_at_ms) VALUES (?, 30, 1, 10, 20, 'e', 0, 0)",
    ).run((1n << 62n) + 5n);
    assert.equal(s.highestIssuedId(), (1n << 62n) + 5n, "64-bit, exactly");
  });
});
