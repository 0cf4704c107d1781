import assert from "node:assert/strict";
import { EventLoopDelay } from "./event-loop.js";

describe("EventLoopDelay", () => {
  const loops: EventLoopDelay[] = [];
  afterEach(() => loops.splice(0).forEach((l) => l.stop()));

  /** A measure on a clock the test moves; each turn of its timer reads the clock once. */
  function onClock(tickMs: number) {
    const clock: { t: number; onRead?: () => void } = { t: 1_000 };
    const loop = new EventLoopDelay({
      tickMs,
      now: () => {
        const read = clock.onRead;
        clock.onRead = undefined;
        read?.();
        return clock.t;
      },
    });
    loops.push(loop);
    /**
     * Resolves at the timer's next turn, exactly that one: the turn finishes synchronously
     * after its read, and the test goes on (a microtask) before the timer can turn again,
     * where polling for it let a loaded machine see two turns, the second clearing the first's lateness.
     */
    const turned = () => new Promise<void>((resolve) => (clock.onRead = resolve));
    return { clock, loop, turned };
  }

  it("reads 0 while the timer is not yet due", () => {
    const { clock, loop } = onClock(60_000);
    assert.equal(loop.delayMs(), 0);
    clock.t += 59_000;
    assert.equal(loop.delayMs(), 0);
  });

  it("reads how overdue the timer is while the loop is held: a probe answered before the timer's turn sees the block", () => {
    const { clock, loop } = onClock(60_000);
    clock.t += 60_000 + 7_000;
    assert.equal(loop.delayMs(), 7_000);
  });

  it("keeps the lateness of the last turn until the next one, which on time clears it", async () => {
    const { clock, loop, turned } = onClock(5);
    // Due at 1,005; the clock says 8,010 when it turns: 7,005 ms late.
    clock.t += 7_010;
    await turned();
    assert.equal(loop.delayMs(), 7_005);
    // The clock stands still: the next turn comes before it is due.
    await turned();
    assert.equal(loop.delayMs(), 0);
  });

  it("sees a real synchronous block on the process's own clock", () => {
    const loop = new EventLoopDelay({ tickMs: 10 });
    loops.push(loop);
    const until = performance.now() + 60;
    while (performance.now() < until); // the loop held, as a wedged handler holds it
    assert.ok(loop.delayMs() >= 45, String(loop.delayMs()));
  });
});
