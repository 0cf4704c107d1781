import assert from "node:assert/strict";
import { waitFor } from "../../test/support/wait.js";
import type { Id, StoredMessage } from "../model/types.js";
import { encodeNotificationChange, encodeNotificationRequested } from "./records.js";
import { heldPushHarness } from "./testing.js";

/** A delete, or a reaction taken back, while the push it withdraws collapses or waits to retry (a loopback Web Push service). */
describe("Notifier withdrawals (deletes, reactions taken back)", function () {
  this.timeout(30_000);
  const h = heldPushHarness("notifier-withdrawal");
  const { register, publish, notify, startNotifier } = h;

  /** A change of `channelId` withdrawing what names `targetSeq`: a delete unless `extra` says otherwise. */
  async function withdraw(userId: Id, channelId: Id, targetSeq: bigint, extra: Partial<StoredMessage> = { deleted: true }): Promise<void> {
    const withdrawal = h.change(channelId, targetSeq, extra);
    await publish(userId, encodeNotificationChange({ userId, withdrawal }));
  }

  it("pushes nothing for a message deleted, or a reaction taken back, within its collapse window, and the rest of a window without the deleted one", async () => {
    const sub = h.receiver.subscribe();
    await register(1n, 10n, sub);
    // Long enough that each record below is read well before its window closes.
    await startNotifier({ collapseWindowMs: 1_500 });
    const oops = await notify(1n, 500n, "oops, wrong chat");
    await withdraw(1n, 500n, oops);
    await notify(1n, 600n, "first");
    const second = await notify(1n, 600n, "second, which I take back");
    await withdraw(1n, 600n, second);
    await notify(1n, 700n, "👍", { seq: 0n, targetSeq: 12n, reaction: true });
    await withdraw(1n, 700n, 12n, { reaction: true });
    // Nothing at all for a chat the user has nothing pending in, nor anyone else's.
    await withdraw(1n, 800n, 1n);
    await withdraw(2n, 600n, 1n);
    await waitFor(() => h.receiver.deliveredTo(sub).length >= 1, "the push of what is left");
    await h.notifier!.idle();
    const pushes = h.receiver.pushesTo(sub);
    assert.deepEqual(
      pushes.map((p) => [p.topic, p.json!.body, p.json!.count, p.json!.seq]),
      [["c600", "first", "1", String(second - 1n)]],
      "one push, of the message left, counted alone",
    );
    assert.deepEqual(h.skips, ["deleted", "deleted"], "the two windows left with nothing");

    // A record of the deleted message that comes again (a batch published again) is not pushed either.
    await publish(
      1n,
      encodeNotificationRequested({
        userId: 1n,
        senderName: "Bob",
        channelTitle: "",
        message: { messageId: 1000n + oops, channelId: 500n, seq: oops, senderUserId: 77n, senderDeviceId: 1n, clientMsgId: `c${oops}`, text: "oops, wrong chat", sentAtMs: Date.now() },
      }),
    );
    await notify(1n, 900n, "marker");
    await waitFor(() => h.receiver.deliveredTo(sub).length === 2, "the marker's push");
    await h.notifier!.idle();
    assert.deepEqual(h.receiver.pushesTo(sub).map((p) => p.json!.body), ["first", "marker"]);
  });

  it("gives up a retry waiting for its backoff when its message is deleted, at the delete", async () => {
    const sub = h.receiver.subscribe({ kind: "failFirst", times: 1, status: 503 });
    await register(1n, 10n, sub);
    // A retry far off: given up at the delete, not when its backoff ends.
    await startNotifier({ collapseWindowMs: 50, backoffBaseMs: 20_000, backoffMaxMs: 20_000 });
    const only = await notify(1n, 500n, "only");
    await waitFor(() => h.results.length === 1, "the first try");
    assert.equal(h.results[0]!.action, "retry");
    await withdraw(1n, 500n, only);
    await waitFor(() => h.notifier!.pending === 0, "the retry given up");
    assert.deepEqual(h.skips, ["deleted"]);
    assert.equal(h.receiver.pushesTo(sub).length, 1, "only the failed first try");
  });

  it("retries a collapsed push with what a delete left of it: the count and the preview of the rest", async () => {
    const sub = h.receiver.subscribe({ kind: "failFirst", times: 1, status: 503 });
    await register(1n, 10n, sub);
    // The retry 1.5 to 3 s after the first try: the delete, read at once, comes before it.
    await startNotifier({ collapseWindowMs: 300, backoffBaseMs: 3_000, backoffMaxMs: 3_000 });
    await notify(1n, 500n, "kept");
    const later = await notify(1n, 500n, "deleted later");
    await waitFor(() => h.results.length === 1, "the first try");
    assert.equal(h.results[0]!.action, "retry");
    assert.equal(h.receiver.pushesTo(sub)[0]!.json!.body, "2 new messages, the latest: deleted later");
    await withdraw(1n, 500n, later);
    await waitFor(() => h.receiver.deliveredTo(sub).length === 1, "the retry");
    await h.notifier!.idle();
    const json = h.receiver.deliveredTo(sub)[0]!.json!;
    assert.deepEqual([json.body, json.count, json.seq], ["kept", "1", String(later - 1n)]);
    assert.equal(h.receiver.pushesTo(sub).length, 2);
  });
});
