import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema, type ClientFrame } from "../../gen/es/chat/v1/session_pb.js";
import { seededRandom } from "../../test/support/random.js";
import { readClientFrame } from "./client-frame-read.js";

const EDGE_U64 = [0n, 1n, 127n, 128n, 2n ** 28n - 1n, 2n ** 28n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 62n + 12345n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n];
const PIECES = ["", "a", "é", "€", "👋", "\ufeff", "\u0000", "x".repeat(200), "c-0a1b"];

function randomU64(r: () => number): bigint {
  if (r() < 0.5) return EDGE_U64[Math.floor(r() * EDGE_U64.length)]!;
  return BigInt.asUintN(64, (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32))) >> BigInt(Math.floor(r() * 64));
}
const maybe = (r: () => number) => (r() < 0.5 ? 0n : randomU64(r));
const randomText = (r: () => number) => Array.from({ length: Math.floor(r() * 4) }, () => PIECES[Math.floor(r() * PIECES.length)]).join("");

function randomFrame(r: () => number): ClientFrame {
  const pick = r();
  const kind: NonNullable<Parameters<typeof create<typeof ClientFrameSchema>>[1]>["kind"] =
    pick < 0.5
      ? { case: "send", value: { clientMsgId: randomText(r), channelId: maybe(r), text: randomText(r), editSeq: maybe(r), deleteSeq: maybe(r), replyToSeq: maybe(r), reactSeq: maybe(r) } }
      : pick < 0.75
        ? { case: "deliveryAck", value: { inboxSeq: maybe(r) } }
        : pick < 0.85
          ? { case: "heartbeat", value: {} }
          : pick < 0.95
            ? { case: "typing", value: { channelId: randomU64(r) } }
            : { case: undefined };
  return create(ClientFrameSchema, { ref: maybe(r), kind });
}

/** The generic decoder's answer, or its refusal. */
const generic = (bytes: Uint8Array): ClientFrame | string => {
  try {
    return fromBinary(ClientFrameSchema, bytes);
  } catch (err) {
    return (err as Error).message;
  }
};

describe("readClientFrame (the hand-written reader of sends, acks and heartbeats)", () => {
  it("reads what fromBinary reads, for 3,000 random frames, and leaves it the other kinds", () => {
    let read = 0;
    for (let seed = 1; seed <= 3_000; seed++) {
      const frame = randomFrame(seededRandom(seed));
      const bytes = Buffer.from(toBinary(ClientFrameSchema, frame));
      const fast = readClientFrame(bytes);
      const mine = ["send", "deliveryAck", "heartbeat"].includes(frame.kind.case ?? "");
      // A uint64 of 2^63 and up takes ten bytes: the generic decoder's.
      if (fast === undefined && mine && toBinary(ClientFrameSchema, frame).some((_, i, b) => i + 9 < b.length && b.slice(i, i + 9).every((x) => x >= 0x80))) continue;
      assert.equal(fast !== undefined, mine, `seed ${seed}: ${frame.kind.case}`);
      if (fast !== undefined) {
        read++;
        assert.deepStrictEqual(fast, fromBinary(ClientFrameSchema, bytes), `frame of seed ${seed}`);
      }
    }
    assert.ok(read > 1_500, `most were read by hand (${read})`);
  });

  it("never reads bytes the generic decoder reads otherwise or refuses: 20,000 frames cut, joined and with bytes changed", () => {
    for (let seed = 1; seed <= 20_000; seed++) {
      const r = seededRandom(seed);
      let bytes = Buffer.from(toBinary(ClientFrameSchema, randomFrame(r)));
      const how = r();
      if (how < 0.3) bytes = bytes.subarray(0, Math.floor(r() * bytes.length));
      else if (how < 0.5) bytes = Buffer.concat([bytes, Buffer.from(toBinary(ClientFrameSchema, randomFrame(r)))]);
      else for (let i = 0; i < 1 + r() * 3; i++) if (bytes.length > 0) bytes[Math.floor(r() * bytes.length)] = Math.floor(r() * 256);
      const fast = readClientFrame(bytes);
      if (fast !== undefined) assert.deepStrictEqual(fast, generic(bytes), `bytes of seed ${seed}: ${bytes.toString("hex")}`);
    }
  });

  it("leaves text that is not UTF-8, a field twice, an unknown field and a plain Uint8Array to the generic decoder", () => {
    const send = (text: number[]) => Buffer.from([0x12, text.length + 2, 0x1a, text.length, ...text]);
    assert.equal(readClientFrame(send([0xc3, 0x28])), undefined);
    assert.equal(readClientFrame(send([0xed, 0xa0, 0x80])), undefined, "a lone surrogate");
    assert.deepStrictEqual(readClientFrame(send([0xc3, 0xa9])), fromBinary(ClientFrameSchema, send([0xc3, 0xa9])));
    assert.equal(readClientFrame(Buffer.from([0x08, 0x01, 0x08, 0x02, 0x32, 0x00])), undefined, "the ref twice");
    assert.equal(readClientFrame(Buffer.from([0x32, 0x00, 0x32, 0x00])), undefined, "the kind twice (merged by a decoder)");
    // A SendMessage's field twice, the first one zero (written, though an encoder leaves zeros out): the decoder keeps the last.
    const sendOf = (...fields: number[]) => Buffer.from([0x12, fields.length, ...fields]);
    for (const tag of [0x10, 0x20, 0x28, 0x30, 0x38]) assert.equal(readClientFrame(sendOf(tag, 0x00, tag, 0x05)), undefined, `tag ${tag} twice`);
    assert.equal(readClientFrame(sendOf(0x1a, 0x00, 0x1a, 0x01, 0x61)), undefined, "the text twice");
    assert.equal(readClientFrame(sendOf(0x0a, 0x00, 0x0a, 0x01, 0x61)), undefined, "the client_msg_id twice");
    assert.deepStrictEqual(readClientFrame(sendOf(0x38, 0x03, 0x30, 0x02, 0x28, 0x01)), fromBinary(ClientFrameSchema, sendOf(0x38, 0x03, 0x30, 0x02, 0x28, 0x01)), "fields out of order");
    assert.equal(readClientFrame(Buffer.from([0x32, 0x00, 0x48, 0x01])), undefined, "field 9");
    assert.equal(readClientFrame(Buffer.from([0x22, 0x02, 0x10, 0x01])), undefined, "an unknown field of DeliveryAck");
    assert.equal(readClientFrame(Buffer.from([0x12, 0x03, 0x12, 0x01, 0x61])), undefined, "channel_id with the wire type of a string");
    assert.equal(readClientFrame(new Uint8Array([0x32, 0x00])), undefined);
    assert.equal(readClientFrame(Buffer.alloc(0)), undefined, "no kind");
  });
});
