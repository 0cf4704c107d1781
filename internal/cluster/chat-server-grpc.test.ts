import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { create, fromBinary, fromJsonString, toBinary } from "@bufbuild/protobuf";
import { credentials, Metadata, Server, ServerCredentials } from "@grpc/grpc-js";
import { ClientFrameSchema, ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { ErrorCode, PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import { ErrorCode as WireErrorCode } from "../../gen/ts-proto/chat/v1/types.js";
import { ServerFrame as TsServerFrame } from "../../gen/ts-proto/chat/v1/session.js";
import { ChatServerServiceClient, ChatServerServiceService, type SessionResponse } from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import { ChatServer } from "../chatserver/server.js";
import type { Inbox } from "../messages/inbox.js";
import type { InboxEntry } from "../model/types.js";
import { waitFor } from "../../test/support/wait.js";
import { CHAT_SERVER_MAX_CONCURRENT_STREAMS, chatServerGrpcOptions, chatServerService, DELIVER_STREAM_BATCHES_IN_FLIGHT } from "./chat-server-grpc.js";
import { TcpProxy } from "../../test/support/tcp-proxy.js";
import { presenceFrame } from "../presence/tracker.js";

/** A user's inbox of `count` entries of `textBytes` each. */
function inboxOf(count: number, textBytes: number): Inbox {
  const entry = (inboxSeq: bigint): InboxEntry => ({
    inboxSeq,
    message: { messageId: 1000n + inboxSeq, channelId: 7n, seq: inboxSeq, senderUserId: 2n, senderDeviceId: 1n, clientMsgId: `m${inboxSeq}`, text: "x".repeat(textBytes), sentAtMs: 0 },
  });
  return {
    append: () => Promise.reject(new Error("not in this test")),
    readAfter: async (_u, after, limit) => {
      const out: InboxEntry[] = [];
      for (let s = after + 1n; s <= BigInt(count) && out.length < limit; s++) out.push(entry(s));
      return out;
    },
    head: async () => BigInt(count),
    getCursor: async () => 0n,
    advanceCursor: async () => {},
    dropCursor: async () => {},
    emptyTexts: async () => {},
  };
}

/** `chat` served on loopback, and a client of it. */
async function servedOnLoopback(chat: ChatServer) {
  const server = new Server();
  server.addService(ChatServerServiceService, chatServerService(chat));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const client = new ChatServerServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  const close = () => {
    client.close();
    chat.drain();
    server.forceShutdown();
  };
  return { client, close };
}

/** `chat` served on loopback, and a gateway's session stream to it. */
async function gatewayStreamTo(chat: ChatServer) {
  const served = await servedOnLoopback(chat);
  const stream = served.client.session();
  const close = () => {
    stream.cancel();
    served.close();
  };
  return { stream, close };
}

describe("chat server's gateway stream (ChatServerService/Session)", () => {
  it("resumes a catch-up that stalled on the stream's backlog once the backlog is written, with no later push to wake it", async () => {
    // Pages of 200 entries of 2 KB: each page alone is past the high-water mark, in one frame (no 'drain' from grpc-js).
    const chat = new ChatServer({ serverId: "t", inbox: inboxOf(500, 2_000), channels: {} as never, submitter: {} as never, limits: { highWaterBytes: 64 * 1024 } });
    const { stream, close } = await gatewayStreamTo(chat);
    let entries = 0;
    stream.on("data", (res: SessionResponse) => {
      if (res.kind?.$case !== "serverFrame") return;
      const frame = fromBinary(ServerFrameSchema, res.kind.value);
      if (frame.kind.case === "syncBatch") entries += frame.kind.value.entries.length;
    });
    stream.on("error", () => undefined);
    try {
      stream.write({ sessionId: 1n, kind: { $case: "open", value: { userId: 1n, deviceId: 1n, tokenExpiresAt: new Date(Date.now() + 60_000), resumed: false, encoding: "proto", gatewayId: "gw" } } });
      await waitFor(() => entries === 500, "every entry of the catch-up", 10_000);
    } finally {
      close();
    }
  });
});

describe("chat server's gateway stream: a Reauthenticate's verdict", () => {
  it("answers the device in its session, with the error the gateway named, and moves the session's end", async () => {
    const chat = new ChatServer({ serverId: "t", inbox: inboxOf(0, 0), channels: {} as never, submitter: {} as never });
    const { stream, close } = await gatewayStreamTo(chat);
    const frames: ServerFrame[] = [];
    stream.on("data", (res: SessionResponse) => {
      if (res.kind?.$case === "serverFrame") frames.push(fromBinary(ServerFrameSchema, res.kind.value));
    });
    stream.on("error", () => undefined);
    try {
      const renewedTo = Date.now() + 900_000;
      stream.write({ sessionId: 1n, kind: { $case: "open", value: { userId: 1n, deviceId: 1n, tokenExpiresAt: new Date(Date.now() + 60_000), resumed: false, encoding: "proto", gatewayId: "gw" } } });
      stream.write({ sessionId: 1n, kind: { $case: "reauthentication", value: { ref: 5n, refusedCode: WireErrorCode.ERROR_CODE_TOKEN_EXPIRED, refusedReason: "access token expired", retryAfterMs: 0 } } });
      stream.write({ sessionId: 1n, kind: { $case: "reauthentication", value: { ref: 6n, tokenExpiresAt: new Date(renewedTo), refusedCode: 0, refusedReason: "", retryAfterMs: 0 } } });
      await waitFor(() => frames.length === 3, "welcome and both answers");
      const [welcome, refused, renewed] = frames;
      assert.equal(welcome!.kind.case, "welcome");
      assert.equal(refused!.ref, 5n);
      assert.ok(refused!.kind.case === "error");
      assert.equal(refused!.kind.value.code, ErrorCode.TOKEN_EXPIRED);
      assert.equal(refused!.kind.value.message, "access token expired");
      assert.equal(refused!.kind.value.refusedKind, 8);
      assert.equal(renewed!.ref, 6n);
      assert.ok(renewed!.kind.case === "reauthenticated");
      assert.equal(Number(renewed!.kind.value.tokenExpiresAt!.seconds), Math.floor(renewedTo / 1000));
    } finally {
      close();
    }
  });
});

/** A gateway stream whose writes stay queued (their callbacks held) until `release`: a gateway that reads slowly. */
class HeldCall extends EventEmitter {
  writableEnded = false;
  destroyed = false;
  readonly out: SessionResponse[] = [];
  private held: (() => void)[] = [];

  write(res: SessionResponse, cb: () => void): boolean {
    this.out.push(res);
    this.held.push(cb);
    return true;
  }

  end(): void {
    this.writableEnded = true;
  }

  release(): void {
    for (const cb of this.held.splice(0)) cb();
  }

  releaseAllButLast(): void {
    for (const cb of this.held.splice(0, this.held.length - 1)) cb();
  }
}

describe("chat server's gateway stream back-pressure", () => {
  it("never closes a session for the backlog its stream shares, however many sessions catch up on it", async () => {
    // 40 sessions each 500 entries of 2 KB behind: one page of each is 16 MB on the stream, twice the 8 MiB cap.
    const chat = new ChatServer({ serverId: "t", inbox: inboxOf(500, 2_000), channels: {} as never, submitter: {} as never });
    const call = new HeldCall();
    chatServerService(chat).session(call as never);
    const sessions = 40;
    for (let i = 1; i <= sessions; i++) {
      call.emit("data", { sessionId: BigInt(i), kind: { $case: "open", value: { userId: BigInt(i), deviceId: 1n, tokenExpiresAt: new Date(Date.now() + 60_000), resumed: true, encoding: "proto", gatewayId: "gw" } } });
    }
    const entries = new Map<bigint, number>();
    const closes: number[] = [];
    let seen = 0;
    const tally = () => {
      for (const res of call.out.slice(seen)) {
        if (res.kind?.$case === "closed") closes.push(res.kind.value.code);
        if (res.kind?.$case !== "serverFrame") continue;
        const frame = fromBinary(ServerFrameSchema, res.kind.value);
        if (frame.kind.case === "syncBatch") entries.set(res.sessionId, (entries.get(res.sessionId) ?? 0) + frame.kind.value.entries.length);
      }
      seen = call.out.length;
    };
    try {
      await waitFor(() => {
        tally();
        // The gateway reads what is queued only now and then.
        call.release();
        return closes.length > 0 || [...entries.values()].filter((n) => n === 500).length === sessions;
      }, "every session caught up", 20_000);
      assert.deepStrictEqual(closes, [], "no session closed");
    } finally {
      chat.drain();
    }
  });
});

describe("chat server's gateway stream back-pressure under steady traffic", () => {
  it("resumes the sessions stalled on the stream's backlog once it is down to half, though other sessions' answers keep it from ever being empty", async () => {
    const chat = new ChatServer({ serverId: "t", inbox: inboxOf(500, 2_000), channels: {} as never, submitter: {} as never, limits: { highWaterBytes: 64 * 1024 } });
    const call = new HeldCall();
    chatServerService(chat).session(call as never);
    const open = (sessionId: bigint) =>
      call.emit("data", { sessionId, kind: { $case: "open", value: { userId: sessionId, deviceId: 1n, tokenExpiresAt: new Date(Date.now() + 60_000), resumed: true, encoding: "proto", gatewayId: "gw" } } });
    // Session 1 is 500 entries of 2 KB behind: a page alone is past the high-water mark. Session 2 only sends heartbeats.
    open(1n);
    let entries = 0;
    let seen = 0;
    const tally = () => {
      for (const res of call.out.slice(seen)) {
        if (res.sessionId !== 1n || res.kind?.$case !== "serverFrame") continue;
        const frame = fromBinary(ServerFrameSchema, res.kind.value);
        if (frame.kind.case === "syncBatch") entries += frame.kind.value.entries.length;
      }
      seen = call.out.length;
    };
    await waitFor(() => (tally(), entries > 0), "session 1's first page");
    open(2n);
    const heartbeat = Buffer.from(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 1n, kind: { case: "heartbeat", value: {} } })));
    try {
      await waitFor(async () => {
        // The gateway reads all but the newest write: some heartbeat ack is always still queued.
        call.emit("data", { sessionId: 2n, kind: { $case: "clientFrame", value: heartbeat } });
        await new Promise((r) => setImmediate(r));
        call.releaseAllButLast();
        tally();
        return entries === 500;
      }, "every entry of session 1's catch-up", 10_000);
    } finally {
      chat.drain();
    }
  });
});

describe("chat server's gateway stream: a gateway cut off", () => {
  it("ends the sessions of a gateway that stops answering (its host gone, no FIN) within its keepalive, not at their silence", async () => {
    const chat = new ChatServer({ serverId: "t", inbox: inboxOf(0, 0), channels: {} as never, submitter: {} as never });
    const server = new Server(chatServerGrpcOptions({ keepaliveMs: 200, keepaliveTimeoutMs: 200 }));
    server.addService(ChatServerServiceService, chatServerService(chat));
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const proxy = await TcpProxy.start(`127.0.0.1:${port}`);
    // A gateway with no keepalive of its own: what is tried here is the chat server's.
    const client = new ChatServerServiceClient(proxy.address, credentials.createInsecure());
    const stream = client.session();
    stream.on("error", () => undefined);
    let welcomed = false;
    stream.on("data", (res: SessionResponse) => (welcomed ||= res.kind?.$case === "serverFrame"));
    try {
      stream.write({ sessionId: 1n, kind: { $case: "open", value: { userId: 1n, deviceId: 1n, tokenExpiresAt: new Date(Date.now() + 60_000), resumed: false, encoding: "proto", gatewayId: "gw" } } });
      await waitFor(() => welcomed, "the welcome");
      assert.equal(chat.sessionCount, 1);
      proxy.cut("blackhole");
      // Its silence would close it after three heartbeat intervals (75 s here).
      await waitFor(() => chat.sessionCount === 0, "the session of the gateway cut off ended", 5_000);
    } finally {
      stream.cancel();
      client.close();
      chat.drain();
      server.forceShutdown();
      await proxy.close();
    }
  });
});

describe("chat server's CloseDeviceSessions", () => {
  it("answers how many sessions of the device it closed, none of the device's neighbours", async () => {
    const chat = new ChatServer({ serverId: "t", inbox: inboxOf(0, 0), channels: {} as never, submitter: {} as never });
    const service = chatServerService(chat);
    const call = new HeldCall();
    service.session(call as never);
    // Two tabs of device 7 and device 8 of the same user.
    for (const [sessionId, deviceId] of [[1n, 7n], [2n, 7n], [3n, 8n]] as const) {
      call.emit("data", { sessionId, kind: { $case: "open", value: { userId: 1n, deviceId, tokenExpiresAt: new Date(Date.now() + 60_000), resumed: false, encoding: "proto", gatewayId: "gw" } } });
    }
    try {
      const closeDevice = (deviceId: bigint) =>
        new Promise<number>((resolve, reject) =>
          service.closeDeviceSessions({ request: { userId: 1n, deviceId, code: 4003, reason: "signed out" } } as never, (err, res) => (err ? reject(err) : resolve(res!.sessions))),
        );
      assert.equal(await closeDevice(7n), 2);
      assert.equal(chat.sessionCount, 1, "device 8's session stays");
      assert.equal(await closeDevice(7n), 0, "nothing left of device 7");
    } finally {
      chat.drain();
    }
  });
});

describe("chat server's DeliverStream: one user's presence events", () => {
  it("answers their batch at once though a block check holds one of them back, and the user ends with the event that came last", async () => {
    // The pair's block changed a moment ago (an unblock): an event that tells something of the other waits for a check.
    const checks: { answer: () => void; done: Promise<unknown> }[] = [];
    const blocks = {
      blockersBetween: () => {
        let answer!: () => void;
        const done = new Promise<readonly bigint[]>((resolve) => (answer = () => resolve([])));
        checks.push({ answer, done });
        return done;
      },
      forget: () => {},
    };
    const chat = new ChatServer({ serverId: "t", inbox: inboxOf(0, 0), channels: {} as never, submitter: {} as never, blocks: blocks as never });
    const service = chatServerService(chat);
    const gateway = new HeldCall();
    service.session(gateway as never);
    const presenceOf2 = () =>
      gateway.out.flatMap((res) => {
        if (res.kind?.$case !== "serverFrame") return [];
        const frame = fromBinary(ServerFrameSchema, res.kind.value);
        return frame.kind.case === "presence" ? [frame.kind.value.presence!.status === PresenceStatus.ONLINE ? "online" : "offline"] : [];
      });
    gateway.emit("data", { sessionId: 1n, kind: { $case: "open", value: { userId: 1n, deviceId: 1n, tokenExpiresAt: new Date(Date.now() + 60_000), resumed: false, encoding: "proto", gatewayId: "gw" } } });
    await waitFor(() => gateway.out.some((res) => res.kind?.$case === "serverFrame" && fromBinary(ServerFrameSchema, res.kind.value).kind.case === "welcome"), "the welcome");
    chat.forgetBlock(1n, 2n);
    const answers: unknown[] = [];
    const deliveries = Object.assign(new EventEmitter(), { writableEnded: false, destroyed: false, write: (res: unknown) => void answers.push(res) });
    service.deliverStream(deliveries as never);
    try {
      // User 2 came online, then user 1 unfriended them: told OFFLINE, with no last seen (it tells nothing, so it is not checked).
      const event = (online: boolean) => ({ userId: 1n, deviceIds: [], serverFrame: Buffer.from(toBinary(ServerFrameSchema, presenceFrame({ userId: 2n, online }))) });
      deliveries.emit("data", { batchId: 1n, deliveries: [event(true), event(false)] });
      // Held, it kept the batch open: its sender sent no other presence meanwhile, and tore the stream down after 2 s.
      await waitFor(() => answers.length === 1, "the batch answered while its check waits", 2_000);
      assert.equal(checks.length, 1);
      checks[0]!.answer();
      await checks[0]!.done;
      assert.deepEqual(presenceOf2(), ["offline"], "user 1's screen ends with the event that came last: the ONLINE it replaced never lands");
    } finally {
      chat.drain();
    }
  });
});

describe("chat server's DeliverStream: a flood", () => {
  it("reads no more of a stream while its limit of batches is in flight, and reads on as they are answered", async () => {
    // Every batch is held here while the pipeline sends on. Nothing the chat server does now waits
    // (presence held by a block check does not hold its batch), so the hold is the test's.
    const checks: (() => void)[] = [];
    const chat = new ChatServer({ serverId: "t", inbox: inboxOf(0, 0), channels: {} as never, submitter: {} as never });
    chat.deliverChecked = (() => new Promise<number>((resolve) => checks.push(() => resolve(0)))) as never;
    const limit = DELIVER_STREAM_BATCHES_IN_FLIGHT;
    const total = 4 * limit;
    const about = 1_000_000n;
    const { client, close } = await servedOnLoopback(chat);
    const call = client.deliverStream();
    let answers = 0;
    call.on("data", () => answers++);
    call.on("error", () => undefined);
    try {
      const frame = Buffer.from(toBinary(ServerFrameSchema, presenceFrame({ userId: about, online: true })));
      for (let i = 1; i <= total; i++) call.write({ batchId: BigInt(i), deliveries: [{ userId: BigInt(i), deviceIds: [], serverFrame: frame }] });
      await waitFor(() => checks.length >= limit, "the stream's limit in flight");
      let most = 0;
      let released = 0;
      while (released < total) {
        await waitFor(() => checks.length > released, "a batch in flight");
        most = Math.max(most, checks.length - released);
        checks[released++]!();
      }
      await waitFor(() => answers === total, "every batch answered");
      assert.ok(most <= limit, `at most ${limit} batches read ahead of their answers: ${most}`);
    } finally {
      call.cancel();
      close();
    }
  });
});

describe("chat server's Deliver: a flood", () => {
  it("handles no more calls of one connection at once than its stream limit, and answers every one as the others end", async () => {
    // Every delivery is held here: a sender flooding Deliver calls at a chat server that is slow to answer them.
    const held: (() => void)[] = [];
    const chat = new ChatServer({ serverId: "t", inbox: inboxOf(0, 0), channels: {} as never, submitter: {} as never });
    chat.deliverChecked = (() => new Promise<number>((resolve) => held.push(() => resolve(1)))) as never;
    const server = new Server(chatServerGrpcOptions());
    server.addService(ChatServerServiceService, chatServerService(chat));
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const client = new ChatServerServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const limit = CHAT_SERVER_MAX_CONCURRENT_STREAMS;
    const total = 3 * limit;
    const frame = TsServerFrame.decode(toBinary(ServerFrameSchema, presenceFrame({ userId: 2n, online: true })));
    try {
      const calls = Array.from(
        { length: total },
        (_, i) =>
          new Promise<string>((resolve) =>
            client.deliver({ deliveries: [{ userId: BigInt(i + 1), deviceIds: [], frame }] }, new Metadata(), (err, res) =>
              resolve(err ? `failed: ${err.code} ${err.details}` : `sessions: ${res?.sessions}`),
            ),
          ),
      );
      let most = 0;
      let released = 0;
      while (released < total) {
        await waitFor(() => held.length > released, "a call being handled", 10_000);
        most = Math.max(most, held.length - released);
        held[released++]!();
      }
      assert.deepEqual(await Promise.all(calls), calls.map(() => "sessions: 1"), "every call answered");
      assert.ok(most <= limit, `at most ${limit} calls of the connection handled at once: ${most}`);
    } finally {
      client.close();
      chat.drain();
      server.forceShutdown();
    }
  });
});

describe("chat server's gateway stream: a JSON session's frames", () => {
  it("refuses a frame that is not UTF-8 (a binary WebSocket frame, which the socket does not check), as chatd does, and submits nothing of it", async () => {
    const texts: string[] = [];
    const submitter = { submit: async (_who: unknown, cmd: { text: string }) => (texts.push(cmd.text), { messageId: 1n, duplicate: false }) };
    const chat = new ChatServer({ serverId: "t", inbox: inboxOf(0, 0), channels: {} as never, submitter: submitter as never });
    const call = new HeldCall();
    chatServerService(chat).session(call as never);
    const frames = () =>
      call.out.flatMap((res) => (res.kind?.$case === "serverFrame" ? [fromJsonString(ServerFrameSchema, res.kind.value.toString("utf8"))] : []));
    call.emit("data", { sessionId: 1n, kind: { $case: "open", value: { userId: 1n, deviceId: 1n, tokenExpiresAt: new Date(Date.now() + 60_000), resumed: false, encoding: "json", gatewayId: "gw" } } });
    const send = (ref: number, text: Buffer) =>
      Buffer.concat([Buffer.from(`{"ref":"${ref}","send":{"clientMsgId":"m${ref}","channelId":"7","text":"`), text, Buffer.from(`"}}`)]);
    try {
      await waitFor(() => frames().some((f) => f.kind.case === "welcome"), "the welcome");
      // A lone 0xff byte: read leniently, it would be stored as U+FFFD, not the text the device sent.
      call.emit("data", { sessionId: 1n, kind: { $case: "clientFrame", value: send(1, Buffer.from([0x68, 0xff])) } });
      call.emit("data", { sessionId: 1n, kind: { $case: "clientFrame", value: send(2, Buffer.from("ok")) } });
      const answers = () => frames().filter((f) => f.kind.case === "error" || f.kind.case === "sendAck");
      await waitFor(() => answers().length === 2, "both frames answered");
      const [refused, acked] = answers();
      assert.ok(refused!.kind.case === "error", `the frame that is not UTF-8 is refused, not ${refused!.kind.case}`);
      assert.equal(refused!.kind.value.code, ErrorCode.INVALID_FRAME);
      assert.equal(acked!.kind.case, "sendAck");
      assert.deepEqual(texts, ["ok"]);
    } finally {
      chat.drain();
    }
  });
});
