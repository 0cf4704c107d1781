import assert from "node:assert/strict";
import { signUp } from "../support/api.js";
import { useChatd } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { notifierSettled, scrapeMetric } from "../support/metrics.js";
import { PushReceiver, registerWebPush } from "../support/push-receiver.js";
import { waitFor } from "../support/wait.js";

/** Long enough that a send and its delete, each a round trip, land in one window even on a loaded machine. */
const COLLAPSE_MS = 3_000;

describe("chatd system: a message deleted, or a reaction taken back, while its push collapses is not pushed", function () {
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
  const withdrawn = async () => (await scrapeMetric(metrics(), "chat_push_skipped_total", 'reason="deleted"')) ?? 0;

  /** Alice online, sending; Bob offline, with a push endpoint; their direct chat. */
  async function pair() {
    const alice = await signUp(suite.chatd.httpUrl, "alice");
    const bob = await signUp(suite.chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    const sub = receiver.subscribe();
    await registerWebPush(suite.chatd.httpUrl, bob.devices[0]!.token, sub);
    const a = new TestDevice(suite.chatd.wsUrl, alice.devices[0]!.token);
    suite.devices.push(a);
    await a.connect();
    return { bob, channelId: channel!.channelId, sub, a };
  }

  const acked = (frame: Awaited<ReturnType<TestDevice["send"]>>) => assert.equal(frame.kind.case, "sendAck");

  it("pushes nothing for a message deleted within the window, and the other message of a window one of whose two was deleted", async () => {
    const { channelId, sub, a } = await pair();
    const before = await withdrawn();
    acked(await a.send(channelId, "oops, that was for someone else"));
    acked(await a.deleteMessage(channelId, 1n));
    await waitFor(async () => (await withdrawn()) === before + 1, "the window dropped by the delete");
    await notifierSettled(metrics(), 10_000, 50);
    assert.equal(receiver.pushesTo(sub).length, 0, "no push of the deleted message");

    acked(await a.send(channelId, "see you at 8"));
    acked(await a.send(channelId, "bring the secret documents"));
    acked(await a.deleteMessage(channelId, 3n));
    await waitFor(() => receiver.deliveredTo(sub).length === 1, "the push of what is left");
    await notifierSettled(metrics(), 10_000, 50);
    const pushes = receiver.pushesTo(sub);
    assert.equal(pushes.length, 1);
    assert.deepEqual([pushes[0]!.json!.body, pushes[0]!.json!.count, pushes[0]!.json!.seq], ["see you at 8", "1", "2"]);
    assert.ok(!JSON.stringify(pushes[0]!.json).includes("secret"), "nothing of the deleted text");
  });

  it("pushes nothing for a reaction taken back within the window", async () => {
    const { bob, channelId, sub, a } = await pair();
    await bob.api.messages.sendMessage({ channelId, clientMsgId: "bob-1", text: "lunch at noon?" });
    const before = await withdrawn();
    acked(await a.react(channelId, 1n, "👎"));
    acked(await a.react(channelId, 1n, ""));
    await waitFor(async () => (await withdrawn()) === before + 1, "the window dropped by the take-back");
    await notifierSettled(metrics(), 10_000, 50);
    assert.equal(receiver.pushesTo(sub).length, 0, "no push of the reaction taken back");
  });
});
