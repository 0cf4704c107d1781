import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { messageQueueContract } from "./contract.js";
import { SqliteQueue } from "./sqlite.js";

messageQueueContract("sqlite", async () => {
  const dir = mkdtempSync(join(tmpdir(), "chat-queue-"));
  const path = join(dir, "queue.db");
  let queue = new SqliteQueue({ path });
  return {
    queue,
    async reopen() {
      await queue.close();
      queue = new SqliteQueue({ path });
      return queue;
    },
    async dispose() {
      await queue.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
