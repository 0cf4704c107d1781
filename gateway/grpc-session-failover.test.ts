import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema, ServerFrameSchema } from "../gen/es/chat/v1/session_pb.js";
import { ConnectRequest } from "../gen/ts-proto/chat/v1/session.js";
import { ErrorCode } from "../gen/ts-proto/chat/v1/types.js";
import { MemoryServerRegistry } from "../internal/registry/memory.js";
import { RemoteSessionHost } from "../internal/cluster/remote-host.js";
import { waitFor } from "../test/support/wait.js";
import { FramedChatServer, nativeClientOn } from "./testing.js";


/**
 * A gateway (RemoteSessionHost and SessionService) in front of a silent chat
 * server `a`, with a native client's stream open on it; `b`, which answers,
 * registers once the session is on `a` (unless told not to).
 */
async function nativeSessionOnDoomedServer({ registerB = true, refusing = false } = {}) {
  const a = new FramedChatServer("a", false);
  a.refusing = refusing;
  const b = new FramedChatServer("b", true);
  await Promise.all([a.start(), b.start()]);
  const registry = new MemoryServerRegistry();
  await registry.register({ serverId: a.id, address: a.address, load: 0 });
  const host = new RemoteSessionHost({ gatewayId: "gw", watch: await registry.watch(), cooldownMs: 60_000 });
  const { server, client, stream, frames, statusWithin } = await nativeClientOn(host);
  if (refusing) await waitFor(() => a.opened.length === 1, "the session opened on a");
  else await waitFor(() => frames.some((f) => f.kind?.$case === "welcome"), "the welcome from a");
  if (registerB) await registry.register({ serverId: b.id, address: b.address, load: 0 });
  await waitFor(() => host.sessionCount === 1 && true, "the session held");
  const close = async () => {
    stream.cancel();
    client.close();
    await host.close();
    a.server.forceShutdown();
    b.server.forceShutdown();
    await registry.close();
    await new Promise((r) => server.close(r));
  };
  return { a, b, host, stream, frames, statusWithin, close };
}

const send = (ref: bigint, clientMsgId: string) =>
  ConnectRequest.fromPartial({ frame: { ref, kind: { $case: "send", value: { clientMsgId, channelId: 7n, text: "hi" } } } });

describe("native gRPC session whose chat server dies (gateway failover)", function () {
  this.timeout(20_000);

  it("gets the answer to a send in flight from the server it moved to, though its client half-closed, and ends with OK at once", async () => {
    const s = await nativeSessionOnDoomedServer();
    try {
      s.stream.write(send(1n, "m1"));
      s.stream.end();
      await waitFor(() => s.a.sends.length === 1, "the send on a, unanswered");
      s.a.breakStreams();
      // Not answered, the ask held the stream open until the session's silence closed it (about 75 s).
      const { code } = await s.statusWithin(5_000);
      assert.equal(code, grpc.status.OK);
      assert.deepEqual(s.b.sends, ["m1"], "sent again to the new server, under its client_msg_id");
      assert.deepEqual(s.frames.map((f) => [f.kind?.$case, f.ref]), [["welcome", 0n], ["welcome", 0n], ["sendAck", 1n]]);
    } finally {
      await s.close();
    }
  });

  it("sends nothing twice for a client that sends its unanswered send again after the move, and ends once it half-closes", async () => {
    const s = await nativeSessionOnDoomedServer();
    try {
      s.stream.write(send(1n, "m1"));
      s.stream.write(send(2n, "m2"));
      await waitFor(() => s.a.sends.length === 2, "both sends on a, unanswered");
      s.a.breakStreams();
      await waitFor(() => s.frames.filter((f) => f.kind?.$case === "welcome").length === 2, "the second welcome, from b");
      // The client does its part for m1 only, then half-closes: m2 is the gateway's to send again.
      s.stream.write(send(1n, "m1"));
      s.stream.end();
      const { code } = await s.statusWithin(5_000);
      assert.equal(code, grpc.status.OK);
      assert.deepEqual([...s.b.sends].sort(), ["m1", "m2"]);
      assert.deepEqual(
        s.frames.filter((f) => f.kind?.$case === "sendAck").map((f) => f.ref).sort(),
        [1n, 2n],
      );
    } finally {
      await s.close();
    }
  });

  it("sends nothing twice for a client that sends its unanswered send again after the move under a new ref, as one that numbers its frames does", async () => {
    const s = await nativeSessionOnDoomedServer();
    try {
      s.stream.write(send(1n, "m1"));
      await waitFor(() => s.a.sends.length === 1, "the send on a, unanswered");
      s.a.breakStreams();
      await waitFor(() => s.frames.filter((f) => f.kind?.$case === "welcome").length === 2, "the second welcome, from b");
      s.stream.write(send(2n, "m1"));
      await waitFor(() => s.frames.some((f) => f.kind?.$case === "sendAck"), "m1's ack, from b");
      s.stream.end();
      const { code } = await s.statusWithin(5_000);
      assert.equal(code, grpc.status.OK);
      assert.deepEqual(s.b.sends, ["m1"], "sent to b once");
      assert.deepEqual(s.frames.filter((f) => f.kind?.$case === "sendAck").map((f) => f.ref), [2n]);
    } finally {
      await s.close();
    }
  });

  for (const answeredFirst of [false, true]) {
    const name = answeredFirst
      ? "takes the new server's answer to a new send under the same ref (all 0) for that send's, not for the lost one still to send again"
      : "sends again a lost send that a new send under the same ref (all 0) did not ask again";
    it(name, async () => {
      const s = await nativeSessionOnDoomedServer();
      try {
        s.stream.write(send(0n, "m1"));
        await waitFor(() => s.a.sends.length === 1, "the send on a, unanswered");
        s.a.breakStreams();
        await waitFor(() => s.frames.filter((f) => f.kind?.$case === "welcome").length === 2, "the second welcome, from b");
        // Another message, not m1 again: m1 is still the gateway's to send again.
        s.stream.write(send(0n, "m2"));
        // Answered before the client half-closes: the answer is m2's, and m1 is still lost.
        if (answeredFirst) await waitFor(() => s.frames.some((f) => f.kind?.$case === "sendAck"), "m2's ack, from b");
        s.stream.end();
        const { code } = await s.statusWithin(5_000);
        assert.equal(code, grpc.status.OK);
        assert.deepEqual([...s.b.sends].sort(), ["m1", "m2"]);
        assert.equal(s.frames.filter((f) => f.kind?.$case === "sendAck").length, 2);
      } finally {
        await s.close();
      }
    });
  }

  it("sends again more lost asks than a session with no server may queue, once it is on its new server", async () => {
    const s = await nativeSessionOnDoomedServer();
    try {
      for (let i = 1; i <= 100; i++) s.stream.write(send(BigInt(i), `m${i}`));
      s.stream.end();
      await waitFor(() => s.a.sends.length === 100, "every send on a, unanswered");
      s.a.breakStreams();
      const { code } = await s.statusWithin(5_000);
      assert.equal(code, grpc.status.OK);
      assert.equal(s.b.sends.length, 100);
      assert.equal(s.frames.filter((f) => f.kind?.$case === "sendAck").length, 100);
    } finally {
      await s.close();
    }
  });

  it("sends again what it asked of a server that refused the session after more frames than the gateway keeps to hand on", async () => {
    const s = await nativeSessionOnDoomedServer({ refusing: true });
    try {
      // One more than the 64 frames kept for a refusal: none is handed on to b.
      for (let i = 1; i <= 65; i++) s.stream.write(send(BigInt(i), `m${i}`));
      s.stream.end();
      await waitFor(() => s.a.sends.length === 65, "every send on a, unanswered");
      s.a.refuseAll();
      // Neither handed on nor told lost, they held the stream open until the session's silence closed it.
      const { code } = await s.statusWithin(5_000);
      assert.equal(code, grpc.status.OK);
      assert.equal(s.b.sends.length, 65);
      assert.equal(s.frames.filter((f) => f.kind?.$case === "sendAck").length, 65);
    } finally {
      await s.close();
    }
  });

  it("hands what a client still open sent before any welcome on to the next server when its first one breaks before welcoming: it sees one Welcome, no cue to resend", async () => {
    const s = await nativeSessionOnDoomedServer({ refusing: true });
    try {
      s.stream.write(send(1n, "m1"));
      s.stream.write(ConnectRequest.fromPartial({ frame: { ref: 2n, kind: { $case: "heartbeat", value: {} } } }));
      await waitFor(() => s.a.sends.length === 1, "the send on a, which never welcomed");
      s.a.breakStreams();
      // Dropped with the broken stream, it was never answered: the client, open, would wait for good.
      await waitFor(() => s.frames.some((f) => f.kind?.$case === "sendAck"), "m1's ack, from b", 5_000);
      await waitFor(() => s.frames.some((f) => f.kind?.$case === "heartbeatAck"), "the heartbeat's answer, from b", 5_000);
      assert.deepEqual(s.b.sends, ["m1"]);
      assert.deepEqual(s.frames.map((f) => [f.kind?.$case, f.ref]), [["welcome", 0n], ["sendAck", 1n], ["heartbeatAck", 2n]]);
      // Handed on, not also asked again: the client half-closes and its stream ends at once.
      s.stream.end();
      const { code } = await s.statusWithin(5_000);
      assert.equal(code, grpc.status.OK);
      assert.deepEqual(s.b.sends, ["m1"], "sent once to b");
    } finally {
      await s.close();
    }
  });

  it("ends a half-closed stream at once with close 1013 when its lost asks overflow the queue of a session with no server, and lets it go", async () => {
    const s = await nativeSessionOnDoomedServer({ registerB: false });
    try {
      for (let i = 1; i <= 65; i++) s.stream.write(send(BigInt(i), `m${i}`));
      s.stream.end();
      await waitFor(() => s.a.sends.length === 65, "every send on a, unanswered");
      s.a.breakStreams();
      const { code, metadata } = await s.statusWithin(5_000);
      assert.equal(code, grpc.status.UNAVAILABLE);
      assert.deepEqual(metadata.get("chat-close-code"), ["1013"]);
      assert.equal(s.host.sessionCount, 0, "no longer waiting for a server");
    } finally {
      await s.close();
    }
  });

  it("takes no catch-up page the chat server pushed on its own (ref 0) for the answer to a SyncRequest with ref 0 from a client that half-closed", async () => {
    const s = await nativeSessionOnDoomedServer({ registerB: false });
    try {
      s.stream.write(ConnectRequest.fromPartial({ frame: { ref: 0n, kind: { $case: "sync", value: { afterInboxSeq: 0n } } } }));
      s.stream.end();
      await waitFor(() => s.a.syncs.length === 1, "the SyncRequest on a");
      const [sessionId] = s.a.opened;
      const page = (ref: bigint, headInboxSeq: bigint) => {
        const frame = create(ServerFrameSchema, { ref, kind: { case: "syncBatch", value: { headInboxSeq, hasMore: false } } });
        for (const st of s.a.streams) st.write({ sessionId: sessionId!, kind: { $case: "serverFrame", value: Buffer.from(toBinary(ServerFrameSchema, frame)) } });
      };
      // The server's own catch-up, sent before it read the request: it crossed it on the way, ref 0 as pushes are.
      page(0n, 5n);
      await waitFor(() => s.frames.some((f) => f.kind?.$case === "syncBatch"), "the pushed page");
      // Then the answer, under the request's ref as the server was handed it.
      page(s.a.syncs[0]!, 7n);
      const { code } = await s.statusWithin(5_000);
      assert.equal(code, grpc.status.OK);
      assert.deepEqual(
        s.frames.filter((f) => f.kind?.$case === "syncBatch").map((f) => [f.ref, f.kind?.$case === "syncBatch" && f.kind.value.headInboxSeq]),
        [[0n, 5n], [0n, 7n]],
        "the answer, under the client's ref, before the stream ends",
      );
    } finally {
      await s.close();
    }
  });

  it("asks again no SyncRequest the client itself asked again after the move, under its ref, and ends once it half-closes", async () => {
    const s = await nativeSessionOnDoomedServer();
    try {
      const sync = ConnectRequest.fromPartial({ frame: { ref: 5n, kind: { $case: "sync", value: { afterInboxSeq: 0n } } } });
      s.stream.write(sync);
      await waitFor(() => s.a.syncs.length === 1, "the SyncRequest on a, unanswered");
      s.a.breakStreams();
      await waitFor(() => s.frames.filter((f) => f.kind?.$case === "welcome").length === 2, "the second welcome, from b");
      // The client does its part, as the second Welcome asks: the same request under the same ref.
      s.stream.write(sync);
      await waitFor(() => s.b.syncs.length === 1, "the SyncRequest on b");
      const [sessionId] = s.b.opened;
      const last = create(ServerFrameSchema, { ref: s.b.syncs[0]!, kind: { case: "syncBatch", value: { headInboxSeq: 3n, hasMore: false } } });
      for (const st of s.b.streams) st.write({ sessionId: sessionId!, kind: { $case: "serverFrame", value: Buffer.from(toBinary(ServerFrameSchema, last)) } });
      await waitFor(() => s.frames.some((f) => f.kind?.$case === "syncBatch"), "the answer, from b");
      s.stream.end();
      // Asked again by the gateway too, the sync was answered twice, and held the stream open until it was.
      const { code } = await s.statusWithin(5_000);
      assert.equal(code, grpc.status.OK);
      assert.equal(s.b.syncs.length, 1, "asked of b once");
      assert.deepEqual(s.frames.filter((f) => f.kind?.$case === "syncBatch").map((f) => f.ref), [5n]);
    } finally {
      await s.close();
    }
  });

  it("keeps no lost heartbeat or SyncRequest the client asked again after the move under a new ref: none is asked again at its half-close, so none piles up over moves, and each lost ref is answered", async () => {
    const s = await nativeSessionOnDoomedServer();
    const heartbeat = (ref: bigint) => ConnectRequest.fromPartial({ frame: { ref, kind: { $case: "heartbeat", value: {} } } });
    const sync = (ref: bigint) => ConnectRequest.fromPartial({ frame: { ref, kind: { $case: "sync", value: { afterInboxSeq: 0n } } } });
    try {
      s.stream.write(heartbeat(1n));
      s.stream.write(sync(2n));
      await waitFor(() => s.a.heartbeats.length === 1 && s.a.syncs.length === 1, "both on a, unanswered");
      s.a.breakStreams();
      await waitFor(() => s.frames.filter((f) => f.kind?.$case === "welcome").length === 2, "the second welcome, from b");
      // The client asks both again, as one that numbers its frames does: under new refs.
      s.stream.write(heartbeat(3n));
      s.stream.write(sync(4n));
      await waitFor(() => s.b.heartbeats.length === 1 && s.b.syncs.length === 1, "both on b");
      const [sessionId] = s.b.opened;
      const last = create(ServerFrameSchema, { ref: s.b.syncs[0]!, kind: { case: "syncBatch", value: { headInboxSeq: 3n, hasMore: false } } });
      for (const st of s.b.streams) st.write({ sessionId: sessionId!, kind: { $case: "serverFrame", value: Buffer.from(toBinary(ServerFrameSchema, last)) } });
      await waitFor(() => s.frames.some((f) => f.kind?.$case === "syncBatch") && s.frames.some((f) => f.kind?.$case === "heartbeatAck"), "both answers, from b");
      s.stream.end();
      // Kept, the lost ones were asked again here, and the stream waited for the sync's second answer.
      const { code } = await s.statusWithin(5_000);
      assert.equal(code, grpc.status.OK);
      assert.deepEqual([s.b.heartbeats.length, s.b.syncs.length], [1, 1], "each asked of b once");
      assert.deepEqual(s.frames.filter((f) => f.kind?.$case === "heartbeatAck" || f.kind?.$case === "syncBatch").map((f) => [f.kind?.$case, f.ref]), [["heartbeatAck", 3n], ["syncBatch", 4n]]);
      // The lost ones are answered all the same, each under its own ref, naming why: a client waits on them.
      const told = s.frames.flatMap((f) => (f.kind?.$case === "error" ? [[f.ref, f.kind.value.refusedKind, f.kind.value.code] as const] : []));
      assert.deepEqual(told, [[1n, ClientFrameSchema.field.heartbeat!.number, ErrorCode.ERROR_CODE_SUPERSEDED], [2n, ClientFrameSchema.field.sync!.number, ErrorCode.ERROR_CODE_SUPERSEDED]]);
    } finally {
      await s.close();
    }
  });

  it("ends the stream with close 1011 when its chat server sends a frame that is no ServerFrame, and the gateway lives on", async () => {
    const s = await nativeSessionOnDoomedServer();
    try {
      const [sessionId] = s.a.opened;
      // A field 1 (ref) of wire type 7, which no protobuf decoder takes.
      for (const st of s.a.streams) st.write({ sessionId: sessionId!, kind: { $case: "serverFrame", value: Buffer.from([0x0f, 0x01]) } });
      const { code, metadata } = await s.statusWithin(5_000);
      assert.equal(code, grpc.status.UNAVAILABLE);
      assert.deepEqual(metadata.get("chat-close-code"), ["1011"]);
      assert.equal(s.host.sessionCount, 0);
    } finally {
      await s.close();
    }
  });
});
