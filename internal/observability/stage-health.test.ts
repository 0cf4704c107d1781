import assert from "node:assert/strict";
import { FAILURE_FORGOTTEN_MS, StageHealth } from "./stage-health.js";

describe("StageHealth", () => {
  it("fails its check once batches have failed for stallMs with none succeeding, and recovers at the next success", async () => {
    const clock = { ms: 1_000 };
    const h = new StageHealth("sequencer", 30_000, () => clock.ms);
    const fail = () => h.run(() => Promise.reject(new Error("cassandra unreachable")));
    await h.check();
    await assert.rejects(fail());
    clock.ms += 29_999;
    await assert.rejects(fail());
    await h.check(); // not yet: a batch or two failing is a retry, not a stall
    clock.ms += 1;
    await assert.rejects(h.check(), /sequencer: every batch has failed for 30 s \(last: cassandra unreachable\)/);
    assert.equal(await h.run(async () => 7), 7);
    await h.check();
    // A new run of failures starts its own clock.
    await assert.rejects(fail());
    clock.ms += 29_000;
    await h.check();
  });

  it("passes again once no batch has failed for FAILURE_FORGOTTEN_MS: none came since (a quiet notifier, a partition moved away), so none is stalled", async () => {
    // Only a success ended a run of failures: a fan-out that failed for good, or a batch whose partition
    // went to another worker, with nothing handed since, kept /readyz 503 for good ("every batch has failed
    // for 3600 s"), and chatd's with it, whose balancer then sent nothing that could have cleared it.
    const clock = { ms: 1_000 };
    const h = new StageHealth("notifier", 30_000, () => clock.ms);
    const fail = () => h.run(() => Promise.reject(new Error("endpoints unreadable")));
    await assert.rejects(fail());
    clock.ms += FAILURE_FORGOTTEN_MS + 1;
    await h.check();
    clock.ms += 3_600_000;
    await h.check();
    // A new failure starts a clock of its own.
    await assert.rejects(fail());
    clock.ms += 29_000;
    await h.check();
  });

  it("starts a new run's clock at a failure that comes FAILURE_FORGOTTEN_MS after the last, also when no check came between", async () => {
    // Only a check forgot the old run: with no probe between the two failures, the second one continued
    // it, and the next check said "every batch has failed for 3600 s" of a stage that had failed once.
    const clock = { ms: 1_000 };
    const h = new StageHealth("notifier", 30_000, () => clock.ms);
    const fail = () => h.run(() => Promise.reject(new Error("endpoints unreadable")));
    await assert.rejects(fail());
    clock.ms += 3_600_000;
    await assert.rejects(fail());
    await h.check();
    clock.ms += 29_000;
    await h.check();
    clock.ms += 1_000;
    await assert.rejects(h.check(), /every batch has failed for 30 s/);
  });

  it("keeps failing its check through a stall whose batch is handed again every few seconds, or retried within the notifier's longest backoff", async () => {
    const clock = { ms: 1_000 };
    const h = new StageHealth("sequencer", 30_000, () => clock.ms);
    const fail = () => h.run(() => Promise.reject(new Error("cassandra unreachable")));
    await assert.rejects(fail());
    for (let i = 0; i < 10; i++) {
      // backoffMaxMs, the longest a due notification's endpoint read waits to be tried again, and the read's
      // own time until it fails (a timeout): the next failure comes past 60 s.
      clock.ms += 60_000 + 12_000;
      if (i > 0) await assert.rejects(h.check(), /every batch has failed/);
      await assert.rejects(fail());
      await assert.rejects(h.check(), /every batch has failed/);
    }
  });

  // Timed from failure to failure, a stage whose every batch took ~2 min to fail (a Cassandra read timing
  // out, retried, then Kafka's backoff) started a fresh run at each failure: /healthz passed from 120 s
  // after a failure until 30 s after the next, and always with a stallMs past 120 s, while nothing moved.
  it("reports a stage whose every batch fails as stalled however long each takes to fail", async () => {
    const clock = { ms: 1_000_000 };
    const h = new StageHealth("sequencer", 30_000, () => clock.ms);
    const slowFailure = (during: () => Promise<void> = async () => {}) =>
      h
        .run(async () => {
          clock.ms += 116_000;
          await during();
          clock.ms += 2_000;
          throw new Error("read timed out");
        })
        .catch((err: Error) => {
          if (err.message !== "read timed out") throw err; // the check's, in hand
        });
    await slowFailure();
    for (let i = 0; i < 4; i++) {
      clock.ms += 5_000; // Kafka's backoff
      // 121 s since the last failure, the retry still in hand.
      await slowFailure(() => assert.rejects(h.check(), /^Error: sequencer: every batch has failed for \d+ s \(last: read timed out\)/));
      await assert.rejects(h.check(), /^Error: sequencer: every batch has failed for \d+ s/);
    }
    await assert.rejects(h.check(), /every batch has failed for 492 s \(last: read timed out\)/);
    // A success ends the run.
    await h.run(async () => {});
    await h.check();

    // Nor did it ever with a stallMs past FAILURE_FORGOTTEN_MS.
    const long = new StageHealth("inbox-writer", 300_000, () => clock.ms);
    const failAfter = (ms: number) =>
      long
        .run(async () => {
          clock.ms += ms;
          throw new Error("write timed out");
        })
        .catch(() => {});
    await failAfter(0);
    for (let i = 0; i < 3; i++) {
      clock.ms += 5_000;
      await failAfter(118_000);
    }
    await assert.rejects(long.check(), /inbox-writer: every batch has failed for 369 s/);
  });

  it("counts a batch in hand toward the run however long it has been running, and forgets the run FAILURE_FORGOTTEN_MS after its last failure with none in hand", async () => {
    const clock = { ms: 1_000_000 };
    const h = new StageHealth("notifier", 30_000, () => clock.ms);
    await assert.rejects(h.run(() => Promise.reject(new Error("refused"))));
    clock.ms += 5_000;
    let end!: (err?: Error) => void;
    const inHand = () => h.run(() => new Promise<void>((resolve, reject) => (end = (err) => (err ? reject(err) : resolve()))));
    let slow = inHand().catch(() => {});
    clock.ms += 200_000; // past FAILURE_FORGOTTEN_MS since the last failure, with the retry still in hand
    await assert.rejects(h.check(), /notifier: every batch has failed for 205 s \(last: refused\)/);
    end(new Error("timed out"));
    await slow;
    await assert.rejects(h.check(), /every batch has failed for 205 s \(last: timed out\)/);
    clock.ms += FAILURE_FORGOTTEN_MS; // nothing in hand since: the run is over
    await assert.rejects(h.check(), /every batch has failed for 325 s/);
    clock.ms += 1;
    await h.check();
    // A batch in hand that goes through ends the run all the same.
    await assert.rejects(h.run(() => Promise.reject(new Error("refused"))));
    slow = inHand();
    clock.ms += 200_000;
    await assert.rejects(h.check(), /every batch has failed for 200 s/);
    end();
    await slow;
    await h.check();
  });

  it("fails its check once the consumer has failed (and retried) for stallMs with no batch to fail, and recovers when it consumes again", async () => {
    const clock = { ms: 1_000 };
    const h = new StageHealth("notifier", 30_000, () => clock.ms);
    h.consumerTrouble(new Error("Connection error: connect ECONNREFUSED 127.0.0.1:9092"));
    clock.ms += 20_000;
    h.consumerTrouble(new Error("Connection error: connect ECONNREFUSED 127.0.0.1:9092")); // its retry, failing too
    await h.check();
    clock.ms += 10_000;
    await assert.rejects(h.check(), /notifier: the consumer has failed for 30 s \(last: Connection error/);
    h.consumerTrouble(undefined); // rejoined its group
    await h.check();
  });

  it("fails its check for good once the consumer stopped, and settles stopped", async () => {
    const h = new StageHealth("notifier");
    let stopped: Error | undefined;
    void h.stopped.then((err) => (stopped = err));
    h.consumerStopped(new Error("group taken over"));
    await h.stopped;
    assert.equal(stopped?.message, "group taken over");
    await h.run(async () => {}); // a batch finishing afterwards changes nothing
    await assert.rejects(h.check(), /notifier: consumer stopped \(group taken over\)/);
  });
});
