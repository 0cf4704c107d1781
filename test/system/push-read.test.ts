import assert from "node:assert/strict";
import { signUp } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { notifierSettled, scrapeMetric } from "../support/metrics.js";
import { PushReceiver, registerWebPush } from "../support/push-receiver.js";
import { waitFor } from "../support/wait.js";

/** Long enough that a send and its read, each a round trip, land in one window even on a loaded machine. */
const COLLAPSE_MS = 3_000;

describe("chatd system: a chat read while its push collapses is not pushed", function () {
  this.timeout(120_000);
  let receiver: PushReceiver;
  const suite = useChatd({
    env: { CHAT_PUSH_ALLOW_HTTP: "true", CHAT_PUSH_COLLAPSE_MS: String(COLLAPSE_MS), CHAT_VAPID_SUBJECT: "mailto:ops@chat.test" },
  });
  before(async () => {
    receiver = await new PushReceiver().start();
  });
  after(async () => {
    await receiver.stop();
  });

  const metrics = () => `${suite.chatd.httpUrl}/metrics`;
  const readSkips = async () => (await scrapeMetric(metrics(), "chat_push_skipped_total", 'reason="read"')) ?? 0;

  /** Alice sending through the API; Bob offline, with a push endpoint; their direct chat. */
  async function pair() {
    const alice = await signUp(suite.chatd.httpUrl, "alice");
    const bob = await signUp(suite.chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    const sub = receiver.subscribe();
    await registerWebPush(suite.chatd.httpUrl, bob.devices[0]!.token, sub);
    let n = 0;
    const send = (text: string) => alice.api.messages.sendMessage({ channelId: channel!.channelId, clientMsgId: `a-${++n}`, text });
    return { bob, channelId: channel!.channelId, sub, send };
  }

  it("pushes nothing for messages read (MarkRead) within the window, and what came after the read alone", async () => {
    const { bob, channelId, sub, send } = await pair();
    const before = await readSkips();
    await send("are you there?");
    await send("read on my laptop");
    assert.equal((await bob.api.messages.markRead({ channelId, seq: 2n })).readSeq, 2n);
    await waitFor(async () => (await readSkips()) === before + 1, "the window dropped by the read");
    await notifierSettled(metrics(), 10_000, 50);
    assert.equal(receiver.pushesTo(sub).length, 0, "no push of what was read");

    await send("one more, not read");
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the push of the unread message");
    await notifierSettled(metrics(), 10_000, 50);
    const pushes = receiver.pushesTo(sub);
    assert.deepEqual([pushes[0]!.json!.body, pushes[0]!.json!.count, pushes[0]!.json!.seq], ["one more, not read", "1", "3"]);
  });

  it("pushes nothing for a message read by a realtime receipt of a device that then went offline within the window", async () => {
    const { bob, channelId, sub, send } = await pair();
    const before = await readSkips();
    await send("read, then gone");
    const b = new TestDevice(suite.chatd.wsUrl, bob.devices[0]!.token);
    suite.devices.push(b);
    await b.connect();
    b.sendFrame({ kind: { case: "read", value: { channelId, seq: 1n } } });
    await waitFor(() => b.frames.find((f) => f.kind.case === "receipt" && f.kind.value.seq === 1n), "the receipt of Bob's read");
    await b.close();
    await waitFor(async () => (await readSkips()) === before + 1, "the window dropped by the read");
    await notifierSettled(metrics(), 10_000, 50);
    assert.equal(receiver.pushesTo(sub).length, 0, "no push of what was read");
  });
});
