import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { startChatd } from "../../cmd/chatd/app.js";
import { loadChatdConfig } from "../../cmd/chatd/config.js";
import { ChatServer } from "../../internal/chatserver/server.js";
import type { Id } from "../../internal/model/types.js";
import { SqliteQueue } from "../../internal/queue/sqlite.js";
import { SqliteChannelStore } from "../../internal/storage/sqlite/channel-store.js";
import { signUp } from "../support/api.js";
import { removeDataDir } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { waitFor } from "../support/wait.js";

/**
 * chatd (in this process) stopping while a session's read receipt is being written: its stop closed
 * the sessions and went on to close the pipeline, the queue and chat.db without waiting for the
 * drain, and the receipt's write failed on a closed database (nothing writes it again).
 *
 * The write is held until the stop waits on what ChatServer.drain returned (Promise.all asks that
 * promise's `then`; a bare `await` would not, and this test would then wait out the drain's 5 s and
 * fail), so it needs no timing: a stop that never waits on it reaches the queue's close with the
 * write still held, which releases the write and is recorded as the failure.
 */
describe("chatd's stop: the work its sessions' last frames started", function () {
  this.timeout(60_000);

  it("waits for a read receipt being written before the queue and chat.db close", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "chatd-stop-frames-"));
    const config = loadChatdConfig({ CHAT_DATA_DIR: dataDir, CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0" });
    const advanceReadSeq = SqliteChannelStore.prototype.advanceReadSeq;
    const drain = ChatServer.prototype.drain;
    const queueClose = SqliteQueue.prototype.close;
    let armed = false;
    let release: (() => void) | undefined;
    const outcomes: string[] = [];
    const order: string[] = [];
    SqliteChannelStore.prototype.advanceReadSeq = async function (this: SqliteChannelStore, channelId: Id, userId: Id, seq: bigint) {
      if (armed) {
        armed = false;
        await new Promise<void>((resolve) => (release = resolve));
      }
      try {
        const advanced = await advanceReadSeq.call(this, channelId, userId, seq);
        outcomes.push(`stored ${advanced.readSeq}`);
        return advanced;
      } catch (err) {
        outcomes.push(`failed: ${(err as Error).message}`);
        throw err;
      }
    };
    ChatServer.prototype.drain = function (this: ChatServer, ...args: Parameters<typeof drain>) {
      const drained = drain.apply(this, args);
      const then = drained.then.bind(drained);
      // Asked by whoever waits on the drain: the held write goes on now.
      drained.then = ((...a: Parameters<typeof then>) => {
        order.push("the stop waits on the drain");
        release?.();
        return then(...a);
      }) as typeof drained.then;
      return drained;
    };
    SqliteQueue.prototype.close = function (this: SqliteQueue) {
      order.push(release && outcomes.length === 0 ? "queue closed with the receipt's write held" : "queue closed");
      release?.();
      return queueClose.call(this);
    };
    const chatd = await startChatd(config, pino({ level: "silent" }));
    let device: TestDevice | undefined;
    try {
      const user = await signUp(chatd.httpUrl);
      const { channel } = await user.api.channels.createGroup({ title: "stop", memberUserIds: [] });
      const channelId = channel!.channelId;
      await user.api.messages.sendMessage({ channelId, clientMsgId: "m1", text: "hi" });
      device = await new TestDevice(chatd.wsUrl, user.devices[0]!.token).connect();
      armed = true;
      device.sendFrame({ kind: { case: "read", value: { channelId, seq: 1n } } });
      await waitFor(() => release !== undefined, "the receipt's write started");
      await chatd.close();
      assert.deepStrictEqual(outcomes, ["stored 1"]);
      assert.deepStrictEqual(order.slice(0, 2), ["the stop waits on the drain", "queue closed"]);
    } finally {
      SqliteChannelStore.prototype.advanceReadSeq = advanceReadSeq;
      ChatServer.prototype.drain = drain;
      SqliteQueue.prototype.close = queueClose;
      release?.();
      await device?.close();
      await chatd.close();
      removeDataDir(dataDir);
    }
  });
});
