import assert from "node:assert/strict";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import { signUp } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { scrapeMetric } from "../support/metrics.js";
import { waitFor } from "../support/wait.js";

// chatd keeps inbox entries (the sync queue) for CHAT_INBOX_RETENTION_S, as
// the cluster does; history stays. A device that comes after them is told
// what it will never get by sync, and pages history instead.
describe("chatd: inbox retention", function () {
  this.timeout(120_000);
  let chatd: ChatdProcess;
  const devices: TestDevice[] = [];

  before(async () => {
    chatd = await startChatd({ env: { CHAT_INBOX_RETENTION_S: "1" } });
  });
  after(async () => {
    await Promise.all(devices.map((d) => d.close()));
    await chatd.stop();
    removeDataDir(chatd.dataDir);
  });

  it("takes expired entries away, keeps the newest, tells a new device what expired, and keeps history", async () => {
    const alice = await signUp(chatd.httpUrl, "alice");
    const bob = await signUp(chatd.httpUrl, "bob");
    const { channel } = await alice.api.channels.openDirect({ userId: bob.userId });
    const channelId = channel!.channelId;
    const a = new TestDevice(chatd.wsUrl, alice.devices[0]!.token);
    devices.push(a);
    await a.connect();
    for (const text of ["m1", "m2", "m3"]) assert.equal((await a.send(channelId, text)).kind.case, "sendAck");

    // Swept within a second or two of the retention: all of bob's inbox but its newest entry.
    await waitFor(
      async () => (await bob.api.messages.syncInbox({ afterInboxSeq: 0n, limit: 100 })).expiredThrough === 2n,
      "bob's entries 1 and 2 expired",
      30_000,
      100,
    );

    // Alice's copies 1 and 2 go the same way; the sweeps are counted.
    await waitFor(async () => (await scrapeMetric(`${chatd.httpUrl}/metrics`, "chat_inbox_entries_expired_total")) === 4, "4 expired entries counted", 30_000, 100);

    // Bob's device connects for the first time (cursor 0).
    const b = new TestDevice(chatd.wsUrl, bob.devices[0]!.token);
    devices.push(b);
    await b.connect();
    const first = await waitFor(() => b.frames.find((f) => f.kind.case === "syncBatch"), "bob's catch-up");
    assert.ok(first.kind.case === "syncBatch");
    assert.equal(first.kind.value.expiredThrough, 2n);
    assert.deepEqual(first.kind.value.entries.map((e) => [e.inboxSeq, e.message?.text]), [[3n, "m3"]]);

    // Seqs go on from the newest entry kept.
    assert.equal((await a.send(channelId, "m4")).kind.case, "sendAck");
    await waitFor(() => b.entries.some((e) => e.message?.text === "m4"), "m4 live");
    assert.equal(b.entries.find((e) => e.message?.text === "m4")!.inboxSeq, 4n);

    // History is not the inbox: every message is there.
    const page = await bob.api.messages.listMessages({ channelId, anchorSeq: 0n, direction: PageDirection.FORWARD, limit: 10 });
    assert.deepEqual(page.messages.map((m) => m.text), ["m1", "m2", "m3", "m4"]);
  });
});
