import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { credentials, Server, ServerCredentials, status as grpcStatus, type ServerDuplexStream } from "@grpc/grpc-js";
import { ClientFrameSchema, ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import { ChatServerServiceClient, ChatServerServiceService, type SessionRequest, type SessionResponse } from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import { ChatServer } from "../chatserver/server.js";
import { MemoryServerRegistry } from "../registry/memory.js";
import { stubInbox } from "../../test/support/inbox.js";
import { waitFor } from "../../test/support/wait.js";
import { chatServerService } from "./chat-server-grpc.js";
import { RemoteSessionHost } from "./remote-host.js";

/** A real chat server (ChatServer behind its gRPC service) on loopback, its gateway streams kept for the test to pause. */
async function chatServerOnLoopback(id: string, stored: bigint[], gatewayStreamsGraceMs = 5_000) {
  const channels = {
    getMember: async () => ({ userId: 1n, readSeq: 0n }),
    getChannel: async () => ({ channelId: 7n, kind: "group", title: "g", createdAtMs: 1, createdBy: 1n }),
    listMembers: async () => [{ userId: 1n }, { userId: 2n }],
    advanceReadSeq: async (_c: bigint, _u: bigint, seq: bigint) => {
      stored.push(seq);
      return { readSeq: seq, newest: undefined };
    },
  };
  const chat = new ChatServer({
    serverId: id,
    inbox: stubInbox(),
    channels: channels as never,
    submitter: {} as never,
    directory: { pushToUsers: async () => {} } as never,
  });
  const service = chatServerService(chat, undefined, { gatewayStreamsGraceMs });
  const calls: ServerDuplexStream<SessionRequest, SessionResponse>[] = [];
  const server = new Server();
  server.addService(ChatServerServiceService, {
    ...service,
    session: (call: ServerDuplexStream<SessionRequest, SessionResponse>) => {
      calls.push(call);
      service.session(call);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return {
    id,
    chat,
    service,
    calls,
    address: `127.0.0.1:${port}`,
    stop: () => {
      void chat.drain();
      server.forceShutdown();
    },
  };
}

function deviceSink() {
  const sink = {
    kinds: [] as string[],
    closed: undefined as { code: number; reason: string } | undefined,
    send: (f: Uint8Array | string) => void sink.kinds.push(fromBinary(ServerFrameSchema, f as Uint8Array).kind.case ?? ""),
    bufferedBytes: () => 0,
    close: (code: number, reason: string) => void (sink.closed = { code, reason }),
    moved: () => {},
  };
  return sink;
}

/** Chat servers a (registered) and b (not yet) on loopback, and a gateway's host watching the registry. */
async function twoServersAndAGateway(stored: bigint[], hostOptions: { retireTimeoutMs?: number } = {}) {
  const registry = new MemoryServerRegistry();
  const a = await chatServerOnLoopback("a", stored);
  const b = await chatServerOnLoopback("b", stored);
  const regA = await registry.register({ serverId: a.id, address: a.address, load: 0 });
  const host = new RemoteSessionHost({ gatewayId: "gw", watch: await registry.watch(), homelessTimeoutMs: 5_000, cooldownMs: 100, ...hostOptions });
  const sink = deviceSink();
  return {
    registry, a, b, regA, host, sink,
    open: () => host.open({ userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, sink),
    registerB: () => registry.register({ serverId: b.id, address: b.address, load: 0 }),
    async close() {
      await host.close();
      a.stop();
      b.stop();
      await registry.close();
    },
  };
}

const welcomes = (sink: ReturnType<typeof deviceSink>) => sink.kinds.filter((k) => k === "welcome").length;
const read = (seq: bigint) => toBinary(ClientFrameSchema, create(ClientFrameSchema, { kind: { case: "read", value: { channelId: 7n, seq } } }));

describe("a session moved off a chat server that drains or loses its lease: the frames it was sent", function () {
  this.timeout(60_000);

  for (const how of ["drains (SIGTERM)", "loses its lease"] as const) {
    it(`handles a read receipt the server had received but not yet read when it ${how}, before the session moves`, async () => {
      const stored: bigint[] = [];
      const t = await twoServersAndAGateway(stored);
      const { a, regA, sink } = t;
      try {
        const handle = t.open();
        await waitFor(() => welcomes(sink) === 1, "the session welcomed on a");
        handle.receive(read(3n));
        await waitFor(() => stored.includes(3n), "a receipt handled on a before the drain");
        await t.registerB();
        // The receipt reaches a while it reads nothing: received, not handled, as the drain starts.
        for (const call of a.calls) call.pause();
        handle.receive(read(5n));
        a.chat.accepting = false;
        await regA.close();
        // As cmd/chat-server stops: out of the registry, then its gateway streams ended.
        const ended = how === "drains (SIGTERM)" ? a.service.endAll() : undefined;
        for (const call of a.calls) call.resume();
        await ended;
        await waitFor(() => welcomes(sink) === 2, "the session moved to b");
        // Not sent again by anyone: without the fix it is never stored, however long this waits.
        await waitFor(() => stored.includes(5n), "the receipt's read position stored", 15_000);
        assert.equal(sink.closed, undefined);
      } finally {
        await t.close();
      }
    });
  }

  it("moves the sessions of a server that left the registry but never ends the stream the gateway half-closed, after retireTimeoutMs", async () => {
    const t = await twoServersAndAGateway([], { retireTimeoutMs: 200 });
    const { a, regA, sink } = t;
    try {
      t.open();
      await waitFor(() => welcomes(sink) === 1, "the session welcomed on a");
      await t.registerB();
      // Stuck: it never reads the half-close, so never ends the stream.
      for (const call of a.calls) call.pause();
      await regA.close();
      await waitFor(() => welcomes(sink) === 2, "the session moved to b", 5_000);
      assert.equal(sink.closed, undefined);
    } finally {
      await t.close();
    }
  });

  it("ends with UNAVAILABLE, once its grace is over, a gateway stream the gateway did not end", async () => {
    const a = await chatServerOnLoopback("a", [], 100);
    const client = new ChatServerServiceClient(a.address, credentials.createInsecure());
    const stream = client.session();
    const status = new Promise<number>((resolve) => stream.on("error", (err: { code: number }) => resolve(err.code)));
    try {
      stream.write({ sessionId: 1n, kind: { $case: "open", value: { userId: 1n, deviceId: 1n, tokenExpiresAt: new Date(Date.now() + 60_000), resumed: false, encoding: "proto", gatewayId: "gw" } } });
      await waitFor(() => a.calls.length === 1, "the stream open");
      await a.service.endAll();
      assert.equal(await status, grpcStatus.UNAVAILABLE);
    } finally {
      stream.cancel();
      client.close();
      a.stop();
    }
  });
});
