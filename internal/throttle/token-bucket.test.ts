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

describe("TokenBucket: takes of many tokens (a byte budget)", () => {
  it("takes a cost at once, refuses one past what is there with the wait for all of it, and costs at most the burst", () => {
    let t = 1_000;
    const b = new TokenBucket(1000, 3000, () => t);
    assert.equal(b.take(2000), 0);
    assert.equal(b.take(2000), 1000, "1,000 tokens short at 1,000 a second");
    assert.equal(b.take(500), 0, "a smaller cost fits in what is left");
    t += 3000;
    assert.equal(b.take(10_000), 0, "past the burst: the full bucket pays for it");
    assert.equal(b.take(1), 1);
  });
});

describe("TokenBucket: refused takes", () => {
  it("tells each refused take a later turn, a token apart, and each comes back to a token", () => {
    let t = 1_000;
    const b = new TokenBucket(10, 1, () => t);
    assert.equal(b.take(), 0);
    const waits = [b.take(), b.take(), b.take()];
    assert.deepEqual(waits, [100, 200, 300]);
    for (const w of waits) {
      t = 1_000 + w;
      assert.equal(b.take(), 0, `the take told to wait ${w} ms finds its token`);
    }
  });

  it("lets a take come back after exactly the wait it was told, though the clock's fractions of a millisecond refill a hair short", () => {
    // As performance.now reads: 1050.1 - 1000.1 is 49.99999999999977 in floating point, a refill of 999.99999999999... tokens.
    let t = 1_000.1;
    const b = new TokenBucket(20_000, 1000, () => t);
    assert.equal(b.take(1000), 0);
    const wait = b.take(1000);
    assert.equal(wait, 50);
    t += wait;
    assert.equal(b.take(1000), 0, "its tokens are there");
  });

  it("promises from the first free token once the earlier promises are past", () => {
    let t = 1_000;
    const b = new TokenBucket(10, 1, () => t);
    b.take();
    assert.equal(b.take(), 100);
    t = 5_000;
    assert.equal(b.take(), 0, "the bucket refilled");
    assert.equal(b.take(), 100, "the usual wait, not one behind a promise long past");
  });

  it("promises a turn at most a second past its due time, however many refused takes came before it", () => {
    // One device flooding at the limit for a minute, taking each token as it comes and refused in between.
    let t = 1_000;
    const b = new TokenBucket(20, 20, () => t);
    for (let i = 0; i < 20; i++) b.take();
    for (let ms = 0; ms < 60_000; ms += 10) {
      t = 1_000 + ms;
      b.take();
    }
    const wait = b.take();
    assert.ok(wait <= 1_050, `another device of the account is told ${wait} ms, not half a minute`);
    t += wait;
    assert.equal(b.take(), 0, "and finds its token when it comes back");
  });

  it("later() promises a turn without taking a token", () => {
    let t = 1_000;
    const b = new TokenBucket(10, 2, () => t);
    assert.equal(b.later(), 1, "a token is there: its turn is now");
    assert.equal(b.later(), 100);
    assert.equal(b.take(), 0, "the tokens are still there");
  });
});
