// Shared by the pipeline stages' tests (inbox-writer, sequencer): their health is timed alike.
import { waitFor } from "../../test/support/wait.js";

/** A stage whose every batch fails, over a queue of its own, as its clock-step tests drive it. */
export interface FailingStage {
  stage: { readonly health: { check(): Promise<void> }; start(): Promise<void>; stop(): Promise<void> };
  /** How many batches have failed so far. */
  failures(): number;
  /** Publishes one record the stage will fail on. */
  publishOne(): Promise<void>;
  /** Closes the stage's queue (the stage itself is stopped first). */
  close(): Promise<void>;
}

/**
 * The two wall-clock steps a stage's stall timing must ignore. `failingStage(stallMs)` builds the
 * stage; it is called with the wall clock already replaced.
 */
export function stallTimedOnTheMonotonicClock(failingStage: (stallMs: number) => Promise<FailingStage>): void {
  // Timed on the wall clock, a step forward (NTP, a restored VM) made seconds of failures a stall, and a step back hid one for its length.
  it("times a stall on the monotonic clock: a wall clock stepped forward a minute fakes none", () =>
    withWallClockStep(failingStage, 30_000, async (s, step) => {
      step(60_000);
      await s.stage.health.check();
    }));

  it("times a stall on the monotonic clock: a wall clock stepped back an hour hides none", () =>
    withWallClockStep(failingStage, 200, async (s, step) => {
      step(-3_600_000);
      await waitFor(() => s.stage.health.check().then(() => false, () => true), "the stall reported", 10_000);
    }));
}

async function withWallClockStep(
  failingStage: (stallMs: number) => Promise<FailingStage>,
  stallMs: number,
  then: (s: FailingStage, step: (ms: number) => void) => Promise<void>,
): Promise<void> {
  // Installed before the stage reads its clock, as a step of the system clock reaches every reader.
  const wallNow = Date.now;
  let stepMs = 0;
  Date.now = () => wallNow() + stepMs;
  let s: FailingStage | undefined;
  try {
    s = await failingStage(stallMs);
    await s.stage.start();
    await s.publishOne();
    await waitFor(() => s!.failures() >= 2, "two batches failed", 10_000);
    await then(s, (ms) => (stepMs = ms));
  } finally {
    Date.now = wallNow;
    await s?.stage.stop();
    await s?.close();
  }
}
