import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema, type ServerFrame } from "../../gen/es/chat/v1/session_pb.js";
import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import { signUp } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { startEdge, useDeployment } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

/**
 * A Heartbeat (ref 7) whose protobuf bytes are all ASCII, so it can go as a WebSocket text frame
 * too: what a hand-typed or mis-framed client sends on a chat.v1.proto session.
 */
const HEARTBEAT = toBinary(ClientFrameSchema, create(ClientFrameSchema, { ref: 7n, kind: { case: "heartbeat", value: {} } }));

/** What the session answers to the heartbeat sent as a text frame (an Error or a HeartbeatAck), or its close. */
async function answerToTextHeartbeat(apiUrl: string, wsUrl: string): Promise<{ answer?: ServerFrame; close?: number }> {
  const user = await signUp(apiUrl, "txt");
  const d = await new TestDevice(wsUrl, user.devices[0]!.token).connect();
  try {
    assert.ok(d.welcome(), `welcomed (closed ${d.closeCode}: ${d.closeReason})`);
    assert.ok(HEARTBEAT.every((b) => b < 0x80), "the frame's bytes are ASCII");
    d.sendRaw(Buffer.from(HEARTBEAT).toString("latin1"));
    // Refused, it is answered under ref 0: a frame that cannot be read has no ref.
    const answers = () => d.frames.find((f) => f.kind.case === "error" || f.kind.case === "heartbeatAck");
    await waitFor(() => answers() !== undefined || d.closeCode !== undefined, "the answer to the text frame, or the close");
    return { answer: answers(), close: d.closeCode };
  } finally {
    await d.close();
  }
}

describe("a text frame on a chat.v1.proto session", function () {
  this.timeout(180_000);
  const single = useChatd();
  const deployment = useDeployment("textframe");
  let roles: { api: string; ws: string };

  before(async () => {
    const { api, gateway } = await startEdge({ ...deployment.env, CHAT_OPS_PORT: "0" });
    roles = { api: String(api.info.http), ws: String(gateway.info.ws) };
  });

  it("is refused INVALID_FRAME by chatd, not read as protobuf", async () => {
    const { answer, close } = await answerToTextHeartbeat(single.chatd.httpUrl, single.chatd.wsUrl);
    assert.equal(close, undefined);
    assert.equal(answer?.kind.case, "error", `refused (${String(answer?.kind.case)})`);
    assert.equal(answer.kind.case === "error" && answer.kind.value.code, ErrorCode.INVALID_FRAME);
  });

  it("is refused as chatd refuses it through a gateway and a chat server, where the text's bytes were read as protobuf and the heartbeat acked", async () => {
    const chatdAnswer = await answerToTextHeartbeat(single.chatd.httpUrl, single.chatd.wsUrl);
    const { answer, close } = await answerToTextHeartbeat(roles.api, roles.ws);
    assert.equal(close, undefined);
    assert.equal(answer?.kind.case, "error", `refused, not answered (${String(answer?.kind.case)})`);
    assert.deepEqual(answer.kind.value, chatdAnswer.answer?.kind.value, "the Error chatd sends, word for word");
  });

  it("leaves a chat.v1.json session's text frames read as JSON through a gateway and a chat server", async () => {
    const alice = await signUp(roles.api, "txt");
    const bob = await signUp(roles.api, "txt");
    const { channel } = await alice.api.channels.createGroup({ title: "G", memberUserIds: [bob.userId] });
    const d = await new TestDevice(roles.ws, alice.devices[0]!.token, { json: true }).connect();
    try {
      const reply = await d.send(channel!.channelId, "café ☕");
      assert.equal(reply.kind.case, "sendAck", `acked (${String(reply.kind.case)})`);
    } finally {
      await d.close();
    }
  });
});
