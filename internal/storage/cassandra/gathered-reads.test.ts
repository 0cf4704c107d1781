import assert from "node:assert/strict";
import { GatheredReads } from "./gathered-reads.js";

type Key = { user: number; message: string };

/** A GatheredReads over keys of a user and a message, grouped by message, that records each read's keys. */
function readsByMessage(failing?: string) {
  const reads: Key[][] = [];
  const gathered = new GatheredReads<Key, string>(
    async (keys) => {
      reads.push(keys);
      if (keys.some((k) => k.message === failing)) throw new Error(`read of ${failing} failed`);
      return new Map(keys.filter((k) => k.user % 2 === 0).map((k) => [`${k.user}/${k.message}`, `row ${k.user}/${k.message}`]));
    },
    (k) => `${k.user}/${k.message}`,
    (k) => k.message,
  );
  return { gathered, reads };
}

describe("GatheredReads (the point reads of one turn as IN reads)", () => {
  it("reads the keys of one turn per group, a hundred keys per read at most, and answers each key its row", async () => {
    const { gathered, reads } = readsByMessage();
    const keys = [
      ...Array.from({ length: 150 }, (_, user) => ({ user, message: "a" })),
      ...Array.from({ length: 30 }, (_, user) => ({ user, message: "b" })),
    ];
    // Interleaved, and one key asked twice: it is read once.
    const asked = [...keys.filter((_, i) => i % 2 === 0), ...keys.filter((_, i) => i % 2 === 1), keys[3]!];
    const answers = await Promise.all(asked.map((k) => gathered.read(k)));

    assert.deepStrictEqual(answers, asked.map((k) => (k.user % 2 === 0 ? `row ${k.user}/${k.message}` : undefined)));
    assert.deepStrictEqual(
      reads.map((keys) => [new Set(keys.map((k) => k.message)).size === 1 ? keys[0]!.message : "mixed", keys.length]),
      [["a", 100], ["a", 50], ["b", 30]],
    );
  });

  it("fails the keys of a read that fails, and only those", async () => {
    const { gathered } = readsByMessage("b");
    const [a, b] = await Promise.allSettled([gathered.read({ user: 2, message: "a" }), gathered.read({ user: 2, message: "b" })]);
    assert.deepStrictEqual(a, { status: "fulfilled", value: "row 2/a" });
    assert.equal(b.status, "rejected");
    assert.match((b as PromiseRejectedResult).reason.message, /read of b failed/);
  });

  it("reads all keys of a turn together when there are no groups", async () => {
    const reads: number[][] = [];
    const gathered = new GatheredReads<number, number>(async (keys) => (reads.push(keys), new Map(keys.map((k) => [String(k), k * 10]))), String);
    assert.deepStrictEqual(await Promise.all([1, 2, 3].map((k) => gathered.read(k))), [10, 20, 30]);
    assert.deepStrictEqual(reads, [[1, 2, 3]]);
  });
});
