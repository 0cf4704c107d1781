import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import WebSocket from "ws";
import { ClientFrameSchema, ServerFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import { addDevice, signUp, type TestUser } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { envelope, rawGrpcCall, serverFramesOf, varint } from "../support/grpc-wire.js";
import { scrapeMetric } from "../support/metrics.js";
import { TestDevice } from "../support/device.js";
import { startEdge, useDeployment } from "../support/processes.js";
import { waitFor, waitOut } from "../support/wait.js";

/**
 * The realtime session's answer to each class of bad input, case by case (the
 * seeded fuzz of chatd-wire-fuzz.test.ts checks only that answers are clear):
 * the code a client is told, and that the session, the server and a
 * well-behaved pair of other sessions all carry on after it.
 */

const MAX_FRAME_BYTES = 512 * 1024;
const MAX_ID = 2n ** 63n - 1n;

type Answer = { frame?: ServerFrame; close?: { code: number; reason: string } };

/** The first frame after `from` that answers `ref` (an ack, an error, a sync's last page, a heartbeat's or a token's answer), or the close. */
async function answerOf(d: TestDevice, ref: bigint, from = 0, timeoutMs = 15_000): Promise<Answer> {
  const frame = await waitFor(
    () =>
      d.frames.slice(from).find((f) => {
        if (f.ref !== ref) return false;
        const k = f.kind;
        return k.case === "sendAck" || k.case === "error" || k.case === "heartbeatAck" || k.case === "reauthenticated" || (k.case === "syncBatch" && !k.value.hasMore);
      }) ?? (d.closeCode !== undefined ? "closed" : undefined),
    `the answer to ref ${ref}`,
    timeoutMs,
  );
  if (frame === "closed") return { close: { code: d.closeCode!, reason: d.closeReason ?? "" } };
  return { frame };
}

function assertError(answer: Answer | ServerFrame, code: ErrorCode, message: RegExp, what: string): void {
  const a: Answer = "kind" in answer ? { frame: answer } : answer;
  assert.equal(a.close, undefined, `${what}: closed ${a.close?.code} (${a.close?.reason})`);
  const k = a.frame!.kind;
  assert.equal(k.case, "error", `${what}: answered ${k.case}, not refused`);
  assert.equal(k.case === "error" && ErrorCode[k.value.code], ErrorCode[code], `${what}: ${k.case === "error" ? k.value.message : ""}`);
  assert.match(k.case === "error" ? k.value.message : "", message, what);
}

/** A ref of a frame sent raw (hand-written JSON or bytes), beyond the ones TestDevice numbers from 1. */
let rawRef = 1_000_000n;

describe("session bad input: each class of bad frame is refused clearly, and the server and other sessions carry on", function () {
  this.timeout(180_000);
  const suite = useChatd();
  let alice: TestUser;
  let bob: TestUser;
  let group: bigint;
  let json: TestDevice;
  let proto: TestDevice;
  let bobDevice: TestDevice;
  // The bystanders: carol sends to dave after every case.
  let carol: TestDevice;
  let dave: TestDevice;
  let calm: bigint;
  let calmSent = 0;

  before(async () => {
    const { httpUrl, wsUrl } = suite.chatd;
    alice = await signUp(httpUrl, "bad");
    bob = await signUp(httpUrl, "bad");
    const c = await signUp(httpUrl, "calm");
    const d = await signUp(httpUrl, "calm");
    group = (await alice.api.channels.createGroup({ title: "bad", memberUserIds: [bob.userId] })).channel!.channelId;
    calm = (await c.api.channels.createGroup({ title: "calm", memberUserIds: [d.userId] })).channel!.channelId;
    json = await new TestDevice(wsUrl, alice.devices[0]!.token, { json: true }).connect();
    proto = await new TestDevice(wsUrl, alice.devices[0]!.token).connect();
    bobDevice = await new TestDevice(wsUrl, bob.devices[0]!.token).connect();
    carol = await new TestDevice(wsUrl, c.devices[0]!.token).connect();
    dave = await new TestDevice(wsUrl, d.devices[0]!.token).connect();
    suite.devices.push(json, proto, bobDevice, carol, dave);
  });

  /** The bystanders still chat, and the sessions under test are still open and answer. */
  afterEach(async function () {
    if (this.currentTest?.state !== "passed") return;
    const text = `calm ${calmSent++}`;
    const reply = await carol.send(calm, text);
    assert.equal(reply.kind.case, "sendAck", "a bystander's send is acked");
    await waitFor(() => dave.messagesIn(calm).some((m) => m.text === text), "the bystander's message to arrive");
    for (const d of [json, proto]) {
      if (d.closeCode !== undefined) continue;
      let a: Answer;
      for (;;) {
        a = await answerOf(d, d.sendFrame({ kind: { case: "heartbeat", value: {} } }));
        // Heartbeats have an allowance of their own (one a second, bursts of five): waited out as told.
        if (a.frame?.kind.case !== "error" || a.frame.kind.value.code !== ErrorCode.RATE_LIMITED) break;
        await waitOut((a.frame!.kind.value as { retryAfterMs: number }).retryAfterMs);
      }
      assert.equal(a.frame?.kind.case, "heartbeatAck", `the session under test still answers (closed ${a.close?.code})`);
    }
  });

  /** Sends a JSON text on alice's chat.v1.json session under a fresh ref; resolves with its answer. */
  async function jsonFrame(body: (ref: bigint) => string): Promise<Answer> {
    const ref = rawRef++;
    const from = json.frames.length;
    json.sendRaw(body(ref));
    // A frame refused unread is answered under ref 0.
    const unread = () => json.frames.slice(from).find((f) => f.ref === 0n && f.kind.case === "error");
    await waitFor(() => unread() ?? json.frames.slice(from).some((f) => f.ref === ref) ?? json.closeCode, `the answer to ref ${ref}`);
    const refused = unread();
    return refused ? { frame: refused } : answerOf(json, ref, from);
  }

  /** Sends something no session can read; resolves with the refusal (ref 0) it gets. */
  async function unreadable(d: TestDevice, data: Uint8Array | string): Promise<Answer> {
    const from = d.frames.length;
    d.sendRaw(data);
    return answerOf(d, 0n, from);
  }

  const send = (ref: bigint, fields: string) => `{"ref":"${ref}","send":{${fields}}}`;

  it("undecodable binary: INVALID_FRAME under ref 0", async () => {
    for (const bytes of [[0x08, 0xff], [0x12, 0x7f, 0x01], [0xff, 0xff, 0xff, 0xff], [0x0f]]) {
      assertError(await unreadable(proto, Uint8Array.from(bytes)), ErrorCode.INVALID_FRAME, /./, `bytes ${Buffer.from(bytes).toString("hex")}`);
    }
  });

  it("JSON that is no frame, or whose values are of the wrong type: INVALID_FRAME", async () => {
    for (const text of ["{", "[]", "null", '"x"', `{"ref":"1","send":{"channelId":true}}`, `{"ref":"1","send":{"text":5}}`, `{"ref":"1","send":[]}`, `{"ref":{},"heartbeat":{}}`]) {
      assertError(await unreadable(json, text), ErrorCode.INVALID_FRAME, /./, text);
    }
  });

  it("JSON with a field the frame does not have: INVALID_FRAME naming it, not dropped", async () => {
    const a = await unreadable(json, `{"ref":"5","heartbeat":{},"bogusField":1}`);
    assertError(a, ErrorCode.INVALID_FRAME, /bogusField/, "an unknown top-level key");
    const b = await unreadable(json, send(6n, `"clientMsgId":"u1","channelId":"${group}","text":"hi","bogusInner":1`));
    assertError(b, ErrorCode.INVALID_FRAME, /bogusInner/, "an unknown key in the send");
  });

  it("ids as huge, fractional or negative numbers: INVALID_FRAME; 0: channel_id is required; past 2^63-1: INVALID_ARGUMENT", async () => {
    for (const id of ["1e400", "123456789012345678901234567890", "1.5", "-1", '"-1"', "18446744073709551616", '"18446744073709551616"']) {
      assertError(await unreadable(json, send(7n, `"clientMsgId":"n","channelId":${id},"text":"hi"`)), ErrorCode.INVALID_FRAME, /./, `channelId ${id}`);
    }
    assertError(await jsonFrame((ref) => send(ref, `"clientMsgId":"z","channelId":"0","text":"hi"`)), ErrorCode.INVALID_ARGUMENT, /channel_id is required/, "channel 0");
    for (const id of ["9223372036854775808", "18446744073709551615", '"9223372036854775808"']) {
      assertError(await jsonFrame((ref) => send(ref, `"clientMsgId":"big","channelId":${id},"text":"hi"`)), ErrorCode.INVALID_ARGUMENT, /channel_id must be at most/, `channelId ${id}`);
    }
    for (const field of ["editSeq", "deleteSeq", "reactSeq", "replyToSeq"]) {
      const a = await jsonFrame((ref) => send(ref, `"clientMsgId":"big-${field}","channelId":"${group}","text":"","${field}":"9223372036854775808"`));
      assertError(a, ErrorCode.INVALID_ARGUMENT, /must be at most/, field);
    }
    // An id written as a JSON number past 2^53 is read exactly, not rounded to another channel.
    const exact = await jsonFrame((ref) => send(ref, `"clientMsgId":"exact","channelId":${group},"text":"exact id"`));
    assert.equal(exact.frame?.kind.case, "sendAck", `exact id: ${exact.frame?.kind.case === "error" ? exact.frame.kind.value.message : ""}`);
  });

  it("text that is not valid Unicode: a lone surrogate refused, not stored as U+FFFD; bytes that are not UTF-8 INVALID_FRAME", async () => {
    for (const text of ["\\ud800", "a\\udc00b", "\\ud83d"]) {
      const a = await jsonFrame((ref) => send(ref, `"clientMsgId":"sur-${text.length}-${rawRef}","channelId":"${group}","text":"${text}"`));
      // Refused by the JSON reader, unread: validateSend's own check is for a reader that lets one through.
      assertError(a, ErrorCode.INVALID_FRAME, /invalid UTF8/, text);
    }
    const idSurrogate = await jsonFrame((ref) => send(ref, `"clientMsgId":"\\udfff","channelId":"${group}","text":"hi"`));
    assertError(idSurrogate, ErrorCode.INVALID_FRAME, /invalid UTF8/, "client_msg_id with a lone surrogate");
    // A send whose text field holds 0xff: no protobuf string.
    const body = [0x0a, 0x01, 0x78, 0x10, ...varint(group), 0x1a, 0x02, 0xff, 0xfe];
    const bytes = Uint8Array.from([0x08, 0x09, 0x12, body.length, ...body]);
    assertError(await unreadable(proto, bytes), ErrorCode.INVALID_FRAME, /./, "text of bytes that are not UTF-8");
    const stored = (await alice.api.messages.listMessages({ channelId: group })).messages.map((m) => m.text);
    assert.ok(!stored.some((t) => t.includes("\ufffd")), `nothing stored with U+FFFD: ${stored.join(" | ")}`);
  });

  it("empty text, or text with nothing visible: TEXT_EMPTY", async () => {
    for (const text of ["", "   ", "\\u200b", "\\u3164"]) {
      assertError(await jsonFrame((ref) => send(ref, `"clientMsgId":"e${rawRef}","channelId":"${group}","text":"${text}"`)), ErrorCode.TEXT_EMPTY, /empty/, JSON.stringify(text));
    }
  });

  it("text of 99,999 code points taken and of 100,000 refused TEXT_TOO_LONG, astral characters counting as one", async () => {
    // Its own user: two texts of 400 KB take most of an account's text budget.
    const user = await signUp(suite.chatd.httpUrl, "long");
    const { channel } = await user.api.channels.createGroup({ title: "long", memberUserIds: [alice.userId] });
    const d = await new TestDevice(suite.chatd.wsUrl, user.devices[0]!.token, { json: true }).connect();
    suite.devices.push(d);
    for (const [unit, n, ok] of [["😀", 100_000, false], ["a", 100_000, false], ["😀", 99_999, true]] as const) {
      const ref = rawRef++;
      d.sendRaw(send(ref, `"clientMsgId":"long-${ref}","channelId":"${channel!.channelId}","text":"${unit.repeat(n)}"`));
      const a = await answerOf(d, ref);
      if (ok) assert.equal(a.frame?.kind.case, "sendAck", `${n} ${unit}: ${a.frame?.kind.case === "error" ? a.frame.kind.value.message : a.close?.reason}`);
      else assertError(a, ErrorCode.TEXT_TOO_LONG, /100000/, `${n} ${unit}`);
    }
  });

  it("client_msg_id empty or past 64 characters: INVALID_ARGUMENT; 64 emoji taken", async () => {
    for (const id of ["", "x".repeat(65), "😀".repeat(65)]) {
      assertError(await jsonFrame((ref) => send(ref, `"clientMsgId":"${id}","channelId":"${group}","text":"hi"`)), ErrorCode.INVALID_ARGUMENT, /client_msg_id must be 1 to 64/, `id of ${id.length} units`);
    }
    const ok = await jsonFrame((ref) => send(ref, `"clientMsgId":"${"😀".repeat(64)}","channelId":"${group}","text":"hi"`));
    assert.equal(ok.frame?.kind.case, "sendAck");
  });

  it("a send to a channel that does not exist or whose member one is not: NOT_A_MEMBER, and nothing stored there", async () => {
    const other = await signUp(suite.chatd.httpUrl, "other");
    const { channel } = await other.api.channels.createGroup({ title: "theirs", memberUserIds: [bob.userId] });
    for (const [what, id] of [["no such channel", 987654321n], ["not a member", channel!.channelId]] as const) {
      assertError(await proto.send(id, "sneak"), ErrorCode.NOT_A_MEMBER, /./, what);
      const read = proto.sendFrame({ kind: { case: "read", value: { channelId: id, seq: 1n } } });
      assertError(await answerOf(proto, read), ErrorCode.NOT_A_MEMBER, /./, `${what}: read receipt`);
      const typing = proto.sendFrame({ kind: { case: "typing", value: { channelId: id } } });
      assertError(await answerOf(proto, typing), ErrorCode.NOT_A_MEMBER, /./, `${what}: typing`);
    }
    const theirs = (await other.api.messages.listMessages({ channelId: channel!.channelId })).messages.filter((m) => m.note === undefined);
    assert.deepEqual(theirs, []);
  });

  it("a sync from past the head is answered with the head and moves nothing; a negative cursor is INVALID_FRAME", async () => {
    const head = proto.welcome()!.headInboxSeq;
    const ref = proto.sendFrame({ kind: { case: "sync", value: { afterInboxSeq: 2n ** 64n - 1n, limit: 10 } } });
    const a = await answerOf(proto, ref);
    assert.equal(a.frame?.kind.case, "syncBatch");
    assert.ok(a.frame.kind.case === "syncBatch" && a.frame.kind.value.headInboxSeq >= head && a.frame.kind.value.entries.length === 0);
    for (const c of ['"-1"', "-1", "-9223372036854775808"]) {
      assertError(await unreadable(json, `{"ref":"3","sync":{"afterInboxSeq":${c}}}`), ErrorCode.INVALID_FRAME, /./, `cursor ${c}`);
    }
    // The session still gets what comes next: its place was not moved past it.
    const text = `after the far sync ${rawRef++}`;
    assert.equal((await bobDevice.send(group, text)).kind.case, "sendAck");
    await waitFor(() => proto.messagesIn(group).some((m) => m.text === text), "the next message on the session that synced past the head");
  });

  it("a delivery ack past what was sent moves the cursor no further than that: a new session still gets the next message", async () => {
    const d = await new TestDevice(suite.chatd.wsUrl, alice.devices[0]!.token, { autoAck: false }).connect();
    suite.devices.push(d);
    const head = d.welcome()!.headInboxSeq;
    d.sendFrame({ kind: { case: "deliveryAck", value: { inboxSeq: 2n ** 63n - 1n } } });
    d.sendFrame({ kind: { case: "deliveryAck", value: { inboxSeq: 2n ** 64n - 1n } } });
    // A heartbeat behind the acks: answered after they were taken.
    assert.equal((await answerOf(d, d.sendFrame({ kind: { case: "heartbeat", value: {} } }))).frame?.kind.case, "heartbeatAck");
    assert.deepEqual(d.errors(), []);
    await d.close();
    const again = await new TestDevice(suite.chatd.wsUrl, alice.devices[0]!.token, { autoAck: false }).connect();
    suite.devices.push(again);
    assert.ok(again.welcome()!.deviceCursor <= head, `cursor ${again.welcome()!.deviceCursor} past the head ${head}`);
    await again.close();
  });

  it("a read receipt for a seq past the channel's newest is capped at it; one past 2^63 too; the read position never passes the newest", async () => {
    const newest = (await alice.api.messages.listMessages({ channelId: group, limit: 1 })).messages.at(-1)!.seq;
    for (const seq of [newest + 1_000_000n, 2n ** 64n - 1n]) {
      const from = bobDevice.frames.length;
      bobDevice.sendFrame({ kind: { case: "read", value: { channelId: group, seq } } });
      await waitFor(() => bobDevice.frames.slice(from).find((f) => f.kind.case === "receipt" || f.kind.case === "error"), "the receipt");
    }
    assert.deepEqual(bobDevice.errors(), []);
    const receipts = [json, proto, bobDevice].flatMap((d) => d.frames.flatMap((f) => (f.kind.case === "receipt" ? [f.kind.value.seq] : [])));
    assert.ok(receipts.every((s) => s <= newest), `receipts ${receipts.join(",")} past the newest ${newest}`);
  });

  it("reactions that are no emoji: INVALID_ARGUMENT; to a seq that does not exist: NOT_FOUND", async () => {
    const target = await proto.send(group, "react to me");
    assert.equal(target.kind.case, "sendAck");
    const seq = (await alice.api.messages.listMessages({ channelId: group, limit: 1 })).messages.at(-1)!.seq;
    for (const emoji of ["a", "👍👍", "👍 ", ":+1:", "\u200d", "x".repeat(1000)]) {
      assertError(await proto.react(group, seq, emoji), ErrorCode.INVALID_ARGUMENT, /one emoji/, JSON.stringify(emoji));
    }
    assertError(await proto.react(group, seq + 1_000_000n, "👍"), ErrorCode.NOT_FOUND, /./, "a seq past the newest");
  });

  it("edits and deletes of another's message: PERMISSION_DENIED; of a seq that does not exist: NOT_FOUND; nothing changed", async () => {
    // Alice owns the group (a manager may delete any message): bob is a plain member.
    const text = `alice's own ${rawRef++}`;
    assert.equal((await proto.send(group, text)).kind.case, "sendAck");
    const seq = (await alice.api.messages.listMessages({ channelId: group, limit: 1 })).messages.at(-1)!.seq;
    assertError(await bobDevice.edit(group, seq, "bob's words"), ErrorCode.PERMISSION_DENIED, /./, "edit of another's");
    assertError(await bobDevice.deleteMessage(group, seq), ErrorCode.PERMISSION_DENIED, /./, "delete of another's by a plain member");
    assertError(await proto.edit(group, seq + 1_000_000n, "nothing"), ErrorCode.NOT_FOUND, /./, "edit of a seq past the newest");
    assertError(await proto.deleteMessage(group, seq + 1_000_000n), ErrorCode.NOT_FOUND, /./, "delete of a seq past the newest");
    assertError(await proto.send(group, "x", undefined, { replyToSeq: seq + 1_000_000n }), ErrorCode.NOT_FOUND, /./, "reply to a seq past the newest");
    assertError(await proto.send(group, "x", undefined, { editSeq: seq, deleteSeq: seq }), ErrorCode.INVALID_ARGUMENT, /at most one/, "edit and delete at once");
    assertError(await proto.send(group, "text", undefined, { deleteSeq: seq }), ErrorCode.INVALID_ARGUMENT, /text must be empty/, "delete with text");
    const m = (await alice.api.messages.listMessages({ channelId: group })).messages.find((x) => x.seq === seq)!;
    assert.deepEqual([m.text, m.deleted, m.editedAt], [text, false, undefined]);
  });

  it("ids of 2^63-1, the largest a store holds, are looked up: NOT_A_MEMBER, NOT_FOUND, a receipt and a sync capped at the newest", async () => {
    const id = String(MAX_ID);
    const cases: [string, string, ErrorCode][] = [
      ["send to channel 2^63-1", send(0n, `"clientMsgId":"m1","channelId":"${id}","text":"hi"`), ErrorCode.NOT_A_MEMBER],
      ["reaction to seq 2^63-1", send(0n, `"clientMsgId":"m2","channelId":"${group}","text":"👍","reactSeq":"${id}"`), ErrorCode.NOT_FOUND],
      ["reply to seq 2^63-1", send(0n, `"clientMsgId":"m3","channelId":"${group}","text":"x","replyToSeq":"${id}"`), ErrorCode.NOT_FOUND],
      ["edit of seq 2^63-1", send(0n, `"clientMsgId":"m4","channelId":"${group}","text":"x","editSeq":"${id}"`), ErrorCode.NOT_FOUND],
      ["delete of seq 2^63-1", send(0n, `"clientMsgId":"m5","channelId":"${group}","text":"","deleteSeq":"${id}"`), ErrorCode.NOT_FOUND],
      ["typing in channel 2^63-1", `{"ref":"0","typing":{"channelId":"${id}"}}`, ErrorCode.NOT_A_MEMBER],
      ["read receipt in channel 2^63-1", `{"ref":"0","read":{"channelId":"${id}","seq":"${id}"}}`, ErrorCode.NOT_A_MEMBER],
    ];
    for (const [what, text, code] of cases) {
      assertError(await jsonFrame((ref) => text.replace('"ref":"0"', `"ref":"${ref}"`)), code, /./, what);
    }
    const from = json.frames.length;
    json.sendRaw(`{"ref":"31","read":{"channelId":"${group}","seq":"${id}"}}`);
    await waitFor(() => json.frames.slice(from).find((f) => f.kind.case === "receipt" || f.kind.case === "error"), "the receipt");
    assert.equal((await answerOf(json, json.sendFrame({ kind: { case: "sync", value: { afterInboxSeq: MAX_ID } } }), from)).frame?.kind.case, "syncBatch");
    assert.deepEqual(json.frames.slice(from).filter((f) => f.kind.case === "error"), []);
  });

  it("a frame of exactly max_frame_bytes is read; one byte more closes that session alone with 1009 and a reason", async () => {
    const d = await new TestDevice(suite.chatd.wsUrl, alice.devices[0]!.token).connect();
    suite.devices.push(d);
    assert.equal(d.welcome()!.maxFrameBytes, MAX_FRAME_BYTES);
    const at = paddedHeartbeat(77n, MAX_FRAME_BYTES);
    assert.equal(at.length, MAX_FRAME_BYTES);
    d.sendRaw(at);
    assert.equal((await answerOf(d, 77n)).frame?.kind.case, "heartbeatAck", "the frame at the limit");
    d.sendRaw(paddedHeartbeat(78n, MAX_FRAME_BYTES + 1));
    assert.equal(await d.waitClosed(), 1009);
    assert.match(d.closeReason ?? "", /max_frame_bytes/, "a reason");
    assert.equal(d.frames.find((f) => f.ref === 78n), undefined);
  });

  it("a text frame that is not UTF-8 on a chat.v1.json session closes that session alone with 1007 and a reason", async () => {
    const d = await new TestDevice(suite.chatd.wsUrl, alice.devices[0]!.token, { json: true }).connect();
    suite.devices.push(d);
    d.ws!.send(Buffer.from('{"ref":"1","heartbeat":{}}\xff', "latin1"), { binary: false });
    assert.equal(await d.waitClosed(), 1007);
    assert.match(d.closeReason ?? "", /UTF-8/, "a reason");
  });

  it("frames sent before the Welcome are answered after it, in order, bad ones refused as ever", async () => {
    const ws = new WebSocket(suite.chatd.wsUrl, ["chat.v1.proto", `bearer.${alice.devices[0]!.token}`]);
    const frames: ServerFrame[] = [];
    ws.on("message", (data) => frames.push(fromBinary(ServerFrameSchema, new Uint8Array(data as Buffer))));
    ws.on("error", () => undefined);
    await new Promise((r) => ws.once("open", r));
    ws.send(Uint8Array.from([0x08, 0xff]));
    ws.send(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 41n, kind: { case: "heartbeat", value: {} } })));
    ws.send(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 42n, kind: { case: "send", value: { clientMsgId: "", channelId: group, text: "early" } } })));
    try {
      await waitFor(() => frames.some((f) => f.ref === 42n), "the answer to the early send");
      const kinds = frames.map((f) => `${f.ref}:${f.kind.case}${f.kind.case === "error" ? `:${ErrorCode[f.kind.value.code]}` : ""}`);
      assert.deepEqual(kinds.slice(0, 4), ["0:welcome", "0:error:INVALID_FRAME", "41:heartbeatAck", "42:error:INVALID_ARGUMENT"]);
    } finally {
      ws.terminate();
    }
  });

  it("a heartbeat flood is refused RATE_LIMITED and closed with 4008 and a reason; the user's other sessions carry on", async () => {
    const d = await new TestDevice(suite.chatd.wsUrl, alice.devices[0]!.token).connect();
    suite.devices.push(d);
    const hb = toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 9n, kind: { case: "heartbeat", value: {} } }));
    for (let i = 0; i < 400; i++) d.sendRaw(hb);
    assert.equal(await d.waitClosed(), 4008);
    assert.match(d.closeReason ?? "", /too many frames/);
    assert.ok(d.errors().some((e) => e.code === ErrorCode.RATE_LIMITED && e.retryAfterMs > 0));
  });

  it("a Reauthenticate with garbage is UNAUTHENTICATED, with another user's token PERMISSION_DENIED; the session stays the user's", async () => {
    const garbage = await proto.reauthenticate("not.a.token");
    assertError({ frame: garbage }, ErrorCode.UNAUTHENTICATED, /./, "garbage");
    assert.equal(garbage.kind.case === "error" && garbage.kind.value.refusedKind, 8);
    // The next is refused for the rate (one a second per session): waited out as told.
    let other = await proto.reauthenticate(bob.devices[0]!.token);
    if (other.kind.case === "error" && other.kind.value.code === ErrorCode.RATE_LIMITED) {
      // By the monotonic clock: a bare setTimeout can fire early on a busy loop, and the one retry would be refused again.
      await waitOut((other.kind.value as { retryAfterMs: number }).retryAfterMs);
      other = await proto.reauthenticate(bob.devices[0]!.token);
    }
    assertError({ frame: other }, ErrorCode.PERMISSION_DENIED, /./, "another user's token");
    // Still alice's: a send goes out under her id.
    const text = `still alice ${rawRef++}`;
    assert.equal((await proto.send(group, text)).kind.case, "sendAck");
    await waitFor(() => bobDevice.messagesIn(group).find((m) => m.text === text), "bob to get it");
    assert.equal(bobDevice.messagesIn(group).find((m) => m.text === text)!.senderUserId, alice.userId);
  });

  it("a Reauthenticate with the token of another device of the same user: PERMISSION_DENIED", async () => {
    const d = await new TestDevice(suite.chatd.wsUrl, alice.devices[0]!.token).connect();
    suite.devices.push(d);
    const second = await addDevice(suite.chatd.httpUrl, alice);
    assertError(await d.reauthenticate(second.token), ErrorCode.PERMISSION_DENIED, /another device/, "another device's token");
  });

  it("a flood of frames before the Welcome is answered RATE_LIMITED past the burst, or closed 4008, and held frames are answered after it", async () => {
    const ws = new WebSocket(suite.chatd.wsUrl, ["chat.v1.proto", `bearer.${alice.devices[0]!.token}`]);
    const frames: ServerFrame[] = [];
    let closed: { code: number; reason: string } | undefined;
    ws.on("message", (data) => frames.push(fromBinary(ServerFrameSchema, new Uint8Array(data as Buffer))));
    ws.on("close", (code, reason) => (closed = { code, reason: String(reason) }));
    ws.on("error", () => undefined);
    await new Promise((r) => ws.once("open", r));
    for (let i = 1; i <= 300; i++) ws.send(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: BigInt(i), kind: { case: "typing", value: { channelId: group } } })));
    ws.send(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 999n, kind: { case: "heartbeat", value: {} } })));
    try {
      await waitFor(() => closed ?? frames.some((f) => f.ref === 999n), "the flood's end");
      if (closed) {
        assert.equal(closed.code, 4008, closed.reason);
        assert.match(closed.reason, /too many frames/);
      }
      for (const f of frames) if (f.kind.case === "error") assert.ok(f.kind.value.code === ErrorCode.RATE_LIMITED && f.kind.value.message.length > 0, `${f.ref}: ${ErrorCode[f.kind.value.code]}`);
    } finally {
      ws.terminate();
    }
  });

  describe("over the native gRPC session", () => {
    it("with no token, or a bad one: UNAUTHENTICATED with close 4001 and a reason", async () => {
      for (const auth of [undefined, "Bearer nonsense", "Bearer a.b.c", "Basic dXNlcjpwYXNz"]) {
        const call = await grpcSession(suite.chatd.grpcUrl, auth, [heartbeatRequest(1n)]);
        assert.equal(call.status, "16", `${auth}: status ${call.status} (${call.message})`);
        assert.deepEqual(call.closeCode, "4001", `${auth}`);
        assert.match(call.message, /^close 4001: ./, `${auth}`);
      }
    });

    it("a request that is no ConnectRequest: INVALID_ARGUMENT with close 1007; a ConnectRequest around bytes no frame: INVALID_FRAME, the stream goes on", async () => {
      const token = `Bearer ${alice.devices[0]!.token}`;
      const bad = await grpcSession(suite.chatd.grpcUrl, token, [Uint8Array.from([0x0a, 0x7f])]);
      assert.equal(bad.status, "3", bad.message);
      assert.equal(bad.closeCode, "1007");
      // A frame of no kind this server knows (a ref, and an unknown field 15).
      const inner = await grpcSession(suite.chatd.grpcUrl, token, [Uint8Array.from([0x0a, 0x04, 0x08, 0x04, 0x78, 0x01]), heartbeatRequest(5n)]);
      assert.equal(inner.status, "0", inner.message);
      const kinds = inner.frames.map((f) => `${f.ref}:${f.kind.case}${f.kind.case === "error" ? `:${ErrorCode[f.kind.value.code]}` : ""}`);
      assert.ok(kinds.includes("5:heartbeatAck"), kinds.join(", "));
      assert.ok(kinds.includes("4:error:INVALID_FRAME"), kinds.join(", "));
    });

    it("nesting past any decoder's depth (protobuf groups, JSON arrays) refused INVALID_FRAME on the WebSocket, 1007 on the stream", async () => {
      const token = `Bearer ${alice.devices[0]!.token}`;
      // 200,000 unknown groups (field 15) one inside the other: a decoder skipping them recursively overflows its stack.
      const groups = Uint8Array.from([0x08, 0x03, ...new Array(200_000).fill(0x7b), ...new Array(200_000).fill(0x7c)]);
      const arrays = `{"ref":"1","send":${"[".repeat(250_000)}${"]".repeat(250_000)}}`;
      const call = await grpcSession(suite.chatd.grpcUrl, token, [Uint8Array.from([0x0a, ...varint(BigInt(groups.length)), ...groups])]);
      assert.deepEqual([call.status, call.closeCode], ["3", "1007"], call.message);
      const jsonCall = await grpcSession(suite.chatd.grpcUrl, token, [Buffer.from(`{"frame":${arrays}}`)], false, "application/grpc+json");
      assert.deepEqual([jsonCall.status, jsonCall.closeCode], ["3", "1007"], jsonCall.message);
      assertError(await unreadable(proto, groups), ErrorCode.INVALID_FRAME, /recursion depth/, "nested groups");
      assertError(await unreadable(json, arrays), ErrorCode.INVALID_FRAME, /malformed/, "nested arrays");
    });

    it("a JSON request whose unknown key is 100,000 characters long: still a status with close 1007, its message cut short, not a stream reset with none", async () => {
      const token = `Bearer ${alice.devices[0]!.token}`;
      const call = await grpcSession(suite.chatd.grpcUrl, token, [Buffer.from(`{"frame":{"ref":"1","heartbeat":{},"${"k".repeat(100_000)}":1}}`)], false, "application/grpc+json");
      assert.deepEqual([call.status, call.closeCode], ["3", "1007"], call.message.slice(0, 200));
      assert.match(call.message, /^close 1007: not a ConnectRequest: .*key "kkk/);
      // Well within what grpc-java takes in all its headers by default (8 KiB).
      assert.ok(Buffer.byteLength(call.message) <= 1024, `a message of ${call.message.length} characters`);
    });

    it("the same key in a JSON request to the API's gRPC: INVALID_ARGUMENT with its message cut short, not a stream reset with no status", async () => {
      const token = `Bearer ${alice.devices[0]!.token}`;
      const call = await grpcSession(suite.chatd.grpcUrl, token, [Buffer.from(`{"channelId":"1","${"k".repeat(100_000)}":1}`)], false, "application/grpc+json", "/chat.v1.MessageService/ListMessages");
      assert.equal(call.status, "3", call.message.slice(0, 200));
      assert.match(call.message, /kkk\.\.\.$/);
      assert.ok(Buffer.byteLength(call.message) <= 1024, `a message of ${call.message.length} characters`);
    });

    it("a heartbeat flood: RATE_LIMITED, then RESOURCE_EXHAUSTED with close 4008", async () => {
      const hbs = Array.from({ length: 400 }, (_, i) => heartbeatRequest(BigInt(i + 1)));
      const call = await grpcSession(suite.chatd.grpcUrl, `Bearer ${alice.devices[0]!.token}`, hbs, true);
      assert.equal(call.status, "8", call.message);
      assert.equal(call.closeCode, "4008");
      assert.match(call.message, /^close 4008: too many frames/);
      assert.ok(call.frames.some((f) => f.kind.case === "error" && f.kind.value.code === ErrorCode.RATE_LIMITED));
    });

    it("a Reauthenticate with another user's token or garbage: refused under its ref, the stream goes on", async () => {
      const reauth = (ref: bigint, accessToken: string) => connectRequest(create(ClientFrameSchema, { ref, kind: { case: "reauthenticate", value: { accessToken } } }));
      const call = await grpcSession(suite.chatd.grpcUrl, `Bearer ${alice.devices[0]!.token}`, [reauth(1n, bob.devices[0]!.token), heartbeatRequest(2n)]);
      assert.equal(call.status, "0", call.message);
      const kinds = call.frames.map((f) => `${f.ref}:${f.kind.case}${f.kind.case === "error" ? `:${ErrorCode[f.kind.value.code]}` : ""}`);
      assert.ok(kinds.includes("1:error:PERMISSION_DENIED") && kinds.includes("2:heartbeatAck"), kinds.join(", "));
    });

    it("a send to a channel not one's own and a reaction that is no emoji: refused under their refs, as on the WebSocket", async () => {
      const token = `Bearer ${alice.devices[0]!.token}`;
      const frames = [
        connectRequest(create(ClientFrameSchema, { ref: 1n, kind: { case: "send", value: { clientMsgId: "g1", channelId: 987654321n, text: "x" } } })),
        connectRequest(create(ClientFrameSchema, { ref: 2n, kind: { case: "send", value: { clientMsgId: "g2", channelId: group, text: "nope", reactSeq: 1n } } })),
      ];
      const call = await grpcSession(suite.chatd.grpcUrl, token, frames);
      assert.equal(call.status, "0", call.message);
      const codes = call.frames.filter((f) => f.kind.case === "error").map((f) => `${f.ref}:${f.kind.case === "error" ? ErrorCode[f.kind.value.code] : ""}`);
      assert.deepEqual(codes.sort(), ["1:NOT_A_MEMBER", "2:INVALID_ARGUMENT"]);
    });
  });

  describe("after every case", () => {
    it("holds no session or socket of those it closed or that ended: only the bystanders' are left", async () => {
      const bystanders = [carol, dave];
      await Promise.all(suite.devices.filter((d) => !bystanders.includes(d)).map((d) => d.close()));
      const metrics = `${suite.chatd.httpUrl}/metrics`;
      await waitFor(async () => (await scrapeMetric(metrics, "chat_sessions")) === bystanders.length, "chat_sessions to come down to the bystanders'");
      await waitFor(async () => (await scrapeMetric(metrics, "gateway_connections")) === bystanders.length, "gateway_connections to come down to the bystanders'");
    });
  });
});

describe("session bad input through a gateway and a chat server", function () {
  this.timeout(180_000);
  const deployment = useDeployment("sessionbad");
  let roles: { api: string; ws: string; grpc: string };
  const devices: TestDevice[] = [];

  before(async () => {
    const { api, gateway } = await startEdge(deployment.env, ["pipeline"]);
    roles = { api: String(api.info.http), ws: String(gateway.info.ws), grpc: String(gateway.info.grpc) };
  });
  after(async () => {
    await Promise.all(devices.map((d) => d.close()));
  });

  /**
   * Two new users in a group: alice's session under test, her other session on the same gateway
   * and bob's, to tell that what befalls the first leaves the others be.
   */
  async function sessionsBesideOne(prefix: string) {
    const alice = await signUp(roles.api, prefix);
    const bob = await signUp(roles.api, prefix);
    const group = (await alice.api.channels.createGroup({ title: "g", memberUserIds: [bob.userId] })).channel!.channelId;
    const underTest = await new TestDevice(roles.ws, alice.devices[0]!.token).connect();
    const a = await new TestDevice(roles.ws, alice.devices[0]!.token).connect();
    const b = await new TestDevice(roles.ws, bob.devices[0]!.token).connect();
    devices.push(underTest, a, b);
    return { group, underTest, a, b };
  }

  it("refuses the same cases with the same codes, and a bystander pair chats on", async () => {
    const alice = await signUp(roles.api, "gbad");
    const bob = await signUp(roles.api, "gbad");
    const group = (await alice.api.channels.createGroup({ title: "g", memberUserIds: [bob.userId] })).channel!.channelId;
    const a = await new TestDevice(roles.ws, alice.devices[0]!.token, { json: true }).connect();
    const b = await new TestDevice(roles.ws, bob.devices[0]!.token).connect();
    devices.push(a, b);
    const cases: [string, string, ErrorCode][] = [
      ["unknown key", `{"ref":"0","heartbeat":{},"bogusField":1}`, ErrorCode.INVALID_FRAME],
      ["channel 0", `{"ref":"11","send":{"clientMsgId":"z","channelId":"0","text":"hi"}}`, ErrorCode.INVALID_ARGUMENT],
      ["channel past 2^63-1", `{"ref":"12","send":{"clientMsgId":"z","channelId":"9223372036854775808","text":"hi"}}`, ErrorCode.INVALID_ARGUMENT],
      ["no such channel", `{"ref":"13","send":{"clientMsgId":"z","channelId":"987654321","text":"hi"}}`, ErrorCode.NOT_A_MEMBER],
      ["empty text", `{"ref":"14","send":{"clientMsgId":"z","channelId":"${group}","text":" "}}`, ErrorCode.TEXT_EMPTY],
      ["lone surrogate", `{"ref":"0","send":{"clientMsgId":"z","channelId":"${group}","text":"a\\ud800"}}`, ErrorCode.INVALID_FRAME],
      ["bad emoji", `{"ref":"16","send":{"clientMsgId":"z","channelId":"${group}","text":"a","reactSeq":"1"}}`, ErrorCode.INVALID_ARGUMENT],
      ["garbage token", `{"ref":"17","reauthenticate":{"accessToken":"x.y.z"}}`, ErrorCode.UNAUTHENTICATED],
      // The largest id a store holds (Cassandra's signed bigint here): looked up, not refused as out of range.
      ["channel 2^63-1", `{"ref":"18","send":{"clientMsgId":"z","channelId":"${MAX_ID}","text":"hi"}}`, ErrorCode.NOT_A_MEMBER],
      ["reaction to seq 2^63-1", `{"ref":"19","send":{"clientMsgId":"z1","channelId":"${group}","text":"👍","reactSeq":"${MAX_ID}"}}`, ErrorCode.NOT_FOUND],
      ["reply to seq 2^63-1", `{"ref":"20","send":{"clientMsgId":"z2","channelId":"${group}","text":"x","replyToSeq":"${MAX_ID}"}}`, ErrorCode.NOT_FOUND],
      ["edit of seq 2^63-1", `{"ref":"21","send":{"clientMsgId":"z3","channelId":"${group}","text":"x","editSeq":"${MAX_ID}"}}`, ErrorCode.NOT_FOUND],
      ["delete of seq 2^63-1", `{"ref":"22","send":{"clientMsgId":"z4","channelId":"${group}","text":"","deleteSeq":"${MAX_ID}"}}`, ErrorCode.NOT_FOUND],
      ["typing in channel 2^63-1", `{"ref":"23","typing":{"channelId":"${MAX_ID}"}}`, ErrorCode.NOT_A_MEMBER],
      ["read receipt in channel 2^63-1", `{"ref":"24","read":{"channelId":"${MAX_ID}","seq":"1"}}`, ErrorCode.NOT_A_MEMBER],
    ];
    for (const [what, text, code] of cases) {
      const ref = BigInt(/"ref":"(\d+)"/.exec(text)![1]!);
      const from = a.frames.length;
      a.sendRaw(text);
      // A frame refused unread is answered under ref 0.
      const answer = await answerOf(a, ref, from).catch(() => ({ frame: a.frames.slice(from).find((f) => f.ref === 0n && f.kind.case === "error") }));
      assertError(answer, code, /./, what);
      const msg = `calm ${what}`;
      assert.equal((await b.send(group, msg)).kind.case, "sendAck", what);
      await waitFor(() => a.messagesIn(group).some((m) => m.text === msg), `alice to get "${msg}"`);
    }
    // A read receipt and a sync past any seq are capped at the newest, not refused, nor an engine's error.
    for (const seq of [MAX_ID, 2n ** 64n - 1n]) {
      const from = a.frames.length;
      a.sendRaw(`{"ref":"30","read":{"channelId":"${group}","seq":"${seq}"}}`);
      await waitFor(() => a.frames.slice(from).find((f) => f.kind.case === "receipt" || f.kind.case === "error"), `the receipt of seq ${seq}`, 5_000).catch(() => undefined);
      const sync = a.sendFrame({ kind: { case: "sync", value: { afterInboxSeq: seq } } });
      assert.equal((await answerOf(a, sync, from)).frame?.kind.case, "syncBatch", `a sync after ${seq}`);
    }
    assert.deepEqual(a.errors().filter((e) => e.code === ErrorCode.INTERNAL || e.code === ErrorCode.UNAVAILABLE), []);
  });

  it("reads frames of exactly max_frame_bytes, several at once, and closes one past it with 1009 and a reason; the gateway's other sessions carry on", async () => {
    const { group, underTest: big, a, b } = await sessionsBesideOne("gbig");
    assert.equal(big.welcome()!.maxFrameBytes, MAX_FRAME_BYTES);
    for (const ref of [81n, 82n, 83n]) big.sendRaw(paddedHeartbeat(ref, MAX_FRAME_BYTES));
    for (const ref of [81n, 82n, 83n]) assert.equal((await answerOf(big, ref)).frame?.kind.case, "heartbeatAck", `the frame ${ref} at the limit`);
    big.sendRaw(paddedHeartbeat(84n, MAX_FRAME_BYTES + 1));
    assert.equal(await big.waitClosed(), 1009);
    assert.match(big.closeReason ?? "", /max_frame_bytes/);
    assert.equal((await b.send(group, "still here")).kind.case, "sendAck");
    await waitFor(() => a.messagesIn(group).some((m) => m.text === "still here"), "alice's other session to get it");
    assert.equal(a.closeCode, undefined);
  });

  it("refuses undecodable bytes, and a Reauthenticate with another user's token, as chatd does; a delivery ack past what was sent moves the cursor no further", async () => {
    const alice = await signUp(roles.api, "gbin");
    const bob = await signUp(roles.api, "gbin");
    const d = await new TestDevice(roles.ws, alice.devices[0]!.token, { autoAck: false }).connect();
    devices.push(d);
    const head = d.welcome()!.headInboxSeq;
    let from = d.frames.length;
    d.sendRaw(Uint8Array.from([0x08, 0xff]));
    assertError(await answerOf(d, 0n, from), ErrorCode.INVALID_FRAME, /malformed/, "undecodable bytes");
    const other = await d.reauthenticate(bob.devices[0]!.token);
    assertError(other, ErrorCode.PERMISSION_DENIED, /./, "another user's token");
    from = d.frames.length;
    d.sendFrame({ kind: { case: "deliveryAck", value: { inboxSeq: 2n ** 63n - 1n } } });
    assert.equal((await answerOf(d, d.sendFrame({ kind: { case: "heartbeat", value: {} } }), from)).frame?.kind.case, "heartbeatAck");
    await d.close();
    const again = await new TestDevice(roles.ws, alice.devices[0]!.token).connect();
    devices.push(again);
    assert.ok(again.welcome()!.deviceCursor <= head, `cursor ${again.welcome()!.deviceCursor} past the head ${head}`);
  });

  it("over the native gRPC session: no token or a bad one 4001, a request that is no ConnectRequest 1007, a frame of exactly the limit read and one past it 1009", async () => {
    for (const auth of [undefined, "Bearer nonsense"]) {
      const call = await grpcSession(roles.grpc, auth, [heartbeatRequest(1n)]);
      assert.deepEqual([call.status, call.closeCode], ["16", "4001"], `${auth}: ${call.message}`);
    }
    const user = await signUp(roles.api, "ggrpc");
    const token = `Bearer ${user.devices[0]!.token}`;
    const bad = await grpcSession(roles.grpc, token, [Uint8Array.from([0x0a, 0x7f])]);
    assert.deepEqual([bad.status, bad.closeCode], ["3", "1007"], bad.message);
    const frame = paddedHeartbeat(3n, MAX_FRAME_BYTES);
    const at = await grpcSession(roles.grpc, token, [Uint8Array.from([0x0a, ...varint(BigInt(frame.length)), ...frame]), heartbeatRequest(4n)]);
    assert.equal(at.status, "0", at.message);
    assert.deepEqual(at.frames.filter((f) => f.kind.case === "heartbeatAck").map((f) => f.ref), [3n, 4n]);
    const past = paddedHeartbeat(5n, MAX_FRAME_BYTES + 1);
    const over = await grpcSession(roles.grpc, token, [Uint8Array.from([0x0a, ...varint(BigInt(past.length)), ...past])]);
    assert.deepEqual([over.status, over.closeCode], ["8", "1009"], over.message);
    assert.match(over.message, /^close 1009: ./);
  });

  it("in JSON, over a chat.v1.json WebSocket and in gRPC's JSON framing alike: a frame of exactly max_frame_bytes read, one byte more 1009", async () => {
    const user = await signUp(roles.api, "gjsonmax");
    const token = user.devices[0]!.token;
    const ws = await new TestDevice(roles.ws, token, { json: true }).connect();
    devices.push(ws);
    assert.equal(ws.welcome()!.maxFrameBytes, MAX_FRAME_BYTES);
    ws.sendRaw(paddedJsonHeartbeat(91n, MAX_FRAME_BYTES));
    assert.equal((await answerOf(ws, 91n)).frame?.kind.case, "heartbeatAck", "the frame at the limit, over the WebSocket");
    ws.sendRaw(paddedJsonHeartbeat(92n, MAX_FRAME_BYTES + 1));
    assert.equal(await ws.waitClosed(), 1009);
    // The ConnectRequest around it, as Connect's JSON writes it: {"frame":...}.
    const request = (json: string) => Buffer.from(`{"frame":${json}}`);
    const at = await grpcSession(roles.grpc, `Bearer ${token}`, [request(paddedJsonHeartbeat(93n, MAX_FRAME_BYTES))], false, "application/grpc+json");
    assert.equal(at.status, "0", at.message);
    assert.deepEqual(at.frames.filter((f) => f.kind.case === "heartbeatAck").map((f) => f.ref), [93n], "the frame at the limit, over gRPC");
    const over = await grpcSession(roles.grpc, `Bearer ${token}`, [request(paddedJsonHeartbeat(94n, MAX_FRAME_BYTES + 1))], false, "application/grpc+json");
    assert.deepEqual([over.status, over.closeCode], ["8", "1009"], over.message);
  });

  it("closes a heartbeat flood with 4008 and a reason, and the user's other session on the same gateway carries on", async () => {
    const { group, underTest: flood, a, b } = await sessionsBesideOne("gflood");
    const hb = toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 9n, kind: { case: "heartbeat", value: {} } }));
    for (let i = 0; i < 400; i++) flood.sendRaw(hb);
    assert.equal(await flood.waitClosed(), 4008);
    assert.match(flood.closeReason ?? "", /too many frames/);
    assert.equal((await b.send(group, "after the flood")).kind.case, "sendAck");
    await waitFor(() => a.messagesIn(group).some((m) => m.text === "after the flood"), "alice's other session to get it");
    assert.equal(a.closeCode, undefined);
  });
});

/** A Heartbeat with `ref` and an unknown bytes field (a newer client's) padding the frame to exactly `size` bytes. */
function paddedHeartbeat(ref: bigint, size: number): Uint8Array {
  const head = [0x08, ...varint(ref), 0x32, 0x00];
  // Field 15, wire type 2: tag 0x7a, then the length's varint and the bytes.
  for (let len = size - head.length - 1 - 3; len <= size; len++) {
    const total = head.length + 1 + varint(BigInt(len)).length + len;
    if (total === size) return Uint8Array.from([...head, 0x7a, ...varint(BigInt(len)), ...new Uint8Array(len)]);
  }
  throw new Error(`no padding makes ${size} bytes`);
}

/** A heartbeat as JSON of exactly `size` bytes: the padding is whitespace, which JSON reads past. */
function paddedJsonHeartbeat(ref: bigint, size: number): string {
  const bare = `{"ref":"${ref}","heartbeat":{}}`;
  return `${bare.slice(0, -1)}${" ".repeat(size - bare.length)}}`;
}

const connectRequest = (frame: ReturnType<typeof create<typeof ClientFrameSchema>>) => {
  const bytes = toBinary(ClientFrameSchema, frame);
  return Uint8Array.from([0x0a, ...varint(BigInt(bytes.length)), ...bytes]);
};
const heartbeatRequest = (ref: bigint) => connectRequest(create(ClientFrameSchema, { ref, kind: { case: "heartbeat", value: {} } }));

/** One SessionService/Connect stream: the requests (ConnectRequest bytes, or any bytes) each in its envelope, a half-close, its status, frames and close code. */
async function grpcSession(
  url: string,
  authorization: string | undefined,
  requests: Uint8Array[],
  keepOpen = false,
  contentType = "application/grpc",
  path = "/chat.v1.SessionService/Connect",
): Promise<{ status?: string; message: string; closeCode?: string; frames: ServerFrame[] }> {
  const headers = { "content-type": contentType, ...(authorization === undefined ? {} : { authorization }) };
  const { call, done } = rawGrpcCall(url, path, headers, (req) => {
    for (const r of requests) req.write(envelope(r));
    // Kept open, the stream ends only at the server's close.
    if (!keepOpen) req.end();
  });
  await done;
  return { status: call.status, message: call.message, closeCode: call.closeCode, frames: serverFramesOf(call.data, contentType !== "application/grpc") };
}
