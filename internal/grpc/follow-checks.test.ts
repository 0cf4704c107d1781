import assert from "node:assert/strict";
import { mock } from "node:test";
import { drain, settled } from "../../test/support/settle.js";
import { waitFor } from "../../test/support/wait.js";
import { CHECK_TIMEOUT_MS, conditionCheck } from "../observability/http.js";
import { followChecks } from "./follow-checks.js";
import { HealthStatus, ServingStatus } from "./index.js";

/** Runs `fn` with setTimeout faked: a round comes when the test moves the clock, and "no round" holds past every timer. */
async function onFakedTimers(fn: () => Promise<void>): Promise<void> {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    await fn();
  } finally {
    mock.timers.reset();
  }
}

describe("internal/grpc: health follows the /healthz checks", () => {
  it("is NOT_SERVING, server and services alike, while a check fails, and SERVING again once it passes", () => onFakedTimers(async () => {
    const health = new HealthStatus(["chat.v1.AuthService"]);
    let redisUp = false;
    let rounds = 0;
    const follower = followChecks(
      health,
      [
        { name: "cassandra", check: async () => void rounds++ },
        conditionCheck("redis", () => redisUp, "connection refused"),
      ],
      { intervalMs: 5 },
    );
    try {
      await follower.ready;
      assert.equal(health.get(""), ServingStatus.NOT_SERVING, "known before listening");
      assert.equal(health.get("chat.v1.AuthService"), ServingStatus.NOT_SERVING);
      redisUp = true;
      mock.timers.tick(5);
      await settled(() => health.get("") === ServingStatus.SERVING, "SERVING once Redis answers");
      assert.equal(health.get("chat.v1.AuthService"), ServingStatus.SERVING);
      redisUp = false;
      mock.timers.tick(5);
      await settled(() => health.get("chat.v1.AuthService") === ServingStatus.NOT_SERVING, "NOT_SERVING when Redis goes");
    } finally {
      follower.stop();
    }
    const after = rounds;
    health.shutdown();
    redisUp = true;
    mock.timers.tick(60_000);
    await drain();
    assert.equal(rounds, after, "no round after stop()");
    assert.equal(health.get(""), ServingStatus.NOT_SERVING, "a draining server stays NOT_SERVING");
  }));

  it("fails a round whose check does not answer in time, rather than keeping the last status", async () => {
    const health = new HealthStatus();
    const follower = followChecks(health, [{ name: "redis", check: () => new Promise<void>(() => {}) }], { intervalMs: 5, checkTimeoutMs: 20 });
    try {
      await follower.ready;
      assert.equal(health.get(""), ServingStatus.NOT_SERVING);
    } finally {
      follower.stop();
    }
  });

  it("never runs two rounds at once when a check hangs", () => onFakedTimers(async () => {
    const health = new HealthStatus();
    let running = 0;
    let most = 0;
    let calls = 0;
    let release!: () => void;
    const follower = followChecks(
      health,
      [
        {
          name: "slow",
          check: () => {
            calls++;
            running++;
            most = Math.max(most, running);
            return new Promise<void>((r) => (release = () => (running--, r())));
          },
        },
      ],
      { intervalMs: 1 },
    );
    try {
      // Many intervals pass while the first round hangs, up to its check's timeout (which fails the round).
      mock.timers.tick(CHECK_TIMEOUT_MS - 1);
      await drain();
      assert.equal(calls, 1);
      release();
      await follower.ready;
      mock.timers.tick(1);
      await settled(() => calls === 2, "the next round after the first ends");
      assert.equal(most, 1);
    } finally {
      follower.stop();
      release();
    }
  }));

  it("recheck() runs a round at once, after the one under way, rather than an interval later", async () => {
    const health = new HealthStatus();
    let up = false;
    let release!: () => void;
    let hold = false;
    const follower = followChecks(
      health,
      [{ name: "registration", check: () => (hold ? new Promise<void>((r) => (release = r)) : up ? Promise.resolve() : Promise.reject(new Error("not registered"))) }],
      { intervalMs: 3_600_000 },
    );
    try {
      await follower.ready;
      assert.equal(health.get(""), ServingStatus.NOT_SERVING);
      hold = true;
      const held = follower.recheck();
      up = true;
      await waitFor(() => release !== undefined, "the held round");
      hold = false;
      const after = follower.recheck();
      release();
      await held;
      await after;
      assert.equal(health.get(""), ServingStatus.SERVING, "SERVING at the recheck, not an hour later");
    } finally {
      follower.stop();
    }
  });
});
