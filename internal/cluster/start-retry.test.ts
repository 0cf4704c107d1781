import assert from "node:assert/strict";
import { pino } from "pino";
import { retryStart, StartTimeoutError } from "./start-retry.js";

describe("retryStart", () => {
  it("tries a failing start-up step again until it succeeds, logging each failure", async () => {
    const lines: { msg: string; attempt: number }[] = [];
    const logger = pino({ level: "warn" }, { write: (s: string) => void lines.push(JSON.parse(s)) });
    let calls = 0;
    const got = await retryStart(
      "reading the registry",
      async () => {
        if (++calls < 3) throw new Error("no answer from etcd within 3000 ms");
        return "servers";
      },
      { withinMs: 10_000, logger, firstPauseMs: 1 },
    );
    assert.equal(got, "servers");
    assert.equal(calls, 3);
    assert.deepEqual(lines.map((l) => [l.msg, l.attempt]), [
      ["reading the registry failed; trying again", 1],
      ["reading the registry failed; trying again", 2],
    ]);
  });

  it("gives up once its time is out, with the last failure and the setting that bounds it", async () => {
    let calls = 0;
    const last = new Error("no answer from etcd within 3000 ms");
    const err = await retryStart("claiming a worker id", async () => {
      calls++;
      throw last;
    }, { withinMs: 30, firstPauseMs: 5 }).catch((e: unknown) => e);
    assert.ok(err instanceof StartTimeoutError);
    assert.equal(err.message, "claiming a worker id: still failing after 0.03 s (CHAT_START_TIMEOUT_S): no answer from etcd within 3000 ms");
    assert.equal(err.cause, last);
    assert.ok(calls >= 2, `tried ${calls} times`);
  });

  it("keeps trying for its time on the monotonic clock: a wall clock stepped forward an hour (NTP at boot) does not end it", async () => {
    const wall = Date.now;
    let calls = 0;
    try {
      const got = await retryStart(
        "reading the chat servers from etcd",
        async () => {
          // The host's clock is set right while the engines are still starting.
          if (++calls === 1) Date.now = () => wall() + 3_600_000;
          if (calls < 3) throw new Error("no answer from etcd within 3000 ms");
          return "servers";
        },
        { withinMs: 10_000, firstPauseMs: 1 },
      );
      assert.equal(got, "servers");
    } finally {
      Date.now = wall;
    }
  });

  it("tries once when given no time", async () => {
    let calls = 0;
    const step = async () => {
      calls++;
      throw new Error("down");
    };
    await assert.rejects(retryStart("x", step, { withinMs: 0 }), StartTimeoutError);
    assert.equal(calls, 1);
  });

  it("gives up on one line when the Cassandra driver's error holds each host's error, stack and all", async () => {
    const cassandra = (await import("cassandra-driver")).default;
    const client = new cassandra.Client({ contactPoints: ["127.0.0.1:1"], localDataCenter: "dc1" });
    const err = await retryStart("opening Cassandra", () => client.connect(), { withinMs: 0 })
      .catch((e: unknown) => e)
      .finally(() => client.shutdown());
    assert.ok(err instanceof StartTimeoutError);
    assert.equal(err.message, "opening Cassandra: still failing after 0 s (CHAT_START_TIMEOUT_S): no host answered: 127.0.0.1:1 (connect ECONNREFUSED 127.0.0.1:1)");
  });
});
