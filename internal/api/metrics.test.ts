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
