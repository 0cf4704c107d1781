import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { SessionService } from "../../gen/es/chat/v1/session_pb.js";
import { apiClients, rpcError, signUp } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";

// A device of a deleted account still holds an access token (for up to its lifetime) and a
// refresh token: what it tried next was refused as any signed-out device is, which sent its
// user looking for a cause. The status and close code stay; the message says why.
describe("chatd: a device of a deleted account is told the account was deleted", function () {
  this.timeout(60_000);
  const suite = useChatd();

  it("when it opens a WebSocket session (4003), a gRPC session stream (UNAUTHENTICATED), or refreshes (a retry, or its current token)", async () => {
    const { chatd } = suite;
    const alice = await signUp(chatd.httpUrl, "gone");
    const anon = apiClients(chatd.httpUrl);
    const first = alice.devices[0]!.refreshToken;
    // A refresh whose reply is lost: its client retries it after the deletion.
    const current = (await anon.auth.refresh({ refreshToken: first })).credentials!.refreshToken;
    await alice.api.auth.deleteAccount({ password: alice.password });
    const token = alice.devices[0]!.token;

    const ws = new TestDevice(chatd.wsUrl, token);
    suite.devices.push(ws);
    await ws.connect();
    assert.equal(await ws.waitClosed(), 4003);
    assert.equal(ws.closeReason, "signed out: the account was deleted");

    const native = createClient(SessionService, createGrpcTransport({ baseUrl: chatd.grpcUrl }));
    const streamed = await (async () => {
      try {
        for await (const res of native.connect((async function* () {})(), { headers: { authorization: `Bearer ${token}` } })) void res;
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    assert.ok(streamed instanceof ConnectError, String(streamed));
    assert.equal(streamed.code, Code.Unauthenticated);
    assert.match(streamed.rawMessage, /^close 4003: signed out: the account was deleted$/);

    const refresh = await rpcError(() => anon.auth.refresh({ refreshToken: first }));
    assert.equal(refresh.code, Code.Unauthenticated);
    assert.equal(refresh.rawMessage, "signed out: the account was deleted");
    // The device's current token, never used: the deletion's sign-out marked it used, not forgot it.
    for (let i = 0; i < 2; i++) {
      const unused = await rpcError(() => anon.auth.refresh({ refreshToken: current }));
      assert.deepEqual([unused.code, unused.rawMessage], [Code.Unauthenticated, "signed out: the account was deleted"]);
    }
  });
});
