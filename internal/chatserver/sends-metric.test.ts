import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Registry } from "prom-client";
import { ClientFrameSchema, ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { stubInbox } from "../../test/support/inbox.js";
import { metricIn } from "../../test/support/metrics.js";
import { waitFor } from "../../test/support/wait.js";
import { chatServerMetrics } from "./metrics.js";
import { ChatServer } from "./server.js";
import type { SessionSink } from "./port.js";

const emptyInbox = stubInbox();

describe("chat server metrics: sends counted once", () => {
  it("counts a resend of a send already accepted (duplicate, as after a move or a lost ack) in neither chat_messages_in_total nor chat_sends_total", async () => {
    const registry = new Registry();
    const seen = new Map<string, bigint>();
    // As QueueSubmitter and DirectSubmitter answer: the same client_msg_id again is the message stored before.
    const submitter = {
      submit: async (_who: unknown, m: { clientMsgId: string }) => {
        const known = seen.get(m.clientMsgId);
        if (known !== undefined) return { messageId: known, duplicate: true };
        seen.set(m.clientMsgId, BigInt(seen.size + 1));
        return { messageId: BigInt(seen.size), duplicate: false };
      },
    };
    const server = new ChatServer({ serverId: "t", inbox: emptyInbox, channels: {} as never, submitter: submitter as never, metrics: chatServerMetrics(registry) });
    const frames: ServerFrame[] = [];
    const sink: SessionSink = { send: (f) => void frames.push(fromBinary(ServerFrameSchema, f as Uint8Array)), bufferedBytes: () => 0, close: () => {} };
    const handle = server.open({ userId: 1n, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, sink);
    await waitFor(() => frames.some((f) => f.kind.case === "welcome"), "the welcome");
    const send = async (ref: bigint, clientMsgId: string, change: { editSeq?: bigint } = {}) => {
      handle.receive(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref, kind: { case: "send", value: { clientMsgId, channelId: 7n, text: "hi", ...change } } })));
      const ack = await waitFor(() => frames.find((f) => f.ref === ref && f.kind.case === "sendAck"), `the ack of ${ref}`);
      return ack.kind.case === "sendAck" && ack.kind.value.duplicate;
    };
    assert.equal(await send(1n, "a"), false);
    assert.equal(await send(2n, "b", { editSeq: 1n }), false);
    // The device (or its gateway, for a native stream) sends both again: each is acked as a duplicate.
    assert.equal(await send(3n, "a"), true);
    assert.equal(await send(4n, "a"), true);
    assert.equal(await send(5n, "b", { editSeq: 1n }), true);
    const text = await registry.metrics();
    assert.equal(metricIn(text, "chat_messages_in_total"), 2, "two sends accepted, however often they came");
    assert.equal(metricIn(text, "chat_sends_total", 'kind="message"'), 1);
    assert.equal(metricIn(text, "chat_sends_total", 'kind="edit"'), 1);
    server.drain();
  });
});
