import assert from "node:assert/strict";
import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import { rpcError, signUp } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { waitFor } from "../support/wait.js";

/**
 * What the realtime session answers input the API refuses too: each refusal
 * says what was wrong, as the API's does, and changes nothing.
 */
describe("chatd system: the realtime session refuses bad input as the API does", function () {
  this.timeout(120_000);
  const suite = useChatd();

  async function aliceInAGroup(json = false) {
    const alice = await signUp(suite.chatd.httpUrl, "alice");
    const bob = await signUp(suite.chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.createGroup({ title: "G", memberUserIds: [bob.userId] });
    const device = await new TestDevice(suite.chatd.wsUrl, alice.devices[0]!.token, { json }).connect();
    suite.devices.push(device);
    return { alice, channelId: channel!.channelId, device };
  }

  it("refuses a JSON frame that is not UTF-8 (a binary WebSocket frame) as INVALID_FRAME, rather than storing U+FFFD for its bad bytes", async () => {
    const { alice, channelId, device } = await aliceInAGroup(true);
    const json = `{"ref":"7","send":{"channelId":"${channelId}","clientMsgId":"bad-utf8","text":"caf\u00e9"}}`;
    // "é" as Latin-1 (0xE9): one byte no UTF-8 decoder reads as a character.
    device.sendRaw(Buffer.from(json, "latin1"));
    const answer = await waitFor(
      () => device.frames.find((f) => f.kind.case === "error" || (f.kind.case === "sendAck" && f.ref === 7n)),
      "the answer to the frame",
    );
    assert.equal(answer.kind.case, "error", "refused, not acked");
    assert.equal(answer.kind.case === "error" && answer.kind.value.code, ErrorCode.INVALID_FRAME);
    assert.match(answer.kind.case === "error" ? answer.kind.value.message : "", /UTF-8/);
    // The session goes on, and the same frame in UTF-8 is taken.
    device.sendRaw(Buffer.from(json, "utf8"));
    const ack = await waitFor(() => device.frames.find((f) => f.kind.case === "sendAck" && f.ref === 7n), "the ack of the frame in UTF-8");
    assert.equal(ack.kind.case === "sendAck" && ack.kind.value.duplicate, false);
    const history = (await alice.api.messages.listMessages({ channelId })).messages.filter((m) => m.note === undefined);
    assert.deepEqual(history.map((m) => m.text), ["caf\u00e9"]);
  });

  it("answers a ReadReceipt or a Typing without a channel_id INVALID_ARGUMENT saying it is required, as the API does, not NOT_A_MEMBER", async () => {
    const { alice, channelId, device } = await aliceInAGroup();
    const api = await rpcError(() => alice.api.messages.markRead({ channelId: 0n, seq: 1n }));
    assert.equal(api.rawMessage, "channel_id is required");
    const read = device.sendFrame({ kind: { case: "read", value: { channelId: 0n, seq: 1n } } });
    const typing = device.sendFrame({ kind: { case: "typing", value: { channelId: 0n } } });
    for (const ref of [read, typing]) {
      const answer = await waitFor(() => device.frames.find((f) => f.ref === ref && f.kind.case === "error"), `the answer to frame ${ref}`);
      assert.deepEqual(
        answer.kind.case === "error" && [answer.kind.value.code, answer.kind.value.message],
        [ErrorCode.INVALID_ARGUMENT, api.rawMessage],
      );
    }
    // A channel named is checked as before.
    device.sendFrame({ kind: { case: "read", value: { channelId, seq: 1n } } });
    await waitFor(() => device.frames.find((f) => f.kind.case === "receipt" && f.kind.value.channelId === channelId), "the receipt");
  });
});
