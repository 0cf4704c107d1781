import assert from "node:assert/strict";
import { connect as http2Connect } from "node:http2";
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
  const post = (method: string, body: RequestInit["body"], headers: Record<string, string> = {}) =>
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

  it("refuses a JSON request that is not UTF-8, as a binary one, rather than storing U+FFFD for its bad bytes", async () => {
    const body = Buffer.concat([Buffer.from('{"displayName":"Ed'), Buffer.from([0xff]), Buffer.from('"}')]);
    const res = await post("UserService/UpdateProfile", body);
    assert.equal(res.status, 400);
    const err = (await res.json()) as { code: string; message: string };
    assert.equal(err.code, "invalid_argument");
    assert.match(err.message, /utf-8/i);
    assert.equal(res.headers.get("chat-error-code"), "ERROR_CODE_INVALID_ARGUMENT");
    assert.equal((await apiClients(chatd.httpUrl, token).users.getMe({})).user?.displayName, "edge");
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

  it("answers a binary request it cannot decode (a string not UTF-8, a message cut short) INVALID_ARGUMENT naming its message, on Connect, gRPC and gRPC-web", async () => {
    // UpdateProfileRequest.display_name (field 1) holding "A", 0xFF, "A"; SendMessageRequest whose channel_id (field 2) stops mid-varint.
    const cases = [
      { method: "UserService/UpdateProfile", input: "chat.v1.UpdateProfileRequest", body: Buffer.from([0x0a, 3, 0x41, 0xff, 0x41]) },
      { method: "MessageService/SendMessage", input: "chat.v1.SendMessageRequest", body: Buffer.from([0x0a, 1, 0x6b, 0x10, 0x80]) },
    ];
    const envelope = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, 0, b.length]), b]);
    const expectRefusal = (what: string, input: string, status: string | null | undefined, message: string | null | undefined, chatCode: string | null | undefined) => {
      assert.equal(status, String(Code.InvalidArgument), `${what}: ${message}`);
      assert.match(decodeURIComponent(message ?? ""), new RegExp(`not a valid ${input.replace(/\./g, "\\.")} message`), what);
      assert.equal(chatCode, "ERROR_CODE_INVALID_ARGUMENT", what);
    };
    for (const { method, input, body } of cases) {
      const res = await fetch(`${chatd.httpUrl}/chat.v1.${method}`, { method: "POST", headers: { "content-type": "application/proto", authorization: `Bearer ${token}` }, body });
      assert.equal(res.status, 400, `Connect ${method}`);
      const err = (await res.json()) as { code: string; message: string };
      expectRefusal(`Connect ${method}`, input, err.code === "invalid_argument" ? String(Code.InvalidArgument) : err.code, err.message, res.headers.get("chat-error-code"));

      const web = await fetch(`${chatd.httpUrl}/chat.v1.${method}`, { method: "POST", headers: { "content-type": "application/grpc-web+proto", authorization: `Bearer ${token}` }, body: envelope(body) });
      const frames = Buffer.from(await web.arrayBuffer());
      const trailer = new Map<string, string>();
      for (let at = 0; at + 5 <= frames.length; at += 5 + frames.readUInt32BE(at + 1)) {
        if (!(frames[at]! & 0x80)) continue;
        for (const line of frames.subarray(at + 5, at + 5 + frames.readUInt32BE(at + 1)).toString("latin1").split("\r\n")) {
          const colon = line.indexOf(":");
          if (colon > 0) trailer.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
        }
      }
      expectRefusal(`gRPC-web ${method}`, input, trailer.get("grpc-status") ?? web.headers.get("grpc-status"), trailer.get("grpc-message") ?? web.headers.get("grpc-message"), trailer.get("chat-error-code") ?? web.headers.get("chat-error-code"));

      const session = http2Connect(chatd.grpcUrl);
      try {
        const stream = session.request({ ":method": "POST", ":path": `/chat.v1.${method}`, "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${token}` });
        const trailers = new Promise<Record<string, string | string[] | undefined>>((resolve, reject) => {
          let headersOnly: Record<string, string | string[] | undefined> = {};
          stream.on("response", (h) => (headersOnly = h));
          stream.on("trailers", resolve);
          stream.on("end", () => resolve(headersOnly));
          stream.on("error", reject);
        });
        stream.resume();
        stream.end(envelope(body));
        const t = await trailers;
        expectRefusal(`gRPC ${method}`, input, t["grpc-status"] as string, t["grpc-message"] as string, t["chat-error-code"] as string);
      } finally {
        session.close();
      }
    }
  });
});
