import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { MessageService } from "../../gen/es/chat/v1/messages_pb.js";
import { apiClients } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";

// chatd as started by `npm start`: what the HTTP listener answers around the
// api's own code (request decoding, CORS), as a browser or curl sees it.
describe("chatd system: the api's HTTP edge", function () {
  this.timeout(120_000);
  let chatd: ChatdProcess;
  let token: string;
  before(async () => {
    chatd = await startChatd({ env: { CHAT_MAX_FRAME_BYTES: "4096" } });
    const signed = await apiClients(chatd.httpUrl).auth.signUp({ username: "edge", password: "right password" });
    token = signed.credentials!.accessToken;
  });
  after(async () => {
    await chatd.stop();
    removeDataDir(chatd.dataDir);
  });

  /** A Connect unary call with a raw JSON body, as curl would make it. */
  const post = (method: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`${chatd.httpUrl}/chat.v1.${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}`, ...headers },
      body,
    });

  it("refuses a JSON request with a field its message does not have, naming it, and does nothing", async () => {
    const res = await post("ChannelService/CreateGroup", JSON.stringify({ title: "Trip", memberIds: ["1"] }));
    assert.equal(res.status, 400);
    const err = (await res.json()) as { code: string; message: string };
    assert.equal(err.code, "invalid_argument");
    assert.match(err.message, /memberIds/);
    assert.equal(res.headers.get("chat-error-code"), "ERROR_CODE_INVALID_ARGUMENT");
    const { channels } = await apiClients(chatd.httpUrl, token).channels.listChannels({});
    assert.equal(channels.length, 0);
    // Spelled right, the same request goes through.
    assert.equal((await post("ChannelService/CreateGroup", JSON.stringify({ title: "Trip" }))).status, 200);
  });

  it("lets a browser read the error code and the retry time of a refusal (CORS)", async () => {
    const res = await post("UserService/GetMe", "{}", { origin: "http://example.test" });
    const exposed = (res.headers.get("access-control-expose-headers") ?? "").split(/,\s*/);
    assert.ok(exposed.includes("chat-error-code"), exposed.join());
    assert.ok(exposed.includes("chat-retry-after-ms"), exposed.join());
    assert.ok(!exposed.includes("retry-after"), "never sent");
  });

  it("gives a request it cannot decode, and one too large, a chat-error-code too", async () => {
    const bad = await post("MessageService/ListMessages", JSON.stringify({ channelId: "1", limit: "x" }));
    assert.equal(bad.status, 400);
    assert.equal(bad.headers.get("chat-error-code"), "ERROR_CODE_INVALID_ARGUMENT");
    const huge = await post("MessageService/SendMessage", JSON.stringify({ channelId: "1", clientMsgId: "k", text: "x".repeat(5000) }));
    assert.equal(huge.status, 429);
    assert.equal(huge.headers.get("chat-error-code"), "ERROR_CODE_FRAME_TOO_LARGE", "not a rate limit");
    // And on gRPC, as a trailer.
    const grpc = createClient(MessageService, createGrpcTransport({ baseUrl: chatd.grpcUrl }));
    const err = await grpc.sendMessage({ channelId: 1n, clientMsgId: "k", text: "x".repeat(5000) }, { headers: { authorization: `Bearer ${token}` } }).then(
      () => assert.fail("expected a refusal"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(err.code, Code.ResourceExhausted);
    assert.equal(err.metadata.get("chat-error-code"), "ERROR_CODE_FRAME_TOO_LARGE");
    // And on gRPC-web, in the trailer at the end of the body, as a browser's client reads it.
    for (const useBinaryFormat of [true, false]) {
      const web = createClient(MessageService, createGrpcWebTransport({ baseUrl: chatd.httpUrl, httpVersion: "1.1", useBinaryFormat }));
      const headers = { authorization: `Bearer ${token}` };
      const tooLarge = await web.sendMessage({ channelId: 1n, clientMsgId: "k", text: "x".repeat(5000) }, { headers }).then(
        () => assert.fail("expected a refusal"),
        (e: unknown) => ConnectError.from(e),
      );
      assert.equal(tooLarge.code, Code.ResourceExhausted);
      assert.equal(tooLarge.metadata.get("chat-error-code"), "ERROR_CODE_FRAME_TOO_LARGE", `binary: ${useBinaryFormat}`);
      // An error of the api's own keeps the code it gave.
      const notMember = await web.listMessages({ channelId: 1n, limit: 10 }, { headers }).then(
        () => assert.fail("expected a refusal"),
        (e: unknown) => ConnectError.from(e),
      );
      assert.equal(notMember.metadata.get("chat-error-code"), "ERROR_CODE_NOT_A_MEMBER");
    }
  });
});
