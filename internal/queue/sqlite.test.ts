import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { messageQueueContract, until } from "./contract.js";
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

describe("SqliteQueue", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  const dec = (b: Uint8Array) => new TextDecoder().decode(b);
  let dir: string;
  beforeEach(() => void (dir = mkdtempSync(join(tmpdir(), "chat-queue-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("delivers what is published after a restart that followed a trim of everything consumed", async () => {
    // The trim empties the partition; the next offset must still continue from the
    // group's committed one, or the group waits past records that start again at 0.
    const path = join(dir, "queue.db");
    const [topic, group] = ["t", "g"];
    let queue = new SqliteQueue({ path, trimIntervalMs: 10 });
    await queue.ensureTopics([{ topic, partitions: 1 }]);
    await queue.publish(topic, [{ key: "k", value: enc("1") }, { key: "k", value: enc("2") }]);
    const first: string[] = [];
    let sub = await queue.subscribe(group, topic, async (rs) => void first.push(...rs.map((r) => dec(r.value))));
    await until(() => first.length === 2, "the first two");
    await sub.stop();
    const peek = new Database(path, { readonly: true });
    try {
      await until(() => (peek.prepare("SELECT COUNT(*) AS n FROM records").get() as { n: number }).n === 0, "the trim");
    } finally {
      peek.close();
    }
    await queue.close();

    queue = new SqliteQueue({ path, trimIntervalMs: 10 });
    try {
      await queue.ensureTopics([{ topic, partitions: 1 }]);
      await queue.publish(topic, [{ key: "k", value: enc("3") }]);
      assert.equal(await queue.consumerLag(group, topic), 1, "the new record is lag");
      const second: string[] = [];
      sub = await queue.subscribe(group, topic, async (rs) => void second.push(...rs.map((r) => dec(r.value))));
      await until(() => second.length >= 1, "the record published after the restart", 5_000);
      await sub.stop();
      assert.deepEqual(second, ["3"]);
    } finally {
      await queue.close();
    }
  });
});
