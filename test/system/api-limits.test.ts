import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { apiClients } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { metricIn } from "../support/metrics.js";

async function refusal(fn: () => Promise<unknown>): Promise<ConnectError> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof ConnectError) return e;
    throw e;
  }
  throw new Error("expected the call to be refused");
}

// chatd as started by `npm start`, with the api limits turned low: the wiring
// of the limiter and of the client address on both listeners.
describe("chatd system: api limits", function () {
  this.timeout(120_000);
  let chatd: ChatdProcess;
  before(async () => {
    chatd = await startChatd({
      env: { CHAT_API_AUTH_PER_SEC: "1", CHAT_API_AUTH_BURST: "4", CHAT_LOGIN_MAX_FAILURES: "2", CHAT_API_CALLS_PER_SEC: "1", CHAT_API_CALL_BURST: "3" },
    });
  });
  after(async () => {
    await chatd.stop();
    removeDataDir(chatd.dataDir);
  });

  it("throttles failed logins, sign-in requests per address, and calls per account, over Connect and gRPC", async () => {
    const web = apiClients(chatd.httpUrl);
    const grpc = createClient(AuthService, createGrpcTransport({ baseUrl: chatd.grpcUrl }));
    const signed = await web.auth.signUp({ username: "limited", password: "right password", displayName: "L" });

    // Two failures, then the right password is refused too, on either listener
    // (the window is 15 minutes: nothing here depends on timing).
    for (let i = 0; i < 2; i++) assert.equal((await refusal(() => web.auth.login({ username: "limited", password: "wrong" }))).code, Code.Unauthenticated);
    const locked = await refusal(() => grpc.login({ username: "limited", password: "right password" }));
    assert.equal(locked.code, Code.ResourceExhausted);
    assert.match(locked.rawMessage, /too many failed logins/);
    assert.equal(locked.metadata.get("chat-error-code"), "ERROR_CODE_RATE_LIMITED");

    // The burst of this address is spent; a volley far past the refill rate is refused in part, before it runs.
    const volley = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => web.auth.signUp({ username: `volley${i}`, password: "right password" })));
    const refused = volley.flatMap((r) => (r.status === "rejected" ? [ConnectError.from(r.reason)] : []));
    assert.ok(refused.length >= 5, `${refused.length} of 10 refused`);
    for (const e of refused) {
      assert.equal(e.code, Code.ResourceExhausted);
      assert.match(e.rawMessage, /too many sign-in requests from this address/);
      assert.ok(Number(e.metadata.get("chat-retry-after-ms")) > 0);
    }

    const me = apiClients(chatd.httpUrl, signed.credentials!.accessToken);
    const calls = await Promise.allSettled(Array.from({ length: 10 }, () => me.users.getMe({})));
    const busy = calls.flatMap((r) => (r.status === "rejected" ? [ConnectError.from(r.reason)] : []));
    assert.ok(busy.length >= 5, `${busy.length} of 10 refused`);
    for (const e of busy) {
      assert.equal(e.code, Code.ResourceExhausted);
      assert.match(e.rawMessage, /too many requests for this account/);
    }

    // What happened shows in /metrics.
    const page = await (await fetch(`${chatd.httpUrl}/metrics`)).text();
    assert.equal(metricIn(page, "chat_api_requests_total", 'method="AuthService/Login",code="unauthenticated"'), 2);
    assert.equal(metricIn(page, "chat_api_requests_total", 'method="AuthService/Login",code="resource_exhausted"'), 1);
    assert.equal(metricIn(page, "chat_api_requests_total", 'method="AuthService/SignUp",code="ok"'), 1 + volley.length - refused.length);
    assert.equal(metricIn(page, "chat_api_requests_total", 'method="UserService/GetMe",code="resource_exhausted"'), busy.length);
    assert.equal(metricIn(page, "chat_auth_events_total", 'event="login_failed"'), 2);
    assert.equal(metricIn(page, "chat_auth_events_total", 'event="login_throttled"'), 1);
    assert.ok((metricIn(page, "chat_api_request_seconds_count", 'method="UserService/GetMe"') ?? 0) >= 10);
  });
});
