import assert from "node:assert/strict";
import { signUp } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { waitFor } from "../support/wait.js";

describe("read receipts over the realtime session (chatd)", function () {
  this.timeout(120_000);
  let chatd: ChatdProcess;
  const devices: TestDevice[] = [];

  before(async () => {
    chatd = await startChatd();
  });
  after(async () => {
    await Promise.all(devices.splice(0).map((d) => d.close()));
    await chatd?.stop();
    if (chatd) removeDataDir(chatd.dataDir);
  });

  it("a receipt past the newest message stops at it, so later messages still count as unread", async () => {
    const alice = await signUp(chatd.httpUrl, "alice");
    const bob = await signUp(chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    const channelId = channel!.channelId;
    const a = await new TestDevice(chatd.wsUrl, alice.devices[0]!.token).connect();
    const b = await new TestDevice(chatd.wsUrl, bob.devices[0]!.token).connect();
    devices.push(a, b);

    assert.equal((await b.send(channelId, "one")).kind.case, "sendAck");
    await a.waitForMessages(1);
    a.sendFrame({ kind: { case: "read", value: { channelId, seq: 1_000_000_000n } } });
    const receipt = await waitFor(
      () => a.frames.find((f) => f.kind.case === "receipt" && f.kind.value.userId === alice.userId),
      "alice's receipt",
    );
    assert.equal(receipt.kind.case === "receipt" && receipt.kind.value.seq, 1n);

    assert.equal((await b.send(channelId, "two")).kind.case, "sendAck");
    await a.waitForMessages(2);
    const view = (await alice.api.channels.describeChannel({ channelId })).channel!;
    assert.deepEqual([view.readSeq, view.unreadCount], [1n, 1n]);
  });
});
