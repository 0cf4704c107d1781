import assert from "node:assert/strict";
import type { QueueRecord } from "../queue/port.js";
import { FAILURE_FORGOTTEN_MS } from "../observability/stage-health.js";
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

  // Its failures timed apart over 30 s, each one (a Cassandra read timing out, retried, ~35 s)
  // started a fresh run, and the partition never stalled while the others kept /healthz passing.
  it("reports a partition whose every batch fails as stalled however long each takes to fail", async () => {
    const clock = { ms: 1_000_000 };
    const health = new PartitionedStageHealth("sequencer", 30_000, () => clock.ms);
    const slowFailure = () =>
      health
        .runBatch(batch(3), async () => {
          clock.ms += 35_000;
          throw new Error("read timed out");
        })
        .catch(() => {});
    const ok = (partition: number) => health.runBatch(batch(partition), async () => {});
    await slowFailure();
    for (let i = 0; i < 4; i++) {
      clock.ms += 5_000; // Kafka's backoff
      await ok(1);
      await slowFailure();
    }
    await assert.rejects(health.check(), /^Error: sequencer: every batch of partition 3 has failed for 160 s \(last: read timed out\)/);
    // A success ends the run.
    await ok(3);
    await health.check();
  });

  it("counts a batch in hand toward its partition's run, however long it has been running", async () => {
    const clock = { ms: 1_000_000 };
    const health = new PartitionedStageHealth("inbox-writer", 30_000, () => clock.ms);
    await health.runBatch(batch(3), () => Promise.reject(new Error("refused"))).catch(() => {});
    clock.ms += 5_000;
    let end!: (err: Error) => void;
    const slow = health.runBatch(batch(3), () => new Promise<void>((_, reject) => (end = reject))).catch(() => {});
    clock.ms += 200_000; // past FAILURE_FORGOTTEN_MS since the last failure, with the retry still in hand
    await health.runBatch(batch(1), async () => {});
    await assert.rejects(health.check(), /inbox-writer: every batch of partition 3 has failed for 205 s/);
    end(new Error("timed out"));
    await slow;
    await assert.rejects(health.check(), /partition 3 has failed for 205 s \(last: timed out\)/);
  });

  // Each join of the group (told through consumerTrouble(undefined)) forgot every partition's
  // run, so a partition whose batches kept failing through rebalances every few seconds (a
  // rolling deploy, a member flapping) started afresh at each and never reported a stall.
  it("keeps a partition's run through rejoins that leave the partition here, however often they come", async () => {
    const clock = { ms: 1_000_000 };
    const health = new PartitionedStageHealth("sequencer", 30_000, () => clock.ms);
    const fail = () => health.runBatch(batch(3), () => Promise.reject(new Error("refused"))).catch(() => {});
    const ok = () => health.runBatch(batch(1), async () => {});
    for (let i = 0; i < 8; i++) {
      await fail();
      await ok();
      clock.ms += 4_000;
      health.consumerTrouble(undefined);
      health.assigned([1, 3]);
      await health.check().catch(() => {});
    }
    await assert.rejects(health.check(), /every batch of partition 3 has failed for 32 s/);
    // Moved to another worker, where its batches may well go through: not this worker's stall.
    health.consumerTrouble(undefined);
    health.assigned([1]);
    await health.check();
    // Back here: a run of its own from its next failure.
    health.assigned([1, 3]);
    await fail();
    await ok();
    clock.ms += 29_000;
    await health.check();
  });

  it("forgets a partition's failures once no batch of it came for FAILURE_FORGOTTEN_MS, or at a rejoin that moved it away", async () => {
    const clock = { ms: 1_000_000 };
    const health = new PartitionedStageHealth("sequencer", 30_000, () => clock.ms);
    const fail = (partition: number) => health.runBatch(batch(partition), () => Promise.reject(new Error("refused"))).catch(() => {});
    const ok = (partition: number) => health.runBatch(batch(partition), async () => {});
    // Moved to another worker with no rejoin told (or the queue's next batch long in coming).
    await fail(3);
    clock.ms += 31_000;
    await ok(1);
    await assert.rejects(health.check(), /partition 3/);
    clock.ms += FAILURE_FORGOTTEN_MS;
    await health.check();
    // A rejoin that moved it away: another worker's now; if it comes back, its next failure starts afresh.
    await fail(5);
    clock.ms += 31_000;
    await ok(1);
    await assert.rejects(health.check(), /partition 5/);
    health.consumerTrouble(undefined);
    health.assigned([1, 2]);
    await health.check();
    health.assigned([1, 5]);
    await fail(5);
    clock.ms += 29_000;
    await ok(1);
    await health.check();
    clock.ms += 2_000;
    await assert.rejects(health.check(), /partition 5 has failed for 31 s/);
  });
});
