import assert from "node:assert/strict";
import { EnvReader } from "../config/env.js";
import { DEFAULT_SEND_RATE, readSendRate, SendRateLimiter } from "./send-rate.js";

describe("SendRateLimiter: sends per account", () => {
  it("lets an account send its burst, refuses the next with the wait for it, other accounts unaffected, and refills at the rate", () => {
    let t = 1_000;
    const sends = new SendRateLimiter({ sendsPerSecond: 20, sendBurst: 3 }, () => t);
    for (let i = 0; i < 3; i++) assert.equal(sends.take(1n), 0, `send ${i} within the burst`);
    assert.equal(sends.take(1n), 50, "one send's worth of the rate (1/20 s) away");
    assert.equal(sends.take(2n), 0, "another account has its own burst");
    t += 50;
    assert.equal(sends.take(1n), 0);
    assert.ok(sends.take(1n) > 0, "and no more than the rate");
  });

  it("limits nothing at a rate of 0", () => {
    const sends = new SendRateLimiter({ sendsPerSecond: 0, sendBurst: 1 }, () => 0);
    for (let i = 0; i < 10_000; i++) assert.equal(sends.take(1n), 0);
  });

  it("by default, 100 at once and 20 a second after", () => {
    let t = 0;
    const sends = new SendRateLimiter(DEFAULT_SEND_RATE, () => t);
    for (let i = 0; i < 100; i++) assert.equal(sends.take(1n), 0);
    assert.equal(sends.take(1n), 50);
    t += 1_000;
    for (let i = 0; i < 20; i++) assert.equal(sends.take(1n), 0, `send ${i} of the second after`);
    assert.ok(sends.take(1n) > 0);
  });

  it("reads CHAT_SENDS_PER_SEC and CHAT_SEND_BURST, 0 a rate but not a burst", () => {
    assert.deepEqual(readSendRate(new EnvReader({})), { sendsPerSecond: 20, sendBurst: 100 });
    assert.deepEqual(readSendRate(new EnvReader({ CHAT_SENDS_PER_SEC: "0", CHAT_SEND_BURST: "7" })), { sendsPerSecond: 0, sendBurst: 7 });
    const r = new EnvReader({ CHAT_SENDS_PER_SEC: "-1", CHAT_SEND_BURST: "0" });
    readSendRate(r);
    assert.deepEqual(r.problems, ['CHAT_SENDS_PER_SEC="-1": expected an integer from 0 to 100000', 'CHAT_SEND_BURST="0": expected an integer from 1 to 100000']);
  });
});
