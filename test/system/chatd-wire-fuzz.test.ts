import assert from "node:assert/strict";
import http2 from "node:http2";
import { create, fromBinary, fromJsonString, ScalarType, toBinary, toJsonString, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import WebSocket from "ws";
import { ClientFrameSchema, ServerFrameSchema, type ClientFrame, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { ListMessagesRequestSchema, MessageService, SendMessageRequestSchema } from "../../gen/es/chat/v1/messages_pb.js";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { UserService } from "../../gen/es/chat/v1/users_pb.js";
import { PresenceService } from "../../gen/es/chat/v1/presence_pb.js";
import { PushService } from "../../gen/es/chat/v1/push_pb.js";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import { signUp, type TestUser } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { seededRandom } from "../support/random.js";
import { waitFor } from "../support/wait.js";
import { envelope, rawGrpcCall, serverFramesOf, varint } from "../support/grpc-wire.js";

/**
 * Malformed input thrown at a running chatd on every public wire (WebSocket in
 * both framings, the native gRPC session, the API over Connect JSON, Connect
 * binary, gRPC and gRPC-web), from seeded generators so a failure names the
 * seed and the episode that repeat it (CHAT_FUZZ_SEED). Every answer must be a clear refusal (an Error frame that is not
 * INTERNAL, a close code with a reason, a status that is not INTERNAL or
 * UNKNOWN), every ask a well-formed frame makes is answered under its ref, and
 * a well-behaved pair of sessions sends and receives throughout.
 */

const SEED = Number(process.env.CHAT_FUZZ_SEED ?? 20261206);
/** Wall-clock budget of the fuzzing itself (the suite's run time stays under 20 s). */
const FUZZ_MS = Number(process.env.CHAT_FUZZ_MS ?? 6_000);
const API_FUZZ_MS = Number(process.env.CHAT_FUZZ_API_MS ?? 2_500);
/** Episodes run however long they take: a slower machine runs fewer in FUZZ_MS, and the run's reach is not its speed. */
const MIN_EPISODES = 100;

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: Rand, n: number) => Math.floor(r() * n);

const EDGE_U64 = [0n, 1n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n];
const TEXTS = ["hi", "", " ", "\u0000", "\ufeff", "é", "👋", "\u202e", "x".repeat(300)];

/** A varint padded to ten or eleven bytes with continuation bytes: over-long, as no encoder writes it. */
function overlongVarint(v: bigint, bytes: number): number[] {
  const out = varint(v);
  while (out.length < bytes) {
    out[out.length - 1]! |= 0x80;
    out.push(0);
  }
  return out;
}

const tag = (field: number, wireType: number) => varint(BigInt((field << 3) | wireType));
const lenField = (field: number, body: number[]) => [...tag(field, 2), ...varint(BigInt(body.length)), ...body];

/** A ClientFrame built to be answered (send, sync, heartbeat, an unknown kind) with `ref`, and its expected ask. */
function askingFrame(r: Rand, ref: bigint, channelId: bigint): ClientFrame {
  const id = () => (r() < 0.5 ? pick(r, EDGE_U64) : channelId);
  switch (int(r, 5)) {
    case 4:
      // A new token that is no token: refused by the gateway, under its ref.
      return create(ClientFrameSchema, { ref, kind: { case: "reauthenticate", value: { accessToken: pick(r, ["", "x.y", "a".repeat(2000), "..", "\u0000.\u0000"]) } } });
    case 0:
      return create(ClientFrameSchema, {
        ref,
        kind: { case: "send", value: { clientMsgId: r() < 0.2 ? "" : `f-${ref}`, channelId: id(), text: pick(r, TEXTS), replyToSeq: r() < 0.2 ? id() : 0n, reactSeq: r() < 0.1 ? id() : 0n } },
      });
    case 1:
      return create(ClientFrameSchema, { ref, kind: { case: "sync", value: { afterInboxSeq: pick(r, EDGE_U64), limit: pick(r, [0, 1, 2 ** 32 - 1]) } } });
    case 2:
      return create(ClientFrameSchema, { ref, kind: { case: "heartbeat", value: {} } });
    default:
      return create(ClientFrameSchema, { ref });
  }
}

/**
 * Binary bytes for one WebSocket (or native) frame: random bytes, or a
 * well-formed frame with a field mutated. `ask` is the ref of a frame the
 * session must answer, when the bytes are such a frame.
 */
function binaryCase(r: Rand, ref: bigint, channelId: bigint): { bytes: Uint8Array; ask?: bigint; what: string } {
  const base = askingFrame(r, ref, channelId);
  const b = [...toBinary(ClientFrameSchema, base)];
  const refBytes = [...tag(1, 0), ...varint(ref)];
  switch (int(r, 10)) {
    case 0:
      return { bytes: Uint8Array.from({ length: int(r, 64) }, () => int(r, 256)), what: "random bytes" };
    case 1: {
      // An unknown kind (a newer client's), with its ref: answered as a frame of no known kind.
      const field = 9 + int(r, 40);
      return { bytes: Uint8Array.from([...refBytes, ...lenField(field, [0x08, 0x01])]), ask: ref, what: `unknown kind field ${field}` };
    }
    case 2: {
      // An unknown field beside a known kind: skipped by a decoder, so the frame is still its kind.
      return { bytes: Uint8Array.from([...b, ...tag(100 + int(r, 1000), 0), 0x05]), ask: ref, what: "unknown field after the kind" };
    }
    case 3:
      return { bytes: Uint8Array.from(b.slice(0, int(r, b.length))), what: "truncated" };
    case 4: {
      // The ref as an over-long varint: ten bytes is still a uint64 to a decoder; eleven is not.
      const n = r() < 0.5 ? 10 : 11;
      const rest = toBinary(ClientFrameSchema, create(ClientFrameSchema, { ...base, ref: 0n }));
      return { bytes: Uint8Array.from([...tag(1, 0), ...overlongVarint(ref, n), ...rest]), ask: n === 10 ? ref : undefined, what: `ref as a ${n}-byte varint` };
    }
    case 5: {
      // A send whose channel_id is repeated thousands of times (the last wins), or a text repeated.
      const reps = 1000 + int(r, 3000);
      const one = [...tag(2, 0), ...varint(pick(r, EDGE_U64))];
      const body = [...lenField(1, [...Buffer.from(`rep-${ref}`)]), ...Array.from({ length: reps }, () => one).flat(), ...lenField(3, [0x68, 0x69])];
      return { bytes: Uint8Array.from([...refBytes, ...lenField(2, body)]), ask: ref, what: `channel_id ${reps} times` };
    }
    case 6: {
      // A length that runs past the end, or a wire type no field has.
      const bad = r() < 0.5 ? [...refBytes, ...tag(2, 2), 0xff, 0xff, 0x03, 0x01] : [...refBytes, ...tag(2, 3 + int(r, 5))];
      return { bytes: Uint8Array.from(bad), what: "bad length or wire type" };
    }
    case 7: {
      // One byte flipped anywhere.
      const i = int(r, b.length);
      if (b.length > 0) b[i] = int(r, 256);
      return { bytes: Uint8Array.from(b), what: `byte ${i} changed` };
    }
    case 8: {
      // Negative ids: a varint of ten bytes (an int64's -1), read as 2^64-1 by a uint64 field.
      const body = [...lenField(1, [...Buffer.from(`neg-${ref}`)]), ...tag(2, 0), ...varint(2n ** 64n - 1n - BigInt(int(r, 5))), ...lenField(3, [0x68])];
      return { bytes: Uint8Array.from([...refBytes, ...lenField(2, body)]), ask: ref, what: "negative channel_id" };
    }
    default:
      return { bytes: Uint8Array.from(b), ask: ref, what: `well-formed ${base.kind.case ?? "kindless"}` };
  }
}

const BOM = "\ufeff";

/** A JSON text for one frame of a chat.v1.json session; `ask` as for binaryCase. */
function jsonCase(r: Rand, ref: bigint, channelId: bigint): { text: string; ask?: bigint; what: string } {
  const base = askingFrame(r, ref, channelId);
  const json = toJsonString(ClientFrameSchema, base);
  const send = (fields: string) => `{"ref":"${ref}","send":{${fields}}}`;
  switch (int(r, 12)) {
    case 0:
      return { text: `${json.slice(0, -1)},"ref":"${ref}"}`, what: "duplicate key" };
    case 1:
      return { text: send(`"clientMsgId":"j-${ref}","channelId":${pick(r, ["1e400", "-1", "1.5", "123456789012345678901234567890", "1.2279908126425088e17", "0x10", "1E2"])},"text":"hi"`), ask: undefined, what: "odd number" };
    case 2: {
      const depth = 1 + int(r, 5000);
      return { text: `{"ref":"${ref}","send":${"[".repeat(depth)}${"]".repeat(depth)}}`, what: `nesting ${depth}` };
    }
    case 3:
      return { text: BOM + json, what: "BOM" };
    case 4: {
      // Lone surrogates are refused unread (ref 0); a pair is a character.
      const id = pick(r, ["\\ud800", "s\\udfff", `ok-${ref}`]);
      const text = pick(r, ["\\ud83d", "a\\udc00b", "\\ud83d\\ude00"]);
      const whole = id.startsWith("ok") && text === "\\ud83d\\ude00";
      return { text: send(`"clientMsgId":"${id}","channelId":"${channelId}","text":"${text}"`), ask: whole ? ref : undefined, what: "surrogates" };
    }
    case 5: {
      // Text at the limit (100,000 code points, refused) and one below (taken), in astral characters too.
      const n = pick(r, [99_999, 100_000]);
      const unit = pick(r, ["a", "😀"]);
      return { text: send(`"clientMsgId":"long-${ref}","channelId":"${channelId}","text":"${unit.repeat(n)}"`), ask: ref, what: `text of ${n} ${unit}` };
    }
    case 6:
      return { text: `${json.slice(0, -1)},"unknownField":1}`, ask: undefined, what: "unknown key" };
    case 7:
      return { text: json.slice(0, int(r, json.length)), what: "truncated" };
    case 8:
      return { text: pick(r, ["null", "[]", "1", '"x"', "true", "{}", "", " ", "{\"ref\":null}", "{\"send\":null}"]), what: "not an object" };
    case 9:
      return { text: `{"ref":"${ref}","send":{},"heartbeat":{}}`, what: "two kinds" };
    case 10:
      return { text: send(`"clientMsgId":"",  "channelId":"0","text":""`), ask: ref, what: "empty strings and zero id" };
    default:
      return { text: json, ask: ref, what: `well-formed ${base.kind.case ?? "kindless"}` };
  }
}

/** A frame no session can read: a varint cut short after random bytes, or JSON that is no object. */
function unreadable(r: Rand, json: boolean): { text: string; what: string; ask?: bigint } | { bytes: Uint8Array; what: string; ask?: bigint } {
  if (json) return { text: pick(r, ["", "{", "[]", "null", "{\"ref\":", "\u0000"]), what: "unreadable JSON" };
  return { bytes: Uint8Array.from([...Array.from({ length: int(r, 16) }, () => 0x32), 0x08, 0xff]), what: "unreadable bytes" };
}

/** Close codes a session may end with for bad input: each must come with a reason. */
const CLEAR_CLOSES = new Set([1002, 1007, 1009, 4008, 4400]);

/** The frames answering an ask, which carry its ref: an ack, an error, a sync's last page, a heartbeat's ack. */
function answers(frame: ServerFrame, ref: bigint): boolean {
  if (frame.ref !== ref) return false;
  const k = frame.kind;
  return k.case === "sendAck" || k.case === "error" || k.case === "heartbeatAck" || (k.case === "syncBatch" && !k.value.hasMore);
}

interface Episode {
  frames: ServerFrame[];
  closed?: { code: number; reason: string };
}

/**
 * One WebSocket session: welcome, the case frames, then a heartbeat as the
 * barrier (a fresh session has its allowance). Resolves once the barrier is
 * answered or the socket closed.
 */
async function wsEpisode(wsUrl: string, token: string, json: boolean, payloads: (Uint8Array | string)[], barrier: bigint, asks: bigint[], early: boolean): Promise<Episode> {
  const ws = new WebSocket(wsUrl, [json ? "chat.v1.json" : "chat.v1.proto", `bearer.${token}`]);
  const ep: Episode = { frames: [] };
  ws.on("message", (data, isBinary) => {
    ep.frames.push(isBinary ? fromBinary(ServerFrameSchema, new Uint8Array(data as Buffer)) : fromJsonString(ServerFrameSchema, String(data)));
  });
  let closing = false;
  ws.on("close", (code, reason) => {
    if (!closing) ep.closed = { code, reason: String(reason) };
    closing = false;
  });
  ws.on("error", () => undefined);
  try {
    // Early: the frames go as soon as the socket is open, before the welcome (held by the session until it is out).
    if (early) await waitFor(() => ws.readyState !== WebSocket.CONNECTING, "the socket to open", 10_000);
    else await waitFor(() => ep.frames.some((f) => f.kind.case === "welcome") || ep.closed, "the welcome", 10_000);
    for (const p of payloads) ws.send(p, { binary: typeof p !== "string" });
    const hb = create(ClientFrameSchema, { ref: barrier, kind: { case: "heartbeat", value: {} } });
    if (ws.readyState === WebSocket.OPEN) ws.send(json ? toJsonString(ClientFrameSchema, hb) : toBinary(ClientFrameSchema, hb), { binary: !json });
    // A send is answered once stored, after the heartbeat's ack: every ask is waited for, bounded.
    const answered = () => [barrier, ...asks].every((ref) => ep.frames.some((f) => answers(f, ref)));
    // Waited out only when an answer is missing: generous, so a loaded machine slow to store a send is no finding.
    await waitFor(() => ep.closed || answered(), "every answer or a close", 15_000).catch(() => undefined);
    // The device's cursor moves past what it was sent, so the next session does not page through it all again.
    const seqs = ep.frames.flatMap((f) => (f.kind.case === "message" ? [f.kind.value.entry!] : f.kind.case === "syncBatch" ? f.kind.value.entries : []).map((e) => e.inboxSeq));
    if (seqs.length > 0 && !ep.closed) {
      const ack = create(ClientFrameSchema, { kind: { case: "deliveryAck", value: { inboxSeq: seqs.reduce((a, b) => (a > b ? a : b)) } } });
      ws.send(json ? toJsonString(ClientFrameSchema, ack) : toBinary(ClientFrameSchema, ack), { binary: !json });
      closing = true;
      ws.close(1000);
      await waitFor(() => !closing, "the close", 2_000).catch(() => undefined);
    }
    return ep;
  } finally {
    ws.terminate();
  }
}

function checkEpisode(ep: Episode, asks: bigint[], what: string): void {
  for (const f of ep.frames) {
    if (f.kind.case !== "error") continue;
    assert.notEqual(f.kind.value.code, ErrorCode.INTERNAL, `${what}: an INTERNAL error frame: ${f.kind.value.message}`);
    assert.notEqual(f.kind.value.code, ErrorCode.UNSPECIFIED, `${what}: an error frame with no code: ${f.kind.value.message}`);
    assert.ok(f.kind.value.message.length > 0, `${what}: an error frame with no message`);
  }
  if (ep.closed) {
    assert.ok(CLEAR_CLOSES.has(ep.closed.code), `${what}: closed ${ep.closed.code} (${ep.closed.reason})`);
    assert.ok(ep.closed.reason.length > 0, `${what}: closed ${ep.closed.code} with no reason`);
    return;
  }
  const seen = () => ep.frames.map((f) => `${f.ref}:${f.kind.case}${f.kind.case === "error" ? `(${f.kind.value.message})` : ""}`).join(", ");
  for (const ref of asks) assert.ok(ep.frames.some((f) => answers(f, ref)), `${what}: no answer to the frame of ref ${ref}; got ${seen()}`);
}

describe("chatd system: malformed input on every wire is refused clearly, and the server and other sessions carry on", function () {
  this.timeout(60_000);
  // No per-account call rate: the API fuzz is to reach the handlers, not their throttle.
  const suite = useChatd({ env: { CHAT_API_CALLS_PER_SEC: "0" } });
  let fuzzer: TestUser;
  let channelId: bigint;

  before(async () => {
    fuzzer = await signUp(suite.chatd.httpUrl, "fz");
    const peer = await signUp(suite.chatd.httpUrl, "fz");
    ({ channel: { channelId } = { channelId: 0n } } = await fuzzer.api.channels.createGroup({ title: "fuzz", memberUserIds: [peer.userId] }));
  });

  it("answers an API request message flagged compressed with no grpc-encoding INVALID_ARGUMENT, not INTERNAL, on gRPC and gRPC-web", async () => {
    const token = fuzzer.devices[0]!.token;
    const body = envelope(toBinary(ListMessagesRequestSchema, create(ListMessagesRequestSchema, { channelId })), 1);
    const { call, done } = grpcCall(suite.chatd.grpcUrl, "/chat.v1.MessageService/ListMessages", token, {}, (req) => req.end(body));
    await done;
    assert.deepEqual([call.status, call.chatCode], ["3", "ERROR_CODE_INVALID_ARGUMENT"], call.message);
    assert.match(call.message, /flagged compressed/);

    const web = await fetch(new URL("/chat.v1.MessageService/ListMessages", suite.chatd.httpUrl), {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", authorization: `Bearer ${token}` },
      body: new Uint8Array(body),
    });
    const trailer = Buffer.from(await web.arrayBuffer()).toString("latin1") + [...web.headers].map(([k, v]) => `${k}: ${v}\r\n`).join("");
    assert.match(trailer, /grpc-status: 3\r\n/);
    assert.match(trailer, /chat-error-code: ERROR_CODE_INVALID_ARGUMENT/);
  });

  it(`answers every API method's requests of seed ${SEED} with mutated fields (edge ids, unknown enums, thousands of entries) without INTERNAL or UNKNOWN`, async () => {
    const { httpUrl, grpcUrl } = suite.chatd;
    const user = await signUp(httpUrl, "fa");
    const token = user.devices[0]!.token;
    const ids = [channelId, fuzzer.userId, user.userId];
    const methods = [ChannelService, MessageService, UserService, PresenceService, PushService, AuthService]
      .flatMap((s) => s.methods)
      // Those that end the session of the token or cost a password hash: not what this is about.
      .filter((m) => !["SignUp", "Login", "Logout", "RevokeDevice", "ChangePassword", "DeleteAccount"].includes(m.name));
    const failures: string[] = [];
    const deadline = performance.now() + API_FUZZ_MS;
    let calls = 0;
    const outcomes = new Map<string, number>();
    await Promise.all(
      [0, 1, 2, 3].map(async () => {
        while (performance.now() < deadline && failures.length < 5) {
          // A generator per call, as per episode below: call n is the same in every run of the seed.
          const n = calls++;
          const r = seededRandom((SEED ^ 0x5eed ^ Math.imul(n + 1, 0x9e3779b1)) >>> 0);
          const method = pick(r, methods);
          const request = randomMessage(r, method.input, ids, 0);
          const json = jsonOf(method.input, request);
          const wire = pick(r, ["proto", json === undefined ? "proto" : "json", "grpc"] as const);
          const path = `/${method.parent.typeName}/${method.name}`;
          const what = `call ${n}: ${path} over ${wire}: ${(json ?? "(no JSON form)").slice(0, 300)}`;
          try {
            if (wire === "grpc") {
              const { call, done } = grpcCall(grpcUrl, path, token, {}, (req) => req.end(envelope(toBinary(method.input, request))));
              await done;
              if (call.status === undefined || UNCLEAR.has(call.status)) failures.push(`${what}: status ${call.status} (${call.message})`);
              outcomes.set(`grpc ${call.status}`, (outcomes.get(`grpc ${call.status}`) ?? 0) + 1);
              continue;
            }
            const res = await fetch(new URL(path, httpUrl), {
              method: "POST",
              body: wire === "json" ? json : new Uint8Array(toBinary(method.input, request)),
              headers: { authorization: `Bearer ${token}`, "content-type": wire === "json" ? "application/json" : "application/proto" },
            });
            const text = await res.text();
            const code = res.status === 200 ? "ok" : ((JSON.parse(text) as { code?: string }).code ?? "");
            outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
            if (res.status !== 200) {
              const err = JSON.parse(text) as { code?: string; message?: string };
              if (err.code === "internal" || err.code === "unknown" || !err.message) failures.push(`${what}: ${res.status} ${text.slice(0, 300)}`);
            }
          } catch (err) {
            failures.push(`${what}: ${(err as Error).message}`);
          }
        }
      }),
    );
    assert.deepEqual(failures, []);
    assert.ok(calls > 100, `${calls} calls`);
    console.log(`      ${calls} calls: ${[...outcomes].map(([k, v]) => `${k} ${v}`).join(", ")}`);
  });

  it(`answers every case of seed ${SEED} clearly while a well-behaved pair chats`, async () => {
    const { httpUrl, wsUrl, grpcUrl } = suite.chatd;
    // The well-behaved pair: carol sends, dave receives, all the while.
    const carol = await signUp(httpUrl, "ok");
    const dave = await signUp(httpUrl, "ok");
    const { channel } = await carol.api.channels.createGroup({ title: "calm", memberUserIds: [dave.userId] });
    const calm = channel!.channelId;
    const sender = await new TestDevice(wsUrl, carol.devices[0]!.token).connect();
    const receiver = await new TestDevice(wsUrl, dave.devices[0]!.token).connect();
    suite.devices.push(sender, receiver);
    let fuzzing = true;
    const sent: string[] = [];
    const chatting = (async () => {
      for (let i = 0; fuzzing || i < 3; i++) {
        const text = `calm ${i}`;
        const reply = await sender.send(calm, text, `calm-${i}`);
        assert.equal(reply.kind.case, "sendAck", `calm send ${i}: ${reply.kind.case === "error" ? reply.kind.value.message : reply.kind.case}`);
        sent.push(text);
        await waitFor(() => receiver.messagesIn(calm).some((m) => m.text === text), `dave to receive ${text}`, 10_000);
      }
    })();

    const token = fuzzer.devices[0]!.token;
    const deadline = performance.now() + FUZZ_MS;
    let episodes = 0;
    let grpcCalls = 0;
    const failures: string[] = [];
    const run = async () => {
      while ((performance.now() < deadline || episodes < MIN_EPISODES) && failures.length === 0) {
        const n = episodes++;
        // Each episode draws from a generator of its own, and its refs are its own: what episode n sends is the same
        // in every run of the seed, whichever lane takes it and whenever.
        const r = seededRandom((SEED ^ Math.imul(n + 1, 0x9e3779b1)) >>> 0);
        let nextRef = BigInt(n) * 1000n + 1n;
        const kind = n % 4;
        const what = `seed ${SEED} episode ${n}`;
        try {
          if (kind === 0 || kind === 1) {
            const json = kind === 1;
            const asks: bigint[] = [];
            const payloads: (Uint8Array | string)[] = [];
            const cases: string[] = [];
            // Now and then a run of ten malformed frames in a row or more, which closes the session (4400).
            const burst = r() < 0.1;
            for (let i = 0; i < (burst ? 10 + int(r, 20) : 1 + int(r, 6)); i++) {
              const ref = nextRef++;
              const c = burst ? unreadable(r, json) : json ? jsonCase(r, ref, channelId) : binaryCase(r, ref, channelId);
              payloads.push("text" in c ? c.text : c.bytes);
              if (c.ask !== undefined) asks.push(c.ask);
              cases.push(`${c.what} [${ref}: ${("text" in c ? c.text : Buffer.from(c.bytes).toString("hex")).slice(0, 160)}]`);
            }
            const early = r() < 0.3;
            const ep = await wsEpisode(wsUrl, token, json, payloads, nextRef++, asks, early);
            checkEpisode(ep, asks, `${what} (${json ? "json" : "proto"}${early ? ", early" : ""}: ${cases.join("; ")})`);
          } else if (kind === 2) {
            grpcCalls++;
            await nativeEpisode(grpcUrl, token, r, () => nextRef++, channelId, what);
          } else {
            grpcCalls++;
            await apiEpisode(httpUrl, grpcUrl, token, r, channelId, what);
          }
        } catch (err) {
          failures.push(`${what}: ${(err as Error).message}`);
        }
      }
    };
    await Promise.all([run(), run(), run(), run()]);
    fuzzing = false;
    assert.deepEqual(failures, []);
    await chatting;
    assert.ok(episodes >= MIN_EPISODES, `${episodes} episodes`);
    // Nothing the pair sent was lost, repeated or reordered.
    assert.deepEqual(receiver.messagesIn(calm).map((m) => m.text), sent);
    const ready = await fetch(new URL("/readyz", httpUrl));
    assert.equal(ready.status, 200);
    console.log(`      ${episodes} episodes, ${grpcCalls} gRPC and API calls, ${sent.length} calm messages`);
  });
});

/** A ConnectRequest around `frame`'s bytes (field 1), whatever they are. */
const connectRequest = (frame: Uint8Array) => Uint8Array.from(lenField(1, [...frame]));

function grpcCall(url: string, path: string, token: string, headers: Record<string, string>, write: (req: http2.ClientHttp2Stream) => void) {
  return rawGrpcCall(url, path, { authorization: `Bearer ${token}`, ...headers }, write);
}

/** gRPC statuses no malformed input may end with: UNKNOWN and INTERNAL. */
const UNCLEAR = new Set(["2", "13"]);

/** A native session: a few ConnectRequests around mutated frames (or mutated envelopes), then a half-close. */
async function nativeEpisode(grpcUrl: string, token: string, r: Rand, ref: () => bigint, channelId: bigint, what: string): Promise<void> {
  const asks: bigint[] = [];
  const cases: string[] = [];
  // gRPC's JSON framing (application/grpc+json), read as the API's JSON is: a ConnectRequest around a JSON frame case.
  const json = r() < 0.3;
  const { call, done } = grpcCall(grpcUrl, "/chat.v1.SessionService/Connect", token, json ? { "content-type": "application/grpc+json" } : {}, (req) => {
    if (json) {
      for (let i = 0; i < 1 + int(r, 4); i++) {
        const c = jsonCase(r, ref(), channelId);
        cases.push(`json ${c.what}`);
        if (c.ask !== undefined && decodesJson(c.text)) asks.push(c.ask);
        req.write(envelope(Buffer.from(`{"frame":${c.text}}`)));
      }
      return req.end();
    }
    const n = 1 + int(r, 5);
    // At most one envelope broken, in a quarter of the streams: it ends the stream there.
    const broken = r() < 0.25 ? int(r, n) : -1;
    for (let i = 0; i < n; i++) {
      // Mostly frames a decoder reads: one that it cannot makes the whole ConnectRequest unreadable, which ends the stream.
      let c = binaryCase(r, ref(), channelId);
      for (let tries = 0; tries < 5 && !decodes(c.bytes) && r() < 0.85; tries++) c = binaryCase(r, ref(), channelId);
      cases.push(c.what);
      const how = i === broken ? int(r, 2) : 2;
      if (how === 0) {
        cases.push("compressed flag");
        req.write(envelope(connectRequest(c.bytes), 1));
      } else if (how === 1) {
        cases.push("bytes as the ConnectRequest itself");
        req.write(envelope(c.bytes));
      } else {
        if (c.ask !== undefined) asks.push(c.ask);
        req.write(envelope(connectRequest(c.bytes)));
      }
    }
    req.end();
  });
  await done;
  const label = `${what} (native: ${cases.join("; ")})`;
  assert.ok(call.status !== undefined, `${label}: no status`);
  assert.ok(!UNCLEAR.has(call.status), `${label}: status ${call.status} (${call.message})`);
  const frames = serverFramesOf(call.data, json);
  for (const f of frames) {
    if (f.kind.case === "error") assert.notEqual(f.kind.value.code, ErrorCode.INTERNAL, `${label}: INTERNAL error frame: ${f.kind.value.message}`);
  }
  // A stream that ended normally (the client half-closed) answered everything asked first.
  if (call.status === "0") for (const a of asks) assert.ok(frames.some((f) => answers(f, a)), `${label}: no answer to ref ${a}`);
}

/** One API call over Connect JSON, Connect binary or gRPC, with a mutated request. */
async function apiEpisode(httpUrl: string, grpcUrl: string, token: string, r: Rand, channelId: bigint, what: string): Promise<void> {
  const method = pick(r, ["/chat.v1.MessageService/SendMessage", "/chat.v1.MessageService/ListMessages"] as const);
  const isSend = method.endsWith("SendMessage");
  const base = isSend
    ? toBinary(SendMessageRequestSchema, create(SendMessageRequestSchema, { clientMsgId: `api-${int(r, 1e9)}`, channelId, text: "hi" }))
    : toBinary(ListMessagesRequestSchema, create(ListMessagesRequestSchema, { channelId, limit: 5 }));
  const wire = pick(r, ["json", "proto", "grpc", "grpc-web"] as const);
  let body: Uint8Array;
  let label: string;
  if (wire === "json") {
    const c = jsonCase(r, 1n, channelId);
    // The frame's send object as the request, or the mutation as the whole body.
    const m = /"send":(\{.*\})\}$/s.exec(c.text);
    body = Buffer.from(isSend && m ? m[1]! : c.text);
    label = `json ${c.what}`;
  } else {
    const c = binaryCase(r, 1n, channelId);
    body = r() < 0.5 ? c.bytes : mutate(r, base);
    label = `${wire} ${c.what}`;
  }
  // The envelope's flags too: compressed with no encoding, a trailer's, bits no flag has.
  const flag = r() < 0.3 ? pick(r, [1, 2, 0x40, 0x80, 0x81, 0xff]) : 0;
  if (wire === "grpc") {
    const { call, done } = grpcCall(grpcUrl, method, token, {}, (req) => req.end(envelope(body, flag)));
    await done;
    assert.ok(call.status !== undefined, `${what} (${method} ${label}): no status`);
    assert.ok(!UNCLEAR.has(call.status), `${what} (${method} ${label}, flags ${flag}): status ${call.status} (${call.message})`);
    return;
  }
  if (wire === "grpc-web") {
    const res = await fetch(new URL(method, httpUrl), {
      method: "POST",
      body: new Uint8Array(envelope(body, flag)),
      headers: { authorization: `Bearer ${token}`, "content-type": "application/grpc-web+proto" },
    });
    const all = Buffer.from(await res.arrayBuffer()).toString("latin1") + [...res.headers].map(([k, v]) => `\r\n${k}: ${v}`).join("");
    const status = /grpc-status: *(\d+)/.exec(all)?.[1];
    assert.ok(status !== undefined && !UNCLEAR.has(status), `${what} (${method} gRPC-web ${label}, flags ${flag}): status ${status} in ${all.slice(-200)}`);
    return;
  }
  const res = await fetch(new URL(method, httpUrl), {
    method: "POST",
    body: new Uint8Array(body),
    headers: { authorization: `Bearer ${token}`, "content-type": wire === "json" ? "application/json" : "application/proto" },
  });
  const text = await res.text();
  if (res.status === 200) return;
  const err = JSON.parse(text) as { code?: string; message?: string };
  assert.ok(err.code !== "internal" && err.code !== "unknown", `${what} (${method} ${label}): ${res.status} ${text.slice(0, 300)}`);
  assert.ok(err.message, `${what} (${method} ${label}): no message`);
}

function mutate(r: Rand, bytes: Uint8Array): Uint8Array {
  const b = [...bytes];
  for (let i = 0; i < 1 + int(r, 3); i++) if (b.length > 0) b[int(r, b.length)] = int(r, 256);
  return Uint8Array.from(r() < 0.3 ? b.slice(0, int(r, b.length)) : b);
}

/** A message of `desc` with every field set at random: edge and real ids, odd strings, unknown enum numbers, repeated fields of thousands. */
function randomMessage(r: Rand, desc: DescMessage, ids: bigint[], depth: number): MessageShape<DescMessage> {
  const msg = create(desc) as Record<string, unknown>;
  const one = (f: DescMessage["fields"][number]): unknown => {
    switch (f.fieldKind === "list" ? f.listKind : f.fieldKind) {
      case "scalar": {
        const t = (f as { scalar: ScalarType }).scalar;
        if (t === ScalarType.STRING) return pick(r, [...TEXTS, "x".repeat(100_001), "😀".repeat(5000), "a".repeat(33)]);
        if (t === ScalarType.BOOL) return r() < 0.5;
        if (t === ScalarType.BYTES) return Uint8Array.from({ length: int(r, 40) }, () => int(r, 256));
        if (t === ScalarType.UINT64 || t === ScalarType.FIXED64) return r() < 0.5 ? pick(r, ids) : pick(r, EDGE_U64);
        if (t === ScalarType.INT64 || t === ScalarType.SINT64 || t === ScalarType.SFIXED64) return pick(r, [0n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 1n]);
        if (t === ScalarType.UINT32 || t === ScalarType.FIXED32) return pick(r, [0, 1, 100, 2 ** 31, 2 ** 32 - 1]);
        if (t === ScalarType.DOUBLE || t === ScalarType.FLOAT) return pick(r, [0, -1, 1e308, Number.NaN, Infinity]);
        return pick(r, [0, 1, -1, 2 ** 31 - 1, -(2 ** 31)]);
      }
      case "enum":
        return pick(r, [0, 1, 2, 3, 999, -5]);
      case "message":
        return depth < 3 ? randomMessage(r, (f as { message: DescMessage }).message, ids, depth + 1) : create((f as { message: DescMessage }).message);
      default:
        return undefined;
    }
  };
  for (const f of desc.fields) {
    if (r() < 0.3) continue;
    if (f.fieldKind === "map") continue;
    if (f.fieldKind === "list") {
      const n = pick(r, [0, 1, 2, 101, 1000 + int(r, 4000)]);
      (msg[f.localName] as unknown[]).push(...Array.from({ length: n }, () => one(f)).filter((v) => v !== undefined));
      continue;
    }
    const v = one(f);
    if (v === undefined) continue;
    if (f.oneof) msg[f.oneof.localName] = { case: f.localName, value: v };
    else msg[f.localName] = v;
  }
  return msg as MessageShape<DescMessage>;
}

/** The message's JSON form, or undefined for one JSON cannot carry (a Timestamp out of range, say): sent as binary then. */
function jsonOf(desc: DescMessage, msg: MessageShape<DescMessage>): string | undefined {
  try {
    return toJsonString(desc, msg);
  } catch {
    return undefined;
  }
}

function decodes(bytes: Uint8Array): boolean {
  try {
    fromBinary(ClientFrameSchema, bytes);
    return true;
  } catch {
    return false;
  }
}

function decodesJson(text: string): boolean {
  try {
    fromJsonString(ClientFrameSchema, text);
    return true;
  } catch {
    return false;
  }
}
