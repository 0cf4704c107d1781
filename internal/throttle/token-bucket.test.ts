import assert from "node:assert/strict";
import { TokenBucket } from "./token-bucket.js";

describe("TokenBucket", () => {
  it("allows a burst, then one token per 1/rate, and says how long to wait", () => {
    let t = 1_000;
    const b = new TokenBucket(10, 2, () => t);
    assert.equal(b.take(), 0);
    assert.equal(b.take(), 0);
    assert.equal(b.take(), 100);
    t += 100;
    assert.equal(b.take(), 0);
  });

  it("a clock stepped back owes nothing: the bucket goes on refilling from there", () => {
    let t = 10_000_000;
    const b = new TokenBucket(10, 2, () => t);
    assert.equal(b.take(), 0);
    t -= 2 * 3600_000;
    assert.equal(b.take(), 0, "the token still there is taken");
    assert.equal(b.take(), 100, "the next is the usual wait away, not two hours");
    t += 100;
    assert.equal(b.take(), 0);
  });
});
