import assert from "node:assert/strict";
import { LruMap } from "./lru-map.js";

describe("LruMap", () => {
  it("drops the least recently set or got entry beyond its capacity", () => {
    const m = new LruMap<string, number>(2);
    m.set("a", 1);
    m.set("b", 2);
    assert.equal(m.get("a"), 1); // a is now the most recent
    m.set("c", 3);
    assert.equal(m.peek("b"), undefined);
    assert.equal(m.peek("a"), 1);
    assert.equal(m.size, 2);
  });

  it("peek leaves the order alone", () => {
    const m = new LruMap<string, number>(2);
    m.set("a", 1);
    m.set("b", 2);
    assert.equal(m.peek("a"), 1);
    m.set("c", 3);
    assert.equal(m.peek("a"), undefined);
    assert.equal(m.peek("b"), 2);
  });

  it("refuses a capacity below one", () => {
    assert.throws(() => new LruMap(0), /capacity/);
  });
});
