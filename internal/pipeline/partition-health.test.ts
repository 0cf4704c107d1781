import assert from "node:assert/strict";
import type { QueueRecord } from "../queue/port.js";
import { PartitionedStageHealth } from "./partition-health.js";

describe("PartitionedStageHealth", () => {
  const batch = (partition: number) => [{ partition } as QueueRecord];

  // Forgotten only inside check(): with no probe in between (none configured, or a balancer
  // probing another port), a partition's new run of failures took the old run's start as its
  // own, and its first failure in an hour read as an hour-long stall.
  it("starts a partition's clock afresh at a failure long after its last, though no check came between", async () => {
    const clock = { ms: 1_000_000 };
    const health = new PartitionedStageHealth("sequencer", 30_000, () => clock.ms);
    const fail = () => health.runBatch(batch(3), () => Promise.reject(new Error("refused"))).catch(() => {});
    const ok = (partition: number) => health.runBatch(batch(partition), async () => {});
    await fail();
    clock.ms += 1_000;
    await fail();
    clock.ms += 3_600_000; // moved to another worker, and back an hour later
    await ok(1);
    await fail();
    clock.ms += 1_000;
    await ok(1);
    await health.check();
    // Still failing (its batch handed again every few seconds): a stall once its run is 30 s old.
    for (let i = 0; i < 3; i++) {
      clock.ms += 10_000;
      await fail();
      await ok(1);
    }
    await assert.rejects(health.check(), /every batch of partition 3 has failed for 31 s/);
  });
});
