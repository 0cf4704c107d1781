import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { credentials, Server, ServerCredentials } from "@grpc/grpc-js";
import { ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import { ChatServerServiceClient, ChatServerServiceService, type SessionResponse } from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import { ChatServer } from "../chatserver/server.js";
import type { Inbox } from "../messages/inbox.js";
import type { InboxEntry } from "../model/types.js";
import { waitFor } from "../../test/support/wait.js";
import { chatServerService } from "./chat-server-grpc.js";

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

describe("chat server's gateway stream (ChatServerService/Session)", () => {
  it("resumes a catch-up that stalled on the stream's backlog once the backlog is written, with no later push to wake it", async () => {
    // Pages of 200 entries of 2 KB: each page alone is past the high-water mark, in one frame (no 'drain' from grpc-js).
    const chat = new ChatServer({ serverId: "t", inbox: inboxOf(500, 2_000), channels: {} as never, submitter: {} as never, limits: { highWaterBytes: 64 * 1024 } });
    const server = new Server();
    server.addService(ChatServerServiceService, chatServerService(chat));
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const client = new ChatServerServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const stream = client.session();
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
      stream.cancel();
      client.close();
      chat.drain();
      server.forceShutdown();
    }
  });
});
