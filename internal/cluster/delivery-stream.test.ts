import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import net from "node:net";
import { create, fromBinary } from "@bufbuild/protobuf";
import { credentials, Server, ServerCredentials, type ServerDuplexStream, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import { MessageSchema } from "../../gen/es/chat/v1/types_pb.js";
import {
  ChatServerServiceClient,
  ChatServerServiceService,
  type DeliverStreamRequest,
  type DeliverStreamResponse,
  type SessionResponse,
} from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import { encodeServerFrame } from "../chatserver/codec.js";
import { ChatServer } from "../chatserver/server.js";
import type { ServerWatch } from "../registry/port.js";
import type { SessionRoutes } from "../routing/port.js";
import { stubInbox } from "../../test/support/inbox.js";
import { waitFor } from "../../test/support/wait.js";
import { chatServerService } from "./chat-server-grpc.js";
import { ChatServerClients } from "./client-pool.js";
import { DELIVER_STREAM_QUEUED_MAX, DeliveryStream } from "./delivery-stream.js";
import { DELIVER_STREAM_BATCHES_IN_FLIGHT } from "./message-limits.js";
import { RoutedSessionDirectory } from "./routed-directory.js";

async function listen(service: UntypedServiceImplementation, onPort = 0): Promise<{ server: Server; address: string }> {
  const server = new Server();
  server.addService(ChatServerServiceService, service);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${onPort}`, ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { server, address: `127.0.0.1:${port}` };
}

function delivery(inboxSeq: bigint, text: string) {
  const message = create(MessageSchema, { messageId: 900n + inboxSeq, channelId: 7n, seq: inboxSeq, senderUserId: 2n, clientMsgId: `m${inboxSeq}`, text });
  return create(ServerFrameSchema, { kind: { case: "message", value: { entry: { inboxSeq, message } } } });
}

const bytesOf = (frame: ReturnType<typeof delivery>) => Buffer.from(encodeServerFrame(frame, "proto") as Uint8Array);

/** One user's delivery of an encoded frame, to every device. */
const to = (userId: bigint, serverFrame: Buffer) => ({ userId, deviceIds: [], serverFrame });

/** A client of the server at `address` and its delivery stream; `close` ends both. */
function streamTo(address: string, timeoutMs: number) {
  const client = new ChatServerServiceClient(address, credentials.createInsecure());
  const stream = new DeliveryStream(client, timeoutMs);
  const close = () => {
    stream.close();
    client.close();
  };
  return { client, stream, close };
}

/**
 * A chat server on loopback (on `port`, or a free one) with one binary session of user 1 open on a gateway stream; what the session receives.
 * `gatewayStreamsGraceMs`: how long its endAll lets the gateway end that stream, which this raw one never does.
 */
async function chatServerWithSession(port = 0, gatewayStreamsGraceMs?: number) {
  const chat = new ChatServer({ serverId: "t", inbox: stubInbox(), channels: {} as never, submitter: {} as never });
  const service = chatServerService(chat, undefined, { gatewayStreamsGraceMs });
  const { server, address } = await listen(service as unknown as UntypedServiceImplementation, port);
  const client = new ChatServerServiceClient(address, credentials.createInsecure());
  const gateway = client.session();
  const received: Buffer[] = [];
  gateway.on("data", (res: SessionResponse) => {
    if (res.kind?.$case === "serverFrame") received.push(res.kind.value);
  });
  gateway.on("error", () => undefined);
  gateway.write({ sessionId: 1n, kind: { $case: "open", value: { userId: 1n, deviceId: 1n, tokenExpiresAt: new Date(Date.now() + 60_000), resumed: false, encoding: "proto", gatewayId: "gw" } } });
  await waitFor(() => received.some((b) => fromBinary(ServerFrameSchema, b).kind.case === "welcome"), "the session's Welcome", 10_000);
  const stop = () => {
    gateway.cancel();
    client.close();
    chat.drain();
    server.forceShutdown();
  };
  return { chat, service, server, address, received, stop };
}

describe("DeliveryStream (ChatServerService/DeliverStream)", () => {
  it("pushes batches on one stream, answered with the sessions reached, and hands the frame's bytes to a binary session as they came", async () => {
    const cs = await chatServerWithSession();
    const { client, stream, close } = streamTo(cs.address, 5_000);
    let streamsOpened = 0;
    const opened = client.deliverStream.bind(client) as (...args: unknown[]) => unknown;
    client.deliverStream = ((...args: unknown[]) => (streamsOpened++, opened(...args))) as typeof client.deliverStream;
    try {
      const first = bytesOf(delivery(1n, "hello"));
      const second = bytesOf(delivery(2n, "again"));
      assert.deepStrictEqual(await stream.send([to(1n, first)]), { sessions: 1, missed: [] });
      assert.deepStrictEqual(await stream.send([to(1n, second), to(99n, second)]), { sessions: 1, missed: [99n] });
      assert.deepStrictEqual(await stream.send([to(99n, first)]), { sessions: 0, missed: [99n] }, "nobody of the batch is here");
      await waitFor(() => cs.received.length >= 3, "both deliveries");
      assert.deepStrictEqual(cs.received.slice(1, 3), [first, second]);
      assert.equal(streamsOpened, 1);
      assert.equal(stream.waiting, 0);
    } finally {
      close();
      cs.stop();
    }
  });

  it("answers a batch with a malformed frame for the deliveries that were fine", async () => {
    const cs = await chatServerWithSession();
    const { stream, close } = streamTo(cs.address, 5_000);
    try {
      const outcome = await stream.send([
        to(1n, Buffer.from([0xff, 0xff, 0xff])),
        to(2n, bytesOf(delivery(1n, "fine"))),
        to(1n, bytesOf(delivery(1n, "fine"))),
      ]);
      assert.deepStrictEqual(outcome, { sessions: 1, missed: [1n, 2n] }, "user 1's malformed frame and user 2 (not here) missed");
    } finally {
      close();
      cs.stop();
    }
  });

  it("gives up on a batch left unanswered, and opens a new stream for the next", async () => {
    const calls: ServerDuplexStream<DeliverStreamRequest, DeliverStreamResponse>[] = [];
    let answer = false;
    const { server, address } = await listen({
      deliverStream(call: ServerDuplexStream<DeliverStreamRequest, DeliverStreamResponse>) {
        calls.push(call);
        call.on("data", (req: DeliverStreamRequest) => answer && call.write({ batchId: req.batchId, sessions: 3, missedUserIds: [] }));
        call.on("error", () => undefined);
      },
    });
    const { stream, close } = streamTo(address, 200);
    try {
      const frame = bytesOf(delivery(1n, "x"));
      assert.deepStrictEqual(await stream.send([to(1n, frame)]), { failed: "timeout" });
      answer = true;
      assert.deepStrictEqual(await stream.send([to(1n, frame)]), { sessions: 3, missed: [] });
      assert.equal(calls.length, 2);
    } finally {
      close();
      server.forceShutdown();
    }
  });

  it("reads an answer that came while the event loop was held up past the timeout before it calls the batch unanswered", async () => {
    // The server's answer travels as bytes on a loopback socket, so that it is read where the loop reads sockets: after its timers.
    const listener = net.createServer();
    await new Promise<void>((r) => listener.listen(0, "127.0.0.1", () => r()));
    const accepted = new Promise<net.Socket>((r) => listener.once("connection", r));
    const sender = net.connect((listener.address() as net.AddressInfo).port, "127.0.0.1");
    await new Promise<void>((r) => sender.once("connect", () => r()));
    const receiver = await accepted;
    const call = Object.assign(new EventEmitter(), { written: [] as DeliverStreamRequest[], write: (req: DeliverStreamRequest) => void call.written.push(req), cancel: () => {} });
    receiver.on("data", () => call.emit("data", { batchId: call.written[0]!.batchId, sessions: 1, missedUserIds: [] }));
    const stream = new DeliveryStream({ deliverStream: () => call } as unknown as ChatServerServiceClient, 50);
    try {
      // After the loop read its sockets (in its check phase): the batch goes, its answer is written, then the loop is held past the timeout.
      const outcome = await new Promise<unknown>((resolve) =>
        setImmediate(() => {
          const sent = stream.send([to(1n, bytesOf(delivery(1n, "x")))]);
          sender.write("answer");
          const until = performance.now() + 150;
          while (performance.now() < until);
          resolve(sent);
        }),
      );
      assert.deepStrictEqual(outcome, { sessions: 1, missed: [] });
    } finally {
      stream.close();
      sender.destroy();
      receiver.destroy();
      listener.close();
    }
  });

  it("times a batch from when it goes on the stream, not while it waits behind a slow server's batches, and puts no more on it than the server reads", async () => {
    // A chat server that takes 250 ms over each delivery (a slow dependency): five rounds of its limit (as many batches as
    // the stream holds) take 1.25 s, past the timeout for the last had they all gone on the stream at once.
    const chat = new ChatServer({ serverId: "t", inbox: stubInbox(), channels: {} as never, submitter: {} as never });
    chat.deliverChecked = (() => new Promise<number>((resolve) => setTimeout(() => resolve(0), 250))) as never;
    const limit = DELIVER_STREAM_BATCHES_IN_FLIGHT;
    const users = Array.from({ length: limit + DELIVER_STREAM_QUEUED_MAX }, (_, i) => BigInt(i + 1));
    const { server, address } = await listen(chatServerService(chat) as unknown as UntypedServiceImplementation);
    const { client, stream, close } = streamTo(address, 1_000);
    let onStream = 0;
    let most = 0;
    const opened = client.deliverStream.bind(client) as () => ReturnType<typeof client.deliverStream>;
    client.deliverStream = (() => {
      const call = opened();
      call.on("data", () => onStream--);
      const write = call.write.bind(call) as (...args: unknown[]) => boolean;
      call.write = ((...args: unknown[]) => ((most = Math.max(most, ++onStream)), write(...args))) as typeof call.write;
      return call;
    }) as typeof client.deliverStream;
    try {
      const frame = bytesOf(delivery(1n, "x"));
      const outcomes = await Promise.all(users.map((u) => stream.send([to(u, frame)])));
      assert.deepStrictEqual(outcomes, users.map((u) => ({ sessions: 0, missed: [u] })), "every batch answered (nobody of them is here)");
      assert.ok(most <= limit, `at most ${limit} batches on the stream unanswered: ${most}`);
      assert.equal(stream.waiting, 0);
    } finally {
      close();
      chat.drain();
      server.forceShutdown();
    }
  });

  it("ends a batch as busy at once when as many as it may hold already wait for the stream, and sends the others as it has room", async () => {
    const held: (() => void)[] = [];
    let answering = false;
    const { server, address } = await listen({
      deliverStream(call: ServerDuplexStream<DeliverStreamRequest, DeliverStreamResponse>) {
        call.on("data", (req: DeliverStreamRequest) => {
          const answer = () => call.write({ batchId: req.batchId, sessions: 1, missedUserIds: [] });
          if (answering) answer();
          else held.push(answer);
        });
        call.on("error", () => undefined);
      },
    });
    const client = new ChatServerServiceClient(address, credentials.createInsecure());
    const stream = new DeliveryStream(client, 30_000, undefined, undefined, 2);
    try {
      const frame = bytesOf(delivery(1n, "x"));
      const sent = Array.from({ length: DELIVER_STREAM_BATCHES_IN_FLIGHT + 2 }, () => stream.send([to(1n, frame)]));
      assert.deepStrictEqual(await stream.send([to(1n, frame)]), { failed: "busy" });
      await waitFor(() => held.length === DELIVER_STREAM_BATCHES_IN_FLIGHT, "the stream's limit of batches at the server");
      answering = true;
      for (const answer of held) answer();
      assert.deepStrictEqual(await Promise.all(sent), sent.map(() => ({ sessions: 1, missed: [] })));
    } finally {
      stream.close();
      client.close();
      server.forceShutdown();
    }
  });

  it("ends the batches waiting on a stream the server broke, at once", async () => {
    const { server, address } = await listen({
      deliverStream(call: ServerDuplexStream<DeliverStreamRequest, DeliverStreamResponse>) {
        call.on("data", () => call.emit("error", { code: 14, details: "going away" }));
      },
    });
    const { stream, close } = streamTo(address, 30_000);
    try {
      const frame = bytesOf(delivery(1n, "x"));
      const started = Date.now();
      assert.deepStrictEqual(await stream.send([to(1n, frame)]), { failed: "broken" });
      assert.ok(Date.now() - started < 10_000);
      assert.equal(stream.waiting, 0);
    } finally {
      close();
      server.forceShutdown();
    }
  });

  it("ends at once, without throwing or reopening, a batch sent after the stream or its channel was closed", async () => {
    const cs = await chatServerWithSession();
    const frame = bytesOf(delivery(1n, "x"));
    const closedStream = new DeliveryStream(new ChatServerServiceClient(cs.address, credentials.createInsecure()), 5_000);
    const closedChannel = new ChatServerServiceClient(cs.address, credentials.createInsecure());
    const onClosedChannel = new DeliveryStream(closedChannel, 5_000);
    try {
      closedStream.close();
      assert.deepStrictEqual(await closedStream.send([to(1n, frame)]), { failed: "broken" });
      closedChannel.close();
      assert.deepStrictEqual(await onClosedChannel.send([to(1n, frame)]), { failed: "broken" });
      assert.equal(cs.received.length, 1, "only the Welcome");
    } finally {
      cs.stop();
    }
  });

  it("asks again, after a while, a server that answered UNIMPLEMENTED: a newer build may have taken its address", async () => {
    const older = await chatServerWithSession();
    const { deliverStream: _, ...olderService } = chatServerService(older.chat);
    const { server: olderServer, address } = await listen(olderService as unknown as UntypedServiceImplementation);
    const client = new ChatServerServiceClient(address, credentials.createInsecure());
    const stream = new DeliveryStream(client, 5_000, undefined, 200);
    let newer: Awaited<ReturnType<typeof chatServerWithSession>> | undefined;
    try {
      assert.deepStrictEqual(await stream.send([to(1n, bytesOf(delivery(1n, "x")))]), { failed: "unimplemented" });
      assert.equal(stream.unsupported, true);
      olderServer.forceShutdown();
      newer = await chatServerWithSession(Number(address.split(":")[1]));
      await waitFor(() => !stream.unsupported, "the stream to be worth trying again");
      assert.deepStrictEqual(await stream.send([to(1n, bytesOf(delivery(2n, "y")))]), { sessions: 1, missed: [] });
    } finally {
      stream.close();
      client.close();
      older.stop();
      newer?.stop();
    }
  });

  it("lets the server shut down gracefully: endAll ends the delivery streams once their batches are answered", async () => {
    // Its gateway stream, never half-closed as a gateway's would be, is ended by endAll after this grace.
    const cs = await chatServerWithSession(0, 50);
    const { stream, close } = streamTo(cs.address, 5_000);
    try {
      assert.deepStrictEqual(await stream.send([to(1n, bytesOf(delivery(1n, "x")))]), { sessions: 1, missed: [] });
      const ended = cs.service.endAll();
      // tryShutdown completes only when no call is open: the gateway's stream was ended by endAll, the delivery stream too.
      await new Promise<void>((resolve) => cs.server.tryShutdown(() => resolve()));
      await ended;
    } finally {
      close();
      cs.stop();
    }
  });
});

describe("RoutedSessionDirectory on chat servers", () => {
  const watchOf = (servers: { serverId: string; address: string }[]): ServerWatch =>
    ({ servers: () => servers.map((s) => ({ ...s, load: 0 })), onChange: () => () => undefined }) as unknown as ServerWatch;

  it("delivers through the stream to a chat server that has it, and by Deliver calls to an older one without it", async () => {
    const current = await chatServerWithSession();
    const older = await chatServerWithSession();
    // An older build's service: everything but DeliverStream (grpc-js answers UNIMPLEMENTED for it).
    const { deliverStream: _, ...olderService } = chatServerService(older.chat);
    const { server: olderServer, address: olderAddress } = await listen(olderService as unknown as UntypedServiceImplementation);
    // User 1 has a session on both chat servers (the older one reached through its own listener); user 2, routed to
    // the current one, none (the older build's count-only answer could not tell).
    const routes = { lookup: async () => new Map([[1n, ["current", "older"]], [2n, ["current"]]]) } as unknown as SessionRoutes;
    const clients = new ChatServerClients(watchOf([{ serverId: "current", address: current.address }, { serverId: "older", address: olderAddress }]));
    const directory = new RoutedSessionDirectory(routes, clients);
    try {
      const frame = delivery(1n, "hi");
      const reached = await directory.pushMany([{ userId: 1n, frame }, { userId: 2n, frame }]);
      assert.deepStrictEqual([...reached], [1n]);
      assert.equal(clients.deliveries("current")?.unsupported, false);
      assert.equal(clients.deliveries("older")?.unsupported, true, "the older build was asked by Deliver instead");
      for (const cs of [current, older]) {
        await waitFor(() => cs.received.length >= 2, "the delivery");
        assert.deepStrictEqual(cs.received[1], bytesOf(frame));
      }
    } finally {
      clients.close();
      olderServer.forceShutdown();
      current.stop();
      older.stop();
    }
  });
});
