import assert from "node:assert/strict";
import { allSettledOrFirstFailure } from "./settle.js";

describe("allSettledOrFirstFailure", () => {
  it("fails only once every promise has settled, with the first failure", async () => {
    let finishSlow!: () => void;
    let slowDone = false;
    const slow = new Promise<number>((r) => (finishSlow = () => r(1))).then((v) => ((slowDone = true), v));
    const all = allSettledOrFirstFailure([Promise.reject(new Error("first")), slow, Promise.reject(new Error("second"))]);
    const seen: { failure?: unknown } = {};
    const watched = all.catch((e: unknown) => (seen.failure = e));
    await new Promise((r) => setImmediate(r));
    assert.equal(seen.failure, undefined, "still waiting for the slow one");
    finishSlow();
    await watched;
    assert.equal(slowDone, true);
    assert.match(String(seen.failure), /first/);
  });

  it("gives every value in order when none fails", async () => {
    assert.deepEqual(await allSettledOrFirstFailure([Promise.resolve(1), Promise.resolve(2)]), [1, 2]);
  });
});
