import assert from "node:assert/strict";
import type { TestSubscription } from "../../test/support/push-receiver.js";
import { waitFor } from "../../test/support/wait.js";
import type { Id } from "../model/types.js";
import { encodeNotificationChange } from "./records.js";
import { heldPushHarness } from "./testing.js";

/** An edit while the push of its message collapses or waits to retry (a loopback Web Push service). */
describe("Notifier edits of messages whose push is still held", function () {
  this.timeout(30_000);
  const h = heldPushHarness("notifier-edit");
  const { register, publish, notify, startNotifier } = h;

  /** An edit of `targetSeq` in `channelId` to `text`, told to `userId`'s notifier. */
  async function edit(userId: Id, channelId: Id, targetSeq: bigint, text: string): Promise<Uint8Array> {
    const change = h.change(channelId, targetSeq, { text });
    const record = encodeNotificationChange({ userId, edit: change });
    await publish(userId, record);
    return record;
  }

  it("pushes the edited text of a message edited within its collapse window, cut as any preview, and none to a no-preview device", async () => {
    const sub = h.receiver.subscribe();
    const hidden = h.receiver.subscribe();
    await register(1n, 10n, sub);
    await register(1n, 11n, hidden, true);
    // Long enough that each record below is read well before its window closes.
    await startNotifier({ collapseWindowMs: 1_500 });
    const typo = await notify(1n, 500n, "teh secret plan");
    const first = await edit(1n, 500n, typo, "the secret plan");
    await edit(1n, 500n, typo, "the secret plan!");
    // The first edit again (a batch published again): the newer stays.
    await publish(1n, first);
    // A flag across the preview's end: cut before it, not inside.
    const long = await notify(1n, 600n, "short");
    await edit(1n, 600n, long, `${"a".repeat(118)}\u{1F1EB}\u{1F1F7} and more`);
    // Nothing for a chat the user has nothing pending in, nor for anyone else's.
    await edit(1n, 700n, 1n, "edited");
    await edit(2n, 500n, typo, "not user 1's");
    await waitFor(() => h.receiver.deliveredTo(sub).length === 2 && h.receiver.deliveredTo(hidden).length === 2, "the pushes of both chats");
    await h.notifier!.idle();
    const bodies = (s: TestSubscription) => h.receiver.deliveredTo(s).map((p) => `${p.topic}: ${p.json!.body}`).sort();
    assert.deepEqual(bodies(sub), ["c500: the secret plan!", `c600: ${"a".repeat(118)}…`]);
    assert.deepEqual(bodies(hidden), ["c500: New message", "c600: New message"], "no preview, edited or not");
  });

  it("pushes a held message as a mention only while its edited text mentions the user", async () => {
    const sub = h.receiver.subscribe();
    await register(1n, 10n, sub);
    await startNotifier({ collapseWindowMs: 1_500 });
    const edited = async (channelId: Id, seq: bigint, text: string, mentioned?: boolean) =>
      publish(1n, encodeNotificationChange({ userId: 1n, edit: h.change(channelId, seq, { text }), ...(mentioned === undefined ? {} : { mentioned }) }));
    // 500: the mention edited out. 600: a mention edited in. 700: an edit by a pipeline built before it tells (the push stays as first said).
    const dropped = await notify(1n, 500n, "@alice look", {}, true);
    await edited(500n, dropped, "look", false);
    const added = await notify(1n, 600n, "look");
    await edited(600n, added, "@alice look", true);
    const older = await notify(1n, 700n, "@alice look", {}, true);
    await edited(700n, older, "look again");
    // 800: collapsed with a later message that mentions no one.
    const first = await notify(1n, 800n, "@alice one", {}, true);
    await notify(1n, 800n, "two");
    await edited(800n, first, "one", false);
    await waitFor(() => h.receiver.deliveredTo(sub).length === 4, "the pushes of the four chats");
    await h.notifier!.idle();
    const told = Object.fromEntries(h.receiver.deliveredTo(sub).map((p) => [p.topic, p.json!.mentioned ?? "false"]));
    assert.deepEqual(told, { c500: "false", c600: "true", c700: "true", c800: "false" });
  });

  it("does not retry through a mute a push whose mention was edited out while it waited for its backoff", async () => {
    const sub = h.receiver.subscribe({ kind: "failFirst", times: 1, status: 503 });
    await register(1n, 10n, sub);
    h.mutes.set("1:500", Date.now() + 3_600_000);
    await startNotifier({ collapseWindowMs: 100, backoffBaseMs: 2_000, backoffMaxMs: 2_000 });
    const seq = await notify(1n, 500n, "@alice look", {}, true);
    await waitFor(() => h.results.length === 1, "the first try, a mention through the mute");
    assert.equal(h.results[0]!.action, "retry");
    await publish(1n, encodeNotificationChange({ userId: 1n, edit: h.change(500n, seq, { text: "look" }), mentioned: false }));
    await waitFor(() => h.skips.includes("channel_muted") || h.receiver.deliveredTo(sub).length > 0, "the retry, or its skip");
    await h.notifier!.idle();
    assert.deepEqual([h.receiver.deliveredTo(sub).length, h.skips], [0, ["channel_muted"]]);
  });

  it("retries a push with the text of an edit that came while it waited for its backoff", async () => {
    const sub = h.receiver.subscribe({ kind: "failFirst", times: 1, status: 503 });
    await register(1n, 10n, sub);
    // The retry 1.5 to 3 s after the first try: the edit, read at once, comes before it.
    await startNotifier({ collapseWindowMs: 300, backoffBaseMs: 3_000, backoffMaxMs: 3_000 });
    await notify(1n, 500n, "kept");
    const later = await notify(1n, 500n, "see you at 5");
    await waitFor(() => h.results.length === 1, "the first try");
    assert.equal(h.results[0]!.action, "retry");
    assert.equal(h.receiver.pushesTo(sub)[0]!.json!.body, "2 new messages, the latest: see you at 5");
    await edit(1n, 500n, later, "see you at 6");
    await waitFor(() => h.receiver.deliveredTo(sub).length === 1, "the retry");
    await h.notifier!.idle();
    const json = h.receiver.deliveredTo(sub)[0]!.json!;
    assert.deepEqual([json.body, json.count, json.seq], ["2 new messages, the latest: see you at 6", "2", String(later)]);
    assert.equal(h.receiver.pushesTo(sub).length, 2);
  });
});
