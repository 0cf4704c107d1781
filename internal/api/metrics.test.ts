import assert from "node:assert/strict";
import { Code, createContextValues, type ConnectError } from "@connectrpc/connect";
import { Registry } from "prom-client";
import { bucketOf, metricIn } from "../../test/support/metrics.js";
import { seriesAt, seriesOf } from "../../test/support/series.js";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { MessageService } from "../../gen/es/chat/v1/messages_pb.js";
import { PresenceService } from "../../gen/es/chat/v1/presence_pb.js";
import { PushService } from "../../gen/es/chat/v1/push_pb.js";
import { UserService } from "../../gen/es/chat/v1/users_pb.js";
import { ChatError, ContendedError } from "../model/errors.js";
import { apiInterceptor } from "./context.js";
import { API_FAILURE_CODES, apiMetrics } from "./metrics.js";
import { TestApi } from "./testkit.js";

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
    for (const event of ["login_failed", "login_throttled", "refresh_reused", "device_pruned", "password_changed", "account_deleted", "deletion_swept"]) {
      assert.match(text, new RegExp(`^chat_auth_events_total\\{event="${event}"\\} 0$`, "m"), event);
    }
  });
});

describe("chat_api_requests_total", () => {
  it("has each served method's failure series (unavailable, internal) from the start at 0, under the label its calls are counted by", async () => {
    const registry = new Registry();
    const api = await TestApi.start({ metrics: apiMetrics(registry) });
    try {
      const services = [AuthService, UserService, ChannelService, MessageService, PresenceService, PushService];
      const methods = services.flatMap((s) => s.methods.map((m) => `${s.name}/${m.name}`));
      assert.ok(methods.length > 40, `only ${methods.length} methods`);
      assert.deepEqual(await seriesOf(registry, "chat_api_requests_total", ["method", "code"]), seriesAt(0, { method: methods, code: API_FAILURE_CODES }));
      await api.signUp();
      assert.equal(metricIn(await registry.metrics(), "chat_api_requests_total", 'method="AuthService/SignUp",code="ok"'), 1);
    } finally {
      await api.close();
    }
  });
});

describe("chat_api_requests_total: a refusal for contention", () => {
  /** The count of Refresh calls under each outcome after one call whose handler throws `thrown`. */
  async function countedAs(thrown: Error): Promise<Record<string, number>> {
    const registry = new Registry();
    const metrics = apiMetrics(registry);
    const call = apiInterceptor({ verifier: {} as never, devices: {} as never, metrics })(async () => {
      throw thrown;
    });
    const req = {
      service: AuthService,
      method: AuthService.method.refresh,
      header: new Headers(),
      contextValues: createContextValues(),
    };
    const e = await call(req as never).then(() => assert.fail("not refused"), (x: unknown) => x as ConnectError);
    assert.equal(e.code, Code.Unavailable, "still UNAVAILABLE to the client");
    const text = await registry.metrics();
    const counts: Record<string, number> = {};
    for (const code of ["unavailable", "contended"]) counts[code] = metricIn(text, "chat_api_requests_total", `method="AuthService/Refresh",code="${code}"`) ?? 0;
    return counts;
  }

  it("is counted as contended, not as the unavailable of an engine away that alerts watch", async () => {
    assert.deepEqual(await countedAs(new ContendedError("a refresh with this token is still under way")), { unavailable: 0, contended: 1 });
    assert.deepEqual(await countedAs(new ChatError("unavailable", "a store did not answer")), { unavailable: 1, contended: 0 });
  });
});
