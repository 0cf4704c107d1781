import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { AuthServiceClient, type Credentials, type SignUpResponse } from "../../gen/ts-proto/chat/v1/auth.js";
import { ChannelServiceClient, type OpenDirectResponse } from "../../gen/ts-proto/chat/v1/channels.js";
import { DevicePlatform, ErrorCode } from "../../gen/ts-proto/chat/v1/types.js";
import { ClientFrame, SendMessage, SessionServiceClient, type ConnectResponse, type ServerFrame } from "../../gen/ts-proto/chat/v1/session.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { waitFor, waitOut } from "../support/wait.js";

/**
 * A native app's view: @grpc/grpc-js with the ts-proto generated clients
 * (gen/ts-proto), over HTTP/2 to chatd's gRPC listener, the public API as
 * unary calls and the realtime session as the SessionService/Connect bidi stream.
 */

const bearer = (token: string) => {
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${token}`);
  return md;
};

/** A unary call as a promise: `unary<Res>((cb) => client.method(req, metadata, cb))`. */
function unary<Res>(start: (cb: (err: grpc.ServiceError | null, res: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => start((err, res) => (err ? reject(err) : resolve(res))));
}

/** One device's realtime session over the bidi stream. */
class NativeSession {
  readonly frames: ServerFrame[] = [];
  status: grpc.StatusObject | undefined;
  private readonly stream: grpc.ClientDuplexStream<{ frame?: ClientFrame }, ConnectResponse>;
  private nextRef = 1n;

  constructor(client: InstanceType<typeof SessionServiceClient>, token: string | undefined) {
    this.stream = client.connect(token ? bearer(token) : new grpc.Metadata());
    this.stream.on("data", (res: ConnectResponse) => {
      if (res.frame) this.frames.push(res.frame);
    });
    this.stream.on("status", (s: grpc.StatusObject) => (this.status = s));
    this.stream.on("error", () => {}); // the status above carries it
  }

  send(kind: ClientFrame["kind"]): bigint {
    const ref = this.nextRef++;
    this.stream.write({ frame: { ref, kind } });
    return ref;
  }

  async reply(ref: bigint): Promise<ServerFrame> {
    return waitFor(() => this.frames.find((f) => f.ref === ref), `the reply to frame ${ref}`);
  }

  welcome() {
    return waitFor(() => {
      const f = this.frames[0];
      return f?.kind?.$case === "welcome" && f.kind.value;
    }, "the welcome frame");
  }

  deliveries() {
    return this.frames.flatMap((f) => (f.kind?.$case === "message" && f.kind.value.entry ? [f.kind.value.entry] : []));
  }

  async close(): Promise<grpc.StatusObject> {
    this.stream.end();
    return waitFor(() => this.status, "the stream's status");
  }

  cancel(): void {
    this.stream.cancel();
  }
}

describe("native gRPC client (@grpc/grpc-js + ts-proto over HTTP/2)", function () {
  this.timeout(120_000);
  let chatd: ChatdProcess;
  let address: string;
  let auth: InstanceType<typeof AuthServiceClient>;
  let channels: InstanceType<typeof ChannelServiceClient>;
  let sessions: InstanceType<typeof SessionServiceClient>;
  const open: NativeSession[] = [];

  const signUp = async (name: string): Promise<Credentials> => {
    const username = `${name}${process.pid.toString(36)}${Math.random().toString(36).slice(2, 7)}`;
    const res = await unary<SignUpResponse>((cb) =>
      auth.signUp(
        { username, password: "correct horse battery", displayName: name, device: { name: "native", platform: DevicePlatform.DEVICE_PLATFORM_ANDROID } },
        cb,
      ),
    );
    assert.ok(res.credentials?.accessToken, "sign-up returns an access token");
    return res.credentials!;
  };
  const session = (token: string | undefined) => {
    const s = new NativeSession(sessions, token);
    open.push(s);
    return s;
  };

  before(async () => {
    chatd = await startChatd();
    address = new URL(chatd.grpcUrl).host;
    const creds = grpc.credentials.createInsecure();
    auth = new AuthServiceClient(address, creds);
    channels = new ChannelServiceClient(address, creds);
    sessions = new SessionServiceClient(address, creds);
  });
  afterEach(() => {
    for (const s of open.splice(0)) s.cancel();
  });
  after(async () => {
    for (const c of [auth, channels, sessions]) c?.close();
    await chatd?.stop();
    if (chatd) removeDataDir(chatd.dataDir);
  });

  it("signs up two users, opens a direct channel and exchanges messages over the bidi stream", async () => {
    const alice = await signUp("alice");
    const bob = await signUp("bob");
    const { channel } = await unary<OpenDirectResponse>((cb) =>
      channels.openDirect({ userId: bob.userId }, bearer(alice.accessToken), cb),
    );
    assert.ok(channel && channel.channelId > 0n, "a direct channel");

    const a = session(alice.accessToken);
    const b = session(bob.accessToken);
    const [wa, wb] = await Promise.all([a.welcome(), b.welcome()]);
    assert.equal(wa.userId, alice.userId);
    assert.equal(wa.deviceId, alice.deviceId);
    assert.equal(wb.userId, bob.userId);
    assert.ok(wa.heartbeatIntervalMs > 0);

    const hb = await a.reply(a.send({ $case: "heartbeat", value: {} }));
    assert.equal(hb.kind?.$case, "heartbeatAck");

    const ref = a.send({ $case: "send", value: SendMessage.fromPartial({ clientMsgId: "native-1", channelId: channel.channelId, text: "hello from grpc-js" }) });
    const ack = await a.reply(ref);
    assert.equal(ack.kind?.$case, "sendAck", JSON.stringify(ack.kind, (_, v) => (typeof v === "bigint" ? String(v) : v)));
    assert.equal(ack.kind.value.clientMsgId, "native-1");
    assert.equal(ack.kind.value.channelId, channel.channelId);
    assert.equal(ack.kind.value.duplicate, false);
    const messageId = ack.kind.value.messageId;
    assert.ok(messageId > 0n);

    const [toBob] = await waitFor(() => b.deliveries().length > 0 && b.deliveries(), "bob's delivery");
    assert.equal(toBob!.message?.messageId, messageId);
    assert.equal(toBob!.message?.text, "hello from grpc-js");
    assert.equal(toBob!.message?.senderUserId, alice.userId);
    assert.equal(toBob!.message?.seq, 1n);
    // The sender's own device gets the message in its inbox too (every device in sync).
    await waitFor(() => a.deliveries().some((e) => e.message?.messageId === messageId), "alice's own copy");

    // Bob answers on the same stream; a resend of the same client_msg_id is a duplicate, not a second message.
    b.send({ $case: "deliveryAck", value: { inboxSeq: toBob!.inboxSeq } });
    const reply = await b.reply(b.send({ $case: "send", value: SendMessage.fromPartial({ clientMsgId: "b-1", channelId: channel.channelId, text: "hi alice" }) }));
    assert.equal(reply.kind?.$case, "sendAck");
    const again = await b.reply(b.send({ $case: "send", value: SendMessage.fromPartial({ clientMsgId: "b-1", channelId: channel.channelId, text: "hi alice" }) }));
    assert.equal(again.kind?.$case, "sendAck");
    assert.equal(again.kind.value.duplicate, true);
    assert.equal(again.kind.value.messageId, reply.kind.value.messageId);
    // A marker after them: a second copy of either message would be an inbox entry before it.
    const marker = await b.reply(b.send({ $case: "send", value: SendMessage.fromPartial({ clientMsgId: "b-2", channelId: channel.channelId, text: "marker" }) }));
    assert.equal(marker.kind?.$case, "sendAck");
    await waitFor(() => a.deliveries().some((e) => e.message?.text === "marker"), "alice receives the marker");
    assert.deepEqual(
      a.deliveries().map((e) => e.message?.text),
      ["hello from grpc-js", "hi alice", "marker"],
      "alice saw each message once, in channel order",
    );

    // A client that half-closes ends its session cleanly.
    const status = await a.close();
    assert.equal(status.code, grpc.status.OK, status.details);
  });

  it("ends a stream without a valid token with UNAUTHENTICATED, and refuses unary calls the same way", async () => {
    const anon = session(undefined);
    const status = await waitFor(() => anon.status, "the status");
    assert.equal(status.code, grpc.status.UNAUTHENTICATED);
    assert.match(status.details, /authorization/);
    assert.deepEqual(status.metadata.get("chat-close-code"), ["4001"], "the close code, as a WebSocket would have had it");

    const forged = session("not-a-token");
    const refused = await waitFor(() => forged.status, "the status");
    assert.deepEqual([refused.code, refused.metadata.get("chat-close-code")], [grpc.status.UNAUTHENTICATED, ["4001"]]);

    await assert.rejects(unary<OpenDirectResponse>((cb) => channels.openDirect({ userId: 1n }, cb)), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAUTHENTICATED);
      return true;
    });
  });

  it("takes a new access token on the open stream (Reauthenticate), and answers it before a half-close ends the stream", async () => {
    const dave = await signUp("dave");
    const s = session(dave.accessToken);
    await s.welcome();
    const refreshed = await unary<{ credentials?: Credentials }>((cb) => auth.refresh({ refreshToken: dave.refreshToken }, cb));
    const fresh = refreshed.credentials!;
    const ok = await s.reply(s.send({ $case: "reauthenticate", value: { accessToken: fresh.accessToken } }));
    assert.equal(ok.kind?.$case, "reauthenticated");
    assert.equal(ok.kind.value.tokenExpiresAt?.getTime(), fresh.accessTokenExpiresAt?.getTime());
    const limited = await s.reply(s.send({ $case: "reauthenticate", value: { accessToken: fresh.accessToken } }));
    assert.ok(limited.kind?.$case === "error");
    const refusal = limited.kind.value;
    assert.equal(refusal.code, ErrorCode.ERROR_CODE_RATE_LIMITED);
    assert.equal(refusal.refusedKind, 8);
    await waitOut(refusal.retryAfterMs);
    // Sent and half-closed at once: the stream waits for the answer, as for a send's.
    const last = s.send({ $case: "reauthenticate", value: { accessToken: fresh.accessToken } });
    const status = await s.close();
    assert.equal(status.code, grpc.status.OK, status.details);
    assert.equal(s.frames.find((f) => f.ref === last)?.kind?.$case, "reauthenticated");
  });

  it("answers a refused send with an error frame and keeps the stream open", async () => {
    const carol = await signUp("carol");
    const s = session(carol.accessToken);
    await s.welcome();
    // Not a member of channel 1: an Error frame answers the frame, the session goes on.
    const err = await s.reply(s.send({ $case: "send", value: SendMessage.fromPartial({ clientMsgId: "x", channelId: 1n, text: "nope" }) }));
    assert.equal(err.kind?.$case, "error");
    const hb = await s.reply(s.send({ $case: "heartbeat", value: {} }));
    assert.equal(hb.kind?.$case, "heartbeatAck");
    assert.equal(s.status, undefined, "the stream is still open");
  });

  it("takes a frame of exactly the max_frame_bytes the Welcome tells (its ConnectRequest is a few bytes more)", async () => {
    const dave = await signUp("dave");
    const s = session(dave.accessToken);
    const { maxFrameBytes } = await s.welcome();
    const frameOf = (text: string): ClientFrame => ({ ref: 1n, kind: { $case: "send", value: SendMessage.fromPartial({ clientMsgId: "big", channelId: 1n, text }) } });
    const overhead = ClientFrame.encode(frameOf("x".repeat(maxFrameBytes - 64))).finish().length - (maxFrameBytes - 64);
    const frame = frameOf("x".repeat(maxFrameBytes - overhead));
    assert.equal(ClientFrame.encode(frame).finish().length, maxFrameBytes);
    // Past the text limit and no member of channel 1: an Error frame answers it; the point is that it is read at all.
    const ref = s.send(frame.kind);
    await waitFor(() => s.status ?? s.frames.find((f) => f.ref === ref), "the frame's answer or the stream's end");
    assert.equal(s.status, undefined, `the stream is still open, not ended: ${s.status?.details}`);
    assert.equal((await s.reply(ref)).kind?.$case, "error");

    // One byte more ends the stream, its status message readable by grpc-js
    // as sent (it reads grpc-message with decodeURI: "%3A" stayed "%3A").
    const over = session(dave.accessToken);
    await over.welcome();
    over.send(frameOf("x".repeat(maxFrameBytes + 1 - overhead)).kind);
    const status = await waitFor(() => over.status, "the stream's end");
    assert.equal(status.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(status.details, /^close 1009: /);
  });
});
