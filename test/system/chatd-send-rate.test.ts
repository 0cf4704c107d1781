import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import { RETRY_AFTER_HEADER } from "../../internal/api/errors.js";
import { addDevice, rpcError, signUp } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { waitFor } from "../support/wait.js";

/** Six sends at once, then one a second: a flood of short texts is refused long before the text budget. */
const BURST = 6;

describe("chatd system: the send rate of an account", function () {
  this.timeout(180_000);
  const suite = useChatd({ env: { CHAT_SENDS_PER_SEC: "1", CHAT_SEND_BURST: String(BURST) } });
  const devices = suite.devices;
  const connect = async (token: string) => {
    const d = new TestDevice(suite.chatd.wsUrl, token);
    devices.push(d);
    return d.connect();
  };

  it("refuses an account's sends past it over all its sessions with RATE_LIMITED, unstored, the sessions open, while another account sends on", async () => {
    const url = suite.chatd.httpUrl;
    const [alice, bob, carol] = await Promise.all(["alice", "bob", "carol"].map((n) => signUp(url, n)));
    await addDevice(url, alice!);
    await addDevice(url, alice!);
    const toBob = (await alice!.api.channels.openDirect({ userId: bob!.userId })).channel!.channelId;
    const carolToBob = (await carol!.api.channels.openDirect({ userId: bob!.userId })).channel!.channelId;
    const mine = await Promise.all(alice!.devices.map((d) => connect(d.token)));
    const [b, c] = await Promise.all([connect(bob!.devices[0]!.token), connect(carol!.devices[0]!.token)]);

    // Four short texts from each of alice's three sessions at once (well within each session's
    // frame rate and the text budget), and carol's in the same moment.
    const sent = mine.flatMap((d, i) =>
      Array.from({ length: 4 }, (_, n) => {
        const key = `a${i}.${n}`;
        return { d, key, ref: d.sendFrame({ kind: { case: "send", value: { channelId: toBob, text: key, clientMsgId: key } } }) };
      }),
    );
    const carols = Array.from({ length: 4 }, (_, n) => c!.sendFrame({ kind: { case: "send", value: { channelId: carolToBob, text: `c${n}`, clientMsgId: `c${n}` } } }));
    const replies = await Promise.all(sent.map((s) => s.d.reply(s.ref)));
    for (const ref of carols) assert.equal((await c!.reply(ref)).kind.case, "sendAck", "carol is not held to alice's rate");

    const acked = sent.filter((_, i) => replies[i]!.kind.case === "sendAck").map((s) => s.key);
    const refused = replies.flatMap((r) => (r.kind.case === "error" ? [r.kind.value] : []));
    assert.ok(acked.length >= BURST, `the burst goes through (${acked.length} acked)`);
    assert.ok(refused.length >= 3, `the sends past it over all her sessions are refused (${refused.length} refused)`);
    assert.equal(acked.length + refused.length, sent.length);
    for (const e of refused) {
      assert.equal(e.code, ErrorCode.RATE_LIMITED);
      assert.match(e.message, /too many messages/);
      assert.ok(e.retryAfterMs > 0, "with the time to retry");
    }
    assert.deepEqual(mine.map((d) => d.closeCode), [undefined, undefined, undefined], "her sessions stay open");

    // A send after them, once the client waited as told, fences the refused ones: bob gets exactly
    // what was acked and the fence, and the history holds nothing else.
    assert.equal((await mine[0]!.send(toBob, "fence", "fence")).kind.case, "sendAck");
    await waitFor(() => b!.messagesIn(toBob).some((m) => m.text === "fence") && b!.messagesIn(carolToBob).length === 4, "the fence and carol's messages at bob's");
    assert.deepEqual(b!.messagesIn(toBob).map((m) => m.text).sort(), [...acked, "fence"].sort());
    const history = await alice!.api.messages.listMessages({ channelId: toBob, direction: PageDirection.BACKWARD, limit: 200 });
    assert.deepEqual(history.messages.map((m) => m.text).sort(), [...acked, "fence"].sort());
  });

  it("refuses chatd's SendMessage past it too, with chat-retry-after-ms", async () => {
    const url = suite.chatd.httpUrl;
    const [dave, erin] = await Promise.all(["dave", "erin"].map((n) => signUp(url, n)));
    const channelId = (await dave!.api.channels.openDirect({ userId: erin!.userId })).channel!.channelId;
    for (let n = 0; n < BURST; n++) await dave!.api.messages.sendMessage({ channelId, clientMsgId: `d${n}`, text: "hi" });
    const err = await rpcError(() => dave!.api.messages.sendMessage({ channelId, clientMsgId: "over", text: "hi" }));
    assert.equal(err.code, Code.ResourceExhausted);
    assert.match(err.rawMessage, /too many messages sent by this account/);
    assert.ok(Number(err.metadata.get(RETRY_AFTER_HEADER)) > 0);
    await erin!.api.messages.sendMessage({ channelId, clientMsgId: "e0", text: "hi" });
  });
});
