import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { ServerFrameSchema } from "../../gen/es/chat/v1/session_pb.js";
import { MessageSchema, type Message } from "../../gen/es/chat/v1/types_pb.js";
import type { StoredMessage } from "../model/types.js";
import { encodeDeliveryFrame, encodeMessage, encodeSendAckFrame, encodeStoredMessage } from "./message-bytes.js";
import { messageToProto } from "./messages.js";
import { awkwardMessage } from "./testdata.js";
import { seededRandom } from "../../test/support/random.js";

const U64_MAX = 2n ** 64n - 1n;
const plain = (b: Uint8Array) => new Uint8Array(b);

const EDGE_U64 = [0n, 1n, 127n, 128n, 16_383n, 16_384n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 35n, 2n ** 53n + 1n, 2n ** 56n, 2n ** 63n, U64_MAX];
const PIECES = ["", "a", "é", "€", "👋", "\ud800", "\udc00x", "日本語", "\u0000", "x".repeat(200), "é".repeat(70_000)];

function randomU64(r: () => number): bigint {
  if (r() < 0.5) return EDGE_U64[Math.floor(r() * EDGE_U64.length)]!;
  return BigInt.asUintN(64, (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32))) >> BigInt(Math.floor(r() * 64));
}

function randomText(r: () => number): string {
  let s = "";
  const n = Math.floor(r() * 4);
  for (let i = 0; i < n; i++) s += PIECES[Math.floor(r() * (r() < 0.98 ? PIECES.length - 1 : PIECES.length))]!;
  return s;
}

function randomMessage(r: () => number): Message {
  const withTime = r() < 0.9;
  return create(MessageSchema, {
    messageId: randomU64(r),
    channelId: randomU64(r),
    seq: randomU64(r),
    senderUserId: randomU64(r),
    senderDeviceId: randomU64(r),
    clientMsgId: randomText(r),
    text: randomText(r),
    sentAt: withTime ? { seconds: r() < 0.2 ? 0n : BigInt(Math.floor(r() * 2 ** 40)), nanos: r() < 0.3 ? 0 : Math.floor(r() * 1e9) } : undefined,
    // A few edited, deleted or change entries, which go to the generic encoder.
    editedAt: r() < 0.05 ? { seconds: BigInt(Math.floor(r() * 2 ** 40)), nanos: 0 } : undefined,
    deleted: r() < 0.05,
    targetSeq: r() < 0.05 ? randomU64(r) : 0n,
    replyToSeq: r() < 0.3 ? randomU64(r) : 0n,
    reaction: r() < 0.03,
    reactions: r() < 0.05 ? [{ userId: randomU64(r), emoji: "👍" }, { userId: randomU64(r), emoji: randomText(r) }] : [],
  });
}

const outcome = (f: () => Uint8Array): Uint8Array | string => {
  try {
    return f();
  } catch (err) {
    return (err as Error).message;
  }
};

function randomStored(r: () => number): StoredMessage {
  const m: StoredMessage = {
    messageId: randomU64(r) >> 1n,
    channelId: randomU64(r) >> 1n,
    seq: randomU64(r) >> 1n,
    senderUserId: randomU64(r) >> 1n,
    senderDeviceId: randomU64(r) >> 1n,
    clientMsgId: randomText(r),
    text: randomText(r),
    // Milliseconds from 0 up, a few before 1970 or with a fraction, which go to the generic encoder.
    sentAtMs: r() < 0.1 ? 0 : r() < 0.05 ? -Math.floor(r() * 1e12) : r() < 0.05 ? r() * 1e12 : Math.floor(r() * 2 ** 42),
  };
  if (r() < 0.3) m.replyToSeq = r() < 0.1 ? 0n : randomU64(r) >> 1n;
  // A few edited, deleted, change and note entries, also the generic encoder's.
  if (r() < 0.05) m.editedAtMs = Math.floor(r() * 2 ** 42);
  if (r() < 0.05) m.deleted = r() < 0.5;
  if (r() < 0.05) m.targetSeq = r() < 0.2 ? 0n : randomU64(r) >> 1n;
  if (r() < 0.05) m.reaction = r() < 0.5;
  if (r() < 0.05) m.reactions = r() < 0.2 ? [] : [{ userId: randomU64(r) >> 1n, emoji: "👍" }];
  if (r() < 0.03) m.note = { kind: "members_added", userIds: [randomU64(r) >> 1n] };
  return m;
}

describe("message bytes (the delivery path's encoder)", () => {
  it("writes a stored message as toBinary writes messageToProto's Message, for 2,000 random ones", () => {
    for (let seed = 1; seed <= 2_000; seed++) {
      const m = randomStored(seededRandom(seed));
      // A time with a fraction of a millisecond is refused by both, alike.
      assert.deepEqual(outcome(() => plain(encodeStoredMessage(m))), outcome(() => toBinary(MessageSchema, messageToProto(m))), `stored message of seed ${seed}`);
    }
    assert.deepEqual(plain(encodeStoredMessage(awkwardMessage)), toBinary(MessageSchema, messageToProto(awkwardMessage)));
  });

  it("writes what toBinary writes, for 2,000 random messages and their delivery frames", () => {
    for (let seed = 1; seed <= 2_000; seed++) {
      const r = seededRandom(seed);
      const m = randomMessage(r);
      const bytes = encodeMessage(m);
      assert.deepEqual(plain(bytes), toBinary(MessageSchema, m), `message of seed ${seed}`);
      const inboxSeq = randomU64(r);
      const frame = create(ServerFrameSchema, { kind: { case: "message", value: { entry: { inboxSeq, message: m } } } });
      assert.deepEqual(plain(encodeDeliveryFrame(inboxSeq, bytes)!), toBinary(ServerFrameSchema, frame), `frame of seed ${seed}`);
    }
  });

  it("writes what toBinary writes for the awkward message, an empty one and a time of zero", () => {
    const cases = [messageToProto(awkwardMessage), create(MessageSchema), create(MessageSchema, { sentAt: { seconds: 0n, nanos: 0 } })];
    for (const m of cases) assert.deepEqual(plain(encodeMessage(m)), toBinary(MessageSchema, m));
  });

  it("leaves to toBinary what it does not expect: unknown fields, times before 1970, invalid ids", () => {
    const cases = [
      create(MessageSchema, { text: "x", $unknown: [{ no: 99, wireType: 0, data: new Uint8Array([1]) }] }),
      create(MessageSchema, { sentAt: { seconds: -5n, nanos: 0 } }),
      create(MessageSchema, { sentAt: { seconds: 1n, nanos: -1 } }),
    ];
    for (const m of cases) assert.deepEqual(plain(encodeMessage(m)), toBinary(MessageSchema, m));
    assert.throws(() => encodeMessage(create(MessageSchema, { messageId: -1n })), /invalid uint64/, "refused as toBinary refuses it");
    assert.equal(encodeDeliveryFrame(-1n, new Uint8Array()), undefined, "a negative inbox seq is toBinary's to write");
  });

  it("writes a SendAck frame as toBinary writes it, for 2,000 random ones", () => {
    for (let seed = 1; seed <= 2_000; seed++) {
      const r = seededRandom(seed);
      const ack = { ref: randomU64(r), clientMsgId: randomText(r), messageId: randomU64(r), channelId: randomU64(r), duplicate: r() < 0.5 };
      const frame = create(ServerFrameSchema, { ref: ack.ref, kind: { case: "sendAck", value: ack } });
      const bytes = encodeSendAckFrame(ack.ref, ack.clientMsgId, ack.messageId, ack.channelId, ack.duplicate);
      assert.deepEqual(plain(bytes!), toBinary(ServerFrameSchema, frame), `ack of seed ${seed}`);
    }
    assert.equal(encodeSendAckFrame(-1n, "c", 1n, 1n, false), undefined, "a number out of range is toBinary's to refuse");
    assert.equal(encodeSendAckFrame(1n, "c", U64_MAX + 1n, 1n, false), undefined);
  });
});
