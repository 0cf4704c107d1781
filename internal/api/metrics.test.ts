import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { bucketOf } from "../../test/support/metrics.js";
import { apiMetrics } from "./metrics.js";

describe("chat_api_request_seconds", () => {
  it("tells a call that took 8 s or 25 s from one of 3 s, as histogram_quantile reads its buckets", async () => {
    const bucketOfCall = async (seconds: number) => {
      const registry = new Registry();
      apiMetrics(registry).seconds.observe({ method: "AuthService/Login" }, seconds);
      return bucketOf(await registry.metrics(), "chat_api_request_seconds");
    };
    const [three, eight, twentyFive] = await Promise.all([3, 8, 25].map(bucketOfCall));
    assert.ok(three < 8, `3 s read as ${three} s`);
    assert.ok(eight >= 8 && eight < 25, `8 s read as ${eight} s`);
    assert.ok(twentyFive >= 25, `25 s read as ${twentyFive} s`);
  });
});

describe("chat_auth_events_total", () => {
  it("has every event's series from the start at 0: the first refresh_reused of a process moves increase()", async () => {
    // A series that first appears at 1 has no sample before it for increase() and rate() to start from:
    // the one stolen refresh token of a week, the event worth an alert, never moved one.
    const registry = new Registry();
    apiMetrics(registry);
    const text = await registry.metrics();
    for (const event of ["login_failed", "login_throttled", "refresh_reused", "device_pruned", "password_changed", "account_deleted"]) {
      assert.match(text, new RegExp(`^chat_auth_events_total\\{event="${event}"\\} 0$`, "m"), event);
    }
  });
});
