import assert from "node:assert/strict";
import { ServerCooldowns } from "./cooldowns.js";

describe("ServerCooldowns (how long a gateway leaves a failing chat server alone)", () => {
  let now: number;
  const cooldowns = (random: () => number = () => 0.5) => new ServerCooldowns({ firstMs: 1_000, maxMs: 8_000, now: () => now, random });

  beforeEach(() => (now = 5_000));

  it("spreads the gateways that saw one server fail at the same moment over half the step, rather than all coming back in lock-step", () => {
    const waits = Array.from({ length: 100 }, () => cooldowns(Math.random).failed("a"));
    assert.ok(waits.every((w) => w >= 500 && w <= 1_000), `waits within half the step and all of it: ${Math.min(...waits)}..${Math.max(...waits)}`);
    assert.ok(new Set(waits).size > 90, "the gateways come back at different moments");
    assert.ok(Math.max(...waits) - Math.min(...waits) > 250, "over a spread, not bunched together");
  });

  it("doubles the wait with each failure in a row up to the cap, and counts the failures of one cooldown once", () => {
    const c = cooldowns();
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      waits.push(c.failed("a"));
      // Its other sessions fail too, one by one, within the same cooldown.
      now += 1;
      assert.equal(c.failed("a"), waits.at(-1)! - 1, "one outage is one failure");
      assert.ok(c.cooling("a", now));
      now += waits.at(-1)!;
      assert.ok(!c.cooling("a", now));
    }
    assert.deepEqual(waits, [750, 1_500, 3_000, 6_000, 6_000, 6_000]);
    assert.ok(!c.cooling("b", now), "each server has its own");
  });

  it("starts afresh once the server answers, without ending a cooldown under way", () => {
    const c = cooldowns();
    for (let i = 0; i < 3; i++) {
      now += c.failed("a") + 1;
    }
    assert.equal(c.failures("a"), 3);
    c.answered("a");
    assert.equal(c.failures("a"), 0);
    assert.equal(c.failed("a"), 750);
    // A session placed before this failure answers now: the server stays out of reach until the wait ends.
    c.answered("a");
    assert.ok(c.cooling("a", now));
    now += 751;
    assert.equal(c.failed("a"), 750, "the next failure is a first one again");
  });
});
