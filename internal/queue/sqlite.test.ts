import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { mock } from "node:test";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { Logger } from "pino";
import { waitFor } from "../../test/support/wait.js";
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

/** Polls `check` until it rejects with an error matching `message`. */
async function untilRejects(check: () => Promise<void>, message: RegExp, what: string, timeoutMs = 5_000): Promise<void> {
  const err = await waitFor(() => check().then(() => undefined, (e: Error) => e), what, timeoutMs, 5);
  assert.match(err.message, message);
}

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

  it("lives through writes that fail (a full disk): the trim's timer throws nothing, writeCheck fails until a write goes through", async () => {
    // Triggers on another connection fail the queue's writes as SQLITE_FULL would, with no disk to fill.
    const path = join(dir, "queue.db");
    const queue = new SqliteQueue({ path, trimIntervalMs: 10 });
    const other = new Database(path);
    try {
      await queue.ensureTopics([{ topic: "t", partitions: 1 }]);
      await queue.writeCheck();
      other.exec("CREATE TRIGGER full_del BEFORE DELETE ON records BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");
      await queue.publish("t", [{ key: "k", value: enc("1") }]);
      let handled = 0;
      const sub = await queue.subscribe("A", "t", async (rs) => void (handled += rs.length));
      await until(() => handled === 1, "A's record");
      // The timer's trim now fails at every tick; the process must carry on and say so.
      await untilRejects(() => queue.writeCheck(), /queue writes failing .*database or disk is full/, "a failed trim");

      other.exec("CREATE TRIGGER full_ins BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");
      await assert.rejects(queue.publish("t", [{ key: "k", value: enc("2") }]), /database or disk is full/);
      await assert.rejects(queue.writeCheck(), /queue writes failing/);

      other.exec("DROP TRIGGER full_ins; DROP TRIGGER full_del");
      await queue.publish("t", [{ key: "k", value: enc("3") }]);
      await queue.writeCheck();
      await until(() => handled === 2, "the record published after the disk had room again");
      await sub.stop();
    } finally {
      other.close();
      await queue.close();
    }
  });

  it("carries on when reading the next batch fails (the file's error), and consumes once reads go through", async () => {
    const path = join(dir, "queue.db");
    const warned: string[] = [];
    const logger = { warn: (o: { err?: Error }) => void warned.push(String(o.err?.message)) } as unknown as Logger;
    const queue = new SqliteQueue({ path, logger });
    const other = new Database(path);
    try {
      await queue.ensureTopics([{ topic: "t", partitions: 1 }]);
      await queue.publish("t", [{ key: "k", value: enc("1") }]);
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      const seen: string[] = [];
      const sub = await queue.subscribe("A", "t", async (rs) => {
        for (const r of rs) seen.push(dec(r.value));
        if (seen.length === 1) await held;
      });
      await until(() => seen.length === 1, "the first record");
      // The next read, after this batch, fails: SQLite answers "no such table" as it would an I/O error.
      other.exec("ALTER TABLE records RENAME TO records_away");
      release();
      await until(() => warned.filter((m) => /no such table/.test(m)).length >= 2, "reads failing, and tried again");
      other.exec("ALTER TABLE records_away RENAME TO records");
      await queue.publish("t", [{ key: "k", value: enc("2") }]);
      await until(() => seen.length === 2, "the record published once reads went through");
      assert.deepEqual(seen, ["1", "2"]);
      await sub.stop();
    } finally {
      other.close();
      await queue.close();
    }
  });

  it("retries offset commits that fail with a growing delay, not on every turn, and lands them once writes go through", async () => {
    const path = join(dir, "queue.db");
    const queue = new SqliteQueue({ path, trimIntervalMs: 3_600_000 });
    const other = new Database(path);
    const committed = () => other.prepare("SELECT next_off FROM group_offsets WHERE grp = 'A'").get() as { next_off: number } | undefined;
    try {
      await queue.ensureTopics([{ topic: "t", partitions: 1 }]);
      other.exec("CREATE TRIGGER full_commit BEFORE INSERT ON group_offsets BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");
      await queue.publish("t", [{ key: "k", value: enc("1") }]);
      let handled = 0;
      const sub = await queue.subscribe("A", "t", async (rs) => void (handled += rs.length));
      await until(() => handled === 1, "A's record");
      const since = Date.now();
      await until(() => queue.failedWrites >= 4, "four failed commits");
      // Retried on every turn, four attempts take well under a millisecond each; with the delays 10, 20, 40 ms, at least 70.
      assert.ok(Date.now() - since >= 70, `four attempts in ${Date.now() - since} ms`);
      await assert.rejects(queue.writeCheck(), /queue writes failing/);
      other.exec("DROP TRIGGER full_commit");
      await until(() => committed()?.next_off === 1, "the commit once the disk has room", 5_000);
      await queue.writeCheck();
      await sub.stop();
    } finally {
      other.close();
      await queue.close();
    }
  });

  it("lets a failed write fail writeCheck only for its window when nothing is written after it", async () => {
    const path = join(dir, "queue.db");
    const queue = new SqliteQueue({ path, trimIntervalMs: 3_600_000, writeFailureWindowMs: 50 });
    const other = new Database(path);
    // The window is on the wall clock (Date.now): faked, it passes when the test says, not when a loaded machine gets there.
    mock.timers.enable({ apis: ["Date"], now: Date.now() });
    try {
      await queue.ensureTopics([{ topic: "t", partitions: 1 }]);
      other.exec("CREATE TRIGGER full_ins BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");
      await assert.rejects(queue.publish("t", [{ key: "k", value: enc("1") }]));
      await assert.rejects(queue.writeCheck());
      mock.timers.tick(49);
      await assert.rejects(queue.writeCheck(), /queue writes failing/, "still within the window");
      mock.timers.tick(1);
      await queue.writeCheck();
    } finally {
      mock.timers.reset();
      other.close();
      await queue.close();
    }
  });

  it("stops only once the batch in hand is done and committed, however often stop is called: no standby reads the batch meanwhile", async () => {
    const queue = new SqliteQueue({ path: join(dir, "queue.db") });
    try {
      await queue.ensureTopics([{ topic: "t", partitions: 1 }]);
      await queue.publish("t", [{ key: "k", value: enc("one") }]);
      const events: string[] = [];
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      const first = await queue.subscribe("g", "t", async (rs) => {
        events.push(`first got ${rs.map((r) => dec(r.value))}`);
        await released;
        events.push("first done");
      });
      // A second member of the group: a standby, which takes over when the first stops.
      const standby = await queue.subscribe("g", "t", async (rs) => void events.push(`standby got ${rs.map((r) => dec(r.value))}`));
      await until(() => events.length === 1, "the first member's batch in hand");
      let stopsDone = 0;
      const stops = [first.stop(), first.stop()].map((p) => p.then(() => void stopsDone++));
      // A turn of the event loop: a stop that did not wait for the batch has resolved by now.
      await new Promise((r) => setImmediate(r));
      assert.equal(stopsDone, 0, "a stop resolved with the batch still in hand");
      assert.deepEqual(events, ["first got one"], "the standby read the batch while the first member still had it");
      release();
      await Promise.all(stops);
      await queue.publish("t", [{ key: "k", value: enc("two") }]);
      await until(() => events.length === 3, "the record after the stop, at the standby");
      await standby.stop();
      assert.deepEqual(events, ["first got one", "first done", "standby got two"]);
    } finally {
      await queue.close();
    }
  });

  it("stops at once when the batch in hand fails while it stops, rather than wait out the backoff before a retry that will not come", async () => {
    const queue = new SqliteQueue({ path: join(dir, "queue.db") });
    try {
      await queue.ensureTopics([{ topic: "t", partitions: 1 }]);
      await queue.publish("t", [{ key: "k", value: enc("one") }]);
      let calls = 0;
      let fail!: () => void;
      const failing = new Promise<void>((_, reject) => (fail = () => reject(new Error("an engine is down"))));
      failing.catch(() => {});
      const sub = await queue.subscribe("g", "t", async () => {
        // Failures enough for a backoff of 640 ms, then one in hand when the stop comes.
        if (++calls <= 6) throw new Error("an engine is down");
        await failing;
      });
      await until(() => calls === 7, "the seventh attempt in hand");
      let stopped = false;
      const stopping = sub.stop().then(() => void (stopped = true));
      fail();
      // A few turns of the event loop, far less than the backoff (timers cannot fire before their delay).
      for (let i = 0; i < 5 && !stopped; i++) await new Promise((r) => setImmediate(r));
      assert.equal(stopped, true, "the stop waited out the backoff");
      await stopping;
      assert.equal(calls, 7);
    } finally {
      await queue.close();
    }
  });

  it("refuses a subscription once closed, rather than start a consumer that retries reading the closed file for ever", async () => {
    const queue = new SqliteQueue({ path: join(dir, "queue.db") });
    await queue.ensureTopics([{ topic: "t", partitions: 1 }]);
    await queue.close();
    let calls = 0;
    await assert.rejects(queue.subscribe("g", "t", async () => void calls++), /queue is closed/);
    assert.equal(calls, 0);
  });

  describe("trims no record a group has yet to handle", () => {
    const records = (n: number) => [...Array(n).keys()].map((i) => ({ key: "k", value: enc(String(i)) }));
    const all = (n: number) => [...Array(n).keys()].map(String);
    let queue: SqliteQueue;
    beforeEach(async () => {
      // The timer never fires in these tests: each trims when the race is set up.
      queue = new SqliteQueue({ path: join(dir, "queue.db"), trimIntervalMs: 3_600_000 });
      await queue.ensureTopics([{ topic: "t", partitions: 1 }]);
      await queue.publish("t", records(10));
    });
    afterEach(() => queue.close());
    /** The trim reads the file: wait until A's commit of all ten is there, not only in memory. */
    const fileSaysADone = () =>
      until(() => {
        const peek = new Database(join(dir, "queue.db"), { readonly: true });
        try {
          const row = peek.prepare("SELECT next_off FROM group_offsets WHERE grp = 'A'").get() as { next_off: number } | undefined;
          return row?.next_off === 10;
        } finally {
          peek.close();
        }
      }, "A's commit in the file");

    it("while a group's first batch keeps failing and another group has handled them all", async () => {
      const a: string[] = [];
      const b: string[] = [];
      let failures = 0;
      let failing = true;
      const subA = await queue.subscribe("A", "t", async (rs) => void a.push(...rs.map((r) => dec(r.value))));
      const subB = await queue.subscribe("B", "t", async (rs) => {
        if (failing) {
          failures++;
          throw new Error("an engine is down");
        }
        b.push(...rs.map((r) => dec(r.value)));
      });
      await until(() => a.length === 10 && failures > 0, "A done, B failing");
      await fileSaysADone();
      queue.trim();
      failing = false;
      await until(() => b.length >= 10, "B's records");
      await Promise.all([subA.stop(), subB.stop()]);
      assert.deepEqual(b, all(10));
    });

    it("while a group's first batch is slow", async () => {
      const b: string[] = [];
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let started = false;
      const subB = await queue.subscribe(
        "B",
        "t",
        async (rs) => {
          started = true;
          await gate;
          b.push(...rs.map((r) => dec(r.value)));
        },
        { maxBatch: 2 },
      );
      await until(() => started, "B's first batch under way");
      let handled = 0;
      const subA = await queue.subscribe("A", "t", async (rs) => void (handled += rs.length));
      await until(() => handled === 10, "A done");
      await fileSaysADone();
      queue.trim();
      release();
      await until(() => b.length >= 10, "B's records");
      await Promise.all([subA.stop(), subB.stop()]);
      assert.deepEqual(b, all(10));
    });

    it("for a group that began before a restart and had committed nothing", async () => {
      const path = join(dir, "queue.db");
      const stuck = await queue.subscribe("B", "t", async () => {
        throw new Error("an engine is down");
      });
      let handled = 0;
      const subA = await queue.subscribe("A", "t", async (rs) => void (handled += rs.length));
      await until(() => handled === 10, "A done");
      await Promise.all([stuck.stop(), subA.stop()]);
      await queue.close();
      queue = new SqliteQueue({ path, trimIntervalMs: 3_600_000 });
      queue.trim();
      const b: string[] = [];
      const subB = await queue.subscribe("B", "t", async (rs) => void b.push(...rs.map((r) => dec(r.value))));
      await until(() => b.length >= 10, "B's records after the restart");
      await subB.stop();
      assert.deepEqual(b, all(10));
    });
  });
});
