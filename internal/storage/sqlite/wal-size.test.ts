import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { NewMessage } from "../../model/types.js";
import { waitFor } from "../../../test/support/wait.js";
import { openSqliteStorage, type SqliteStorage } from "./index.js";
import { WRITER_AUTOCHECKPOINT_PAGES } from "./wal-checkpointer.js";

// A backup copies chat.db in one read transaction (VACUUM INTO) while chatd writes:
// the WAL cannot start over until it ends, and grows by everything written meanwhile.
describe("chat.db's WAL after a long read", function () {
  this.timeout(120_000);
  let dir: string;
  let storage: SqliteStorage | undefined;
  afterEach(async () => {
    await storage?.close();
    storage = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it("shrinks back to the writer's checkpoint size once the read has ended and writes go on", async () => {
    dir = mkdtempSync(join(tmpdir(), "chatd-wal-size-"));
    const path = join(dir, "chat.db");
    storage = openSqliteStorage(path);
    const limit = WRITER_AUTOCHECKPOINT_PAGES * Number(storage.db.pragma("page_size", { simple: true }));
    let id = 0n;
    const send = (text: string) => {
      const m: NewMessage = { messageId: ++id, channelId: 7n, senderUserId: 1n, senderDeviceId: 1n, clientMsgId: `c${id}`, text, sentAtMs: 1 };
      return storage!.writer.write(m, [1n, 2n, 3n]);
    };
    const wal = () => statSync(`${path}-wal`).size;

    const backup = new Database(path, { readonly: true });
    backup.exec("BEGIN");
    backup.prepare("SELECT count(*) FROM messages").get();
    const text = "x".repeat(8_000);
    while (wal() < limit * 1.5) await Promise.all(Array.from({ length: 50 }, () => send(text)));
    backup.exec("COMMIT");
    backup.close();

    // A write at each look: the WAL starts over at a write, once the checkpointer's thread has copied what the read held back.
    await waitFor(async () => {
      await send("after the backup");
      return wal() <= limit;
    }, `the WAL back within the ${(limit / 1_048_576).toFixed(0)} MiB the writer lets it reach`, 30_000, 20);
  });
});
