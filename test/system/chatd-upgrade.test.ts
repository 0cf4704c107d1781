import assert from "node:assert/strict";
import { join } from "node:path";
import { signUp } from "../support/api.js";
import { wholeHistory } from "../support/backup.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { waitFor } from "../support/wait.js";
import { QueueSubmitter } from "../../internal/chatserver/submitter.js";
import { Snowflake } from "../../internal/ids/snowflake.js";
import { Sequencer } from "../../internal/pipeline/sequencer.js";
import { ConsumerGroups, topicSpecs, Topics } from "../../internal/pipeline/topics.js";
import { SqliteQueue } from "../../internal/queue/sqlite.js";
import { openSqliteStorage } from "../../internal/storage/sqlite/index.js";

// Until 2026-11-28 chatd acked a send once it was in queue.db (QueueSubmitter),
// and its Sequencer and InboxWriter then stored it in chat.db. A data directory
// such a chatd left behind (killed, or stopped while its stages were behind)
// holds acked messages in queue.db alone.
describe("chatd on a data directory an older chatd left with its pipeline behind", function () {
  this.timeout(120_000);
  const started: ChatdProcess[] = [];
  const devices: TestDevice[] = [];
  after(async () => {
    for (const d of devices) await d.close();
    for (const c of started) await c.stop().catch(() => undefined);
    for (const c of started) removeDataDir(c.dataDir);
  });

  it("stores and delivers the sends that chatd had acked and not yet stored, once each and in order", async () => {
    const first = await startChatd();
    started.push(first);
    const [alice, bob] = [await signUp(first.httpUrl, "up"), await signUp(first.httpUrl, "up")];
    const dm = (await alice.api.channels.openDirect({ userId: bob.userId })).channel!.channelId;
    await first.stop();

    // What the older chatd did with three sends, its InboxWriter behind and then its Sequencer too.
    const storage = openSqliteStorage(join(first.dataDir, "chat.db"));
    const queue = new SqliteQueue({ path: join(first.dataDir, "queue.db") });
    await queue.ensureTopics(topicSpecs(8));
    const submitter = new QueueSubmitter({ queue, channels: storage.channels, log: storage.messages, ids: new Snowflake(0) });
    const sender = { userId: alice.userId, deviceId: alice.devices[0]!.deviceId };
    await submitter.submit(sender, { channelId: dm, clientMsgId: "old-1", text: "sequenced, not in the inboxes" });
    const sequencer = new Sequencer({ queue, log: storage.messages, channels: storage.channels });
    await sequencer.start();
    await waitFor(async () => (await queue.consumerLag(ConsumerGroups.sequencer, Topics.submitted)) === 0, "the first send sequenced");
    await sequencer.stop();
    await submitter.submit(sender, { channelId: dm, clientMsgId: "old-2", text: "acked, not sequenced" });
    await submitter.submit(sender, { channelId: dm, clientMsgId: "old-3", text: "acked too" });
    await queue.close();
    await storage.close();

    const upgraded = await startChatd({ dataDir: first.dataDir });
    started.push(upgraded);
    const b = await new TestDevice(upgraded.wsUrl, bob.devices[0]!.token).connect();
    devices.push(b);
    const texts = ["sequenced, not in the inboxes", "acked, not sequenced", "acked too"];
    await b.waitForMessages(3, "the three acked sends in bob's inbox");
    assert.deepEqual(b.messagesIn(dm).map((m) => [m.seq, m.text]), texts.map((t, i) => [BigInt(i + 1), t]));
    assert.deepEqual((await wholeHistory(upgraded.httpUrl, alice.devices[0]!.token, dm)).map((m) => m.text), texts);

    // A resend of one of them after the upgrade is the message stored, not a second one.
    const a = await new TestDevice(upgraded.wsUrl, alice.devices[0]!.token).connect();
    devices.push(a);
    assert.equal((await a.send(dm, "acked too", "old-3")).kind.case, "sendAck");
    assert.equal((await wholeHistory(upgraded.httpUrl, alice.devices[0]!.token, dm)).length, 3);
  });
});
