import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { waitFor } from "../../test/support/wait.js";
import type { MessageQueue, QueueRecord } from "./port.js";

export interface QueueFixture {
  queue: MessageQueue;
  /** Closes the queue and opens a new one on the same storage (durability checks). */
  reopen(): Promise<MessageQueue>;
  dispose(): Promise<void>;
}

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Resolves when `check` returns true; rejects after the deadline (waitFor, polled often: handlers count in memory). */
export async function until(check: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(check, what, timeoutMs, 5);
}

/**
 * The MessageQueue contract. Every adapter runs it unchanged; topic and group
 * names are unique per test so a shared real broker can be used.
 */
export function messageQueueContract(name: string, makeFixture: () => Promise<QueueFixture>): void {
  describe(`MessageQueue contract: ${name}`, function () {
    let fx: QueueFixture;
    let queue: MessageQueue;
    beforeEach(async () => {
      fx = await makeFixture();
      queue = fx.queue;
    });
    afterEach(async () => {
      await fx.dispose();
    });
    const unique = (p: string) => `${p}-${randomUUID().slice(0, 8)}`;

    it("delivers every record once per group, in publish order per key", async () => {
      const topic = unique("t");
      await queue.ensureTopics([{ topic, partitions: 4 }]);
      const keys = ["a", "b", "c", "d", "e"];
      const seen = new Map<string, number[]>();
      let total = 0;
      const sub = await queue.subscribe(unique("g"), topic, async (records) => {
        for (const r of records) {
          const [k, n] = dec(r.value).split(":");
          const list = seen.get(k!) ?? [];
          list.push(Number(n));
          seen.set(k!, list);
          total++;
        }
      });
      for (let n = 0; n < 50; n++) {
        await queue.publish(topic, keys.map((k) => ({ key: k, value: enc(`${k}:${n}`) })));
      }
      await until(() => total >= 250, "250 records");
      await sub.stop();
      for (const k of keys) assert.deepEqual(seen.get(k), [...Array(50).keys()], `order of key ${k}`);
      assert.equal(total, 250);
    });

    it("gives every group every record", async () => {
      const topic = unique("t");
      await queue.ensureTopics([{ topic, partitions: 2 }]);
      const counts = [0, 0];
      const subs = await Promise.all(
        [0, 1].map((i) => queue.subscribe(unique("g"), topic, async (rs) => void (counts[i]! += rs.length))),
      );
      await queue.publish(topic, [...Array(20).keys()].map((i) => ({ key: `k${i}`, value: enc(String(i)) })));
      await until(() => counts[0] === 20 && counts[1] === 20, "both groups");
      await Promise.all(subs.map((s) => s.stop()));
    });

    it("redelivers a batch whose handler failed, without skipping it", async () => {
      const topic = unique("t");
      await queue.ensureTopics([{ topic, partitions: 1 }]);
      let failures = 0;
      const got: string[] = [];
      const sub = await queue.subscribe(unique("g"), topic, async (records) => {
        if (failures < 2) {
          failures++;
          throw new Error("transient");
        }
        for (const r of records) got.push(dec(r.value));
      });
      await queue.publish(topic, [{ key: "k", value: enc("one") }, { key: "k", value: enc("two") }]);
      await until(() => got.length >= 2, "redelivery");
      await sub.stop();
      assert.deepEqual(got.slice(0, 2), ["one", "two"]);
      assert.equal(failures, 2);
    });

    it("resumes a group after its last committed batch", async () => {
      const topic = unique("t");
      const group = unique("g");
      await queue.ensureTopics([{ topic, partitions: 1 }]);
      const first: string[] = [];
      let sub = await queue.subscribe(group, topic, async (rs) => void first.push(...rs.map((r) => dec(r.value))));
      await queue.publish(topic, [{ key: "k", value: enc("1") }, { key: "k", value: enc("2") }]);
      await until(() => first.length === 2, "first two");
      await sub.stop();
      await queue.publish(topic, [{ key: "k", value: enc("3") }]);
      const second: string[] = [];
      sub = await queue.subscribe(group, topic, async (rs) => void second.push(...rs.map((r) => dec(r.value))));
      await until(() => second.length >= 1, "the third");
      await sub.stop();
      assert.deepEqual(second, ["3"]);
    });

    it("keeps what publish resolved across a restart, and what was not consumed comes after it", async () => {
      const topic = unique("t");
      const group = unique("g");
      await queue.ensureTopics([{ topic, partitions: 3 }]);
      await queue.publish(topic, [...Array(30).keys()].map((i) => ({ key: `u${i % 7}`, value: enc(String(i)) })));
      queue = await fx.reopen();
      await queue.ensureTopics([{ topic, partitions: 3 }]);
      const got: QueueRecord[] = [];
      const sub = await queue.subscribe(group, topic, async (rs) => void got.push(...rs));
      await until(() => got.length >= 30, "30 records after reopen");
      await sub.stop();
      assert.deepEqual(got.map((r) => Number(dec(r.value))).sort((a, b) => a - b), [...Array(30).keys()]);
    });

    it("reports what a group has not committed as its lag", async () => {
      assert.ok(queue.consumerLag, "the adapter reports consumer lag");
      const topic = unique("t");
      const group = unique("g");
      await queue.ensureTopics([{ topic, partitions: 2 }]);
      await queue.publish(topic, [...Array(5).keys()].map((i) => ({ key: `k${i}`, value: enc(String(i)) })));
      assert.equal(await queue.consumerLag!(group, topic), 5);
      let got = 0;
      const sub = await queue.subscribe(group, topic, async (rs) => void (got += rs.length));
      await until(() => got === 5, "the five records");
      await sub.stop();
      assert.equal(await queue.consumerLag!(group, topic), 0);
    });

    it("refuses a topic it does not know", async () => {
      await assert.rejects(queue.publish(unique("missing"), [{ key: "k", value: enc("x") }]), /topic/);
    });
  });
}
