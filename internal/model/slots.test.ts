import assert from "node:assert/strict";
import { Slots } from "./slots.js";

describe("Slots", () => {
  it("lets `size` holders in at once and the rest in the order they asked, each release handing its slot on", async () => {
    const slots = new Slots(2);
    const open: (() => void)[] = [];
    const order: number[] = [];
    let inside = 0;
    let most = 0;
    const runs = [1, 2, 3, 4, 5].map((i) =>
      slots.run(async () => {
        inside++;
        most = Math.max(most, inside);
        order.push(i);
        await new Promise<void>((r) => open.push(r));
        inside--;
      }),
    );
    for (let done = 0; done < 5; done++) {
      while (open.length === 0) await new Promise((r) => setImmediate(r));
      open.shift()!();
    }
    await Promise.all(runs);
    assert.equal(most, 2);
    assert.deepEqual(order, [1, 2, 3, 4, 5]);
  });

  it("releases a slot whose work failed", async () => {
    const slots = new Slots(1);
    await assert.rejects(slots.run(() => Promise.reject(new Error("boom"))), /boom/);
    assert.equal(await slots.run(async () => "next"), "next");
  });
});
