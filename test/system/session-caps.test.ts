import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { SessionService } from "../../gen/es/chat/v1/session_pb.js";
import { addDevice, signUp } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { scrapeMetric } from "../support/metrics.js";
import { runToExit } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

// CHAT_MAX_SESSIONS_PER_DEVICE / _PER_ACCOUNT as cmd/chatd wires them: its WebSocket gateway and
// its native SessionService count against the same slots (gateway/session-slots.test.ts has the rest).
describe("chatd system: caps on a device's and an account's open sessions", function () {
  this.timeout(120_000);
  const suite = useChatd({ env: { CHAT_MAX_SESSIONS_PER_DEVICE: "2", CHAT_MAX_SESSIONS_PER_ACCOUNT: "3" } });
  const connect = async (token: string) => {
    const d = new TestDevice(suite.chatd.wsUrl, token);
    suite.devices.push(d);
    return d.connect();
  };

  it("refuses a session past either cap (close 4029, RESOURCE_EXHAUSTED over gRPC), counts it on /metrics, and takes one once a slot is free", async () => {
    const metrics = `${suite.chatd.httpUrl}/metrics`;
    assert.equal(await scrapeMetric(metrics, "gateway_sessions_refused_total", 'limit="device"'), 0);
    const user = await signUp(suite.chatd.httpUrl, "caps");
    const second = await addDevice(suite.chatd.httpUrl, user);
    const phone = user.devices[0]!.token;

    const [one, two] = [await connect(phone), await connect(phone)];
    assert.ok(one.welcome() && two.welcome());
    const third = await connect(phone);
    assert.equal(third.closeCode, 4029);
    assert.match(third.closeReason!, /too many sessions of this device \(at most 2, CHAT_MAX_SESSIONS_PER_DEVICE\)/);
    assert.equal(one.closeCode, undefined, "the oldest is not closed to make room");

    const native = createClient(SessionService, createGrpcTransport({ baseUrl: suite.chatd.grpcUrl }));
    const refused = await (async () => {
      try {
        for await (const _ of native.connect((async function* () {})(), { headers: { authorization: `Bearer ${phone}` } }));
        return undefined;
      } catch (err) {
        return ConnectError.from(err);
      }
    })();
    assert.equal(refused?.code, Code.ResourceExhausted);
    assert.match(refused.rawMessage, /^close 4029: too many sessions of this device/);

    // The account's third session, on its other device, is its last.
    assert.ok((await connect(second.token)).welcome());
    const past = await connect(second.token);
    assert.equal(past.closeCode, 4029);
    assert.match(past.closeReason!, /too many sessions of this account \(at most 3, CHAT_MAX_SESSIONS_PER_ACCOUNT\)/);
    assert.equal(await scrapeMetric(metrics, "gateway_sessions_refused_total", 'limit="device"'), 2);
    assert.equal(await scrapeMetric(metrics, "gateway_sessions_refused_total", 'limit="account"'), 1);

    await one.close();
    // The client's close can come before chatd's: its slot goes with the socket, counted here.
    await waitFor(async () => (await scrapeMetric(metrics, "gateway_connections")) === 2, "chatd to see the session closed");
    assert.ok((await connect(phone)).welcome(), "the closed session's slot is taken again");
  });

  for (const role of ["chatd", "gateway"]) {
    it(`${role}: a cap that is no whole number in range, or an account cap below the device cap, stops the start naming the variable (exit 2)`, async () => {
      const bad = await runToExit(role, { CHAT_MAX_SESSIONS_PER_DEVICE: "0", CHAT_MAX_SESSIONS_PER_ACCOUNT: "many" });
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /CHAT_MAX_SESSIONS_PER_DEVICE="0": expected an integer from 1 to 10000/);
      assert.match(bad.stderr, /CHAT_MAX_SESSIONS_PER_ACCOUNT="many": expected an integer from 1 to 1000000/);
      const below = await runToExit(role, { CHAT_MAX_SESSIONS_PER_DEVICE: "10", CHAT_MAX_SESSIONS_PER_ACCOUNT: "5" });
      assert.equal(below.code, 2, below.stderr);
      assert.match(below.stderr, /CHAT_MAX_SESSIONS_PER_ACCOUNT=5: must be at least CHAT_MAX_SESSIONS_PER_DEVICE=10/);
    });
  }
});
