import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import type { Id } from "../model/types.js";
import { deliverLive } from "../pipeline/live-delivery.js";
import { messageToProto } from "../wire/messages.js";
import { awkwardMessage } from "../wire/testdata.js";
import { decodeClientFrame, EncodedFrame, encodeServerFrame, MAX_DECODE_ERROR_BYTES } from "./codec.js";

/** The same bytes, whether a Buffer (the fast encoders) or a plain Uint8Array (toBinary). */
const bytesOf = (b: Uint8Array | string) => (typeof b === "string" ? b : new Uint8Array(b));

describe("session codec", () => {
  const message = awkwardMessage;

  /** The frames deliverLive hands to the sessions for one message and these members. */
  async function deliveryFrames(members: { userId: Id; inboxSeq: bigint }[]): Promise<ServerFrame[]> {
    const frames: ServerFrame[] = [];
    await deliverLive(
      {
        sessions: {
          pushToUsers: async (_users, frame) => void frames.push(frame),
          closeDevice: async () => undefined,
          onlineUsers: async (users) => new Set(users),
        },
      },
      members.map(({ userId, inboxSeq }) => ({ userId, entry: { inboxSeq, message } })),
    );
    return frames;
  }

  it("encodes a group message's deliveries once per message, byte for byte what toBinary writes for each", async () => {
    const seqs = [0n, 1n, 300n, 2n ** 63n + 5n, 18_446_744_073_709_551_615n];
    const frames = await deliveryFrames(seqs.map((inboxSeq, i) => ({ userId: BigInt(i + 1), inboxSeq })));
    assert.equal(frames.length, seqs.length);
    const shared = frames.map((f) => (f.kind.case === "message" ? f.kind.value.entry?.message : undefined));
    assert.ok(shared[0] && shared.every((m) => m === shared[0]), "the members' frames share one Message");
    for (const f of frames) assert.deepEqual(bytesOf(encodeServerFrame(f, "proto")), toBinary(ServerFrameSchema, f));
  });

  it("gives every entry its own message when the entries of several messages interleave", async () => {
    const other = { ...message, messageId: message.messageId + 1n, text: "another" };
    const frames: ServerFrame[] = [];
    const entries = [message, other, message].map((m, i) => ({ userId: BigInt(i + 1), entry: { inboxSeq: BigInt(i + 1), message: m } }));
    await deliverLive(
      {
        sessions: {
          pushToUsers: async (_users, frame) => void frames.push(frame),
          closeDevice: async () => undefined,
          onlineUsers: async (users) => new Set(users),
        },
      },
      entries,
    );
    const ids = frames.map((f) => (f.kind.case === "message" ? f.kind.value.entry?.message?.messageId : undefined));
    assert.deepEqual(ids, [message.messageId, other.messageId, message.messageId]);
  });

  it("encodes a frame once per encoding however many of a user's sessions take it", () => {
    const frame = create(ServerFrameSchema, { kind: { case: "message", value: { entry: { inboxSeq: 4n, message: messageToProto(message) } } } });
    const encoded = new EncodedFrame(frame);
    const proto = encoded.bytes("proto");
    assert.equal(encoded.bytes("proto"), proto, "the same bytes, not a second encoding");
    assert.deepEqual(bytesOf(proto), toBinary(ServerFrameSchema, frame));
    const json = encoded.bytes("json");
    assert.equal(typeof json, "string");
    assert.equal(encoded.bytes("json"), json);
  });

  it("encodes other frames, and deliveries with a ref, unknown fields or no message, as toBinary does", () => {
    const entry = { inboxSeq: 3n, message: messageToProto(message) };
    const frames = [
      create(ServerFrameSchema, { ref: 9n, kind: { case: "message", value: { entry } } }),
      create(ServerFrameSchema, { kind: { case: "message", value: { entry: { inboxSeq: 3n } } } }),
      create(ServerFrameSchema, { kind: { case: "message", value: {} } }),
      create(ServerFrameSchema, { kind: { case: "receipt", value: { channelId: 1n, userId: 2n, seq: 3n } } }),
      create(ServerFrameSchema, { kind: { case: "message", value: { entry, $unknown: [{ no: 99, wireType: 0, data: new Uint8Array([1]) }] } } }),
    ];
    for (const f of frames) assert.deepEqual(bytesOf(encodeServerFrame(f, "proto")), toBinary(ServerFrameSchema, f));
    assert.equal(typeof encodeServerFrame(frames[0]!, "json"), "string");
  });

  it("cuts a decoder's complaint quoting the frame to MAX_DECODE_ERROR_BYTES: a JSON key of 500 KB went back whole", () => {
    const key = "k".repeat(500_000);
    assert.throws(
      () => decodeClientFrame(`{"ref":"1","heartbeat":{},"${key}":1}`, "json"),
      (err: Error) => err.message.startsWith("malformed ClientFrame: ") && err.message.endsWith("kkk...") && Buffer.byteLength(err.message) <= MAX_DECODE_ERROR_BYTES,
    );
  });
});
