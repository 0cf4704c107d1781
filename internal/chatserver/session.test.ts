import assert from "node:assert/strict";
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { ClientFrameSchema, ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import type { Inbox } from "../messages/inbox.js";
import type { Id, InboxEntry } from "../model/types.js";
import { ChatServer } from "./server.js";
import type { SessionSink } from "./port.js";

/** An inbox that keeps only entries `kept` of a longer sequence, as one past its retention window does. */
function inboxKeeping(kept: bigint[], cursor = 0n): Inbox {
  const entry = (inboxSeq: bigint): InboxEntry => ({
    inboxSeq,
    message: { messageId: 1000n + inboxSeq, channelId: 7n, seq: inboxSeq, senderUserId: 2n, senderDeviceId: 1n, clientMsgId: `m${inboxSeq}`, text: "hi", sentAtMs: 0 },
  });
  return {
    append: () => Promise.reject(new Error("not in this test")),
    readAfter: async (_u: Id, after: bigint, limit: number) => kept.filter((s) => s > after).slice(0, limit).map(entry),
    head: async () => kept[kept.length - 1] ?? 0n,
    getCursor: async () => cursor,
    advanceCursor: async () => {},
  };
}

/** Opens one session on a ChatServer over `inbox` and collects the frames it sends. */
function openSession(inbox: Inbox) {
  const frames: ServerFrame[] = [];
  const waiters: (() => void)[] = [];
  const server = new ChatServer({ serverId: "t", inbox, channels: {} as never, submitter: {} as never });
  const sink: SessionSink = {
    send: (f) => {
      frames.push(fromBinary(ServerFrameSchema, f as Uint8Array));
      for (const w of waiters.splice(0)) w();
    },
    bufferedBytes: () => 0,
    close: () => undefined,
  };
  const handle = server.open({ userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, sink);
  const next = async (kind: ServerFrame["kind"]["case"]): Promise<ServerFrame> => {
    for (;;) {
      const i = frames.findIndex((f) => f.kind.case === kind);
      if (i >= 0) return frames.splice(i, 1)[0]!;
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  return { server, handle, next };
}

describe("session sync", () => {
  it("tells the device which entries after its cursor the inbox no longer keeps", async () => {
    const { server, handle, next } = openSession(inboxKeeping([4n, 5n]));
    await next("welcome");
    const batch = await next("syncBatch");
    assert.equal(batch.kind.case, "syncBatch");
    if (batch.kind.case !== "syncBatch") return;
    assert.deepStrictEqual(batch.kind.value.entries.map((e) => e.inboxSeq), [4n, 5n]);
    assert.equal(batch.kind.value.expiredThrough, 3n);
    // A sync from a cursor inside what is kept reports nothing expired.
    handle.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 9n, kind: { case: "sync", value: { afterInboxSeq: 4n } } })));
    const again = await next("syncBatch");
    if (again.kind.case !== "syncBatch") return assert.fail("no sync batch");
    assert.deepStrictEqual(again.kind.value.entries.map((e) => e.inboxSeq), [5n]);
    assert.equal(again.kind.value.expiredThrough, 0n);
    server.drain();
  });

  it("reports nothing expired when the inbox has every entry after the cursor", async () => {
    const { server, next } = openSession(inboxKeeping([1n, 2n, 3n], 1n));
    await next("welcome");
    const batch = await next("syncBatch");
    if (batch.kind.case !== "syncBatch") return assert.fail("no sync batch");
    assert.deepStrictEqual(batch.kind.value.entries.map((e) => e.inboxSeq), [2n, 3n]);
    assert.equal(batch.kind.value.expiredThrough, 0n);
    server.drain();
  });
});
