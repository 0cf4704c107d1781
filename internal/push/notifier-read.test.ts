import assert from "node:assert/strict";
import { waitFor } from "../../test/support/wait.js";
import type { Id } from "../model/types.js";
import { encodeNotificationRead } from "./records.js";
import { heldPushHarness } from "./testing.js";

/** A read mark that moved while the chat's push collapses or waits to retry (a loopback Web Push service). */
describe("Notifier read marks", function () {
  this.timeout(30_000);
  const h = heldPushHarness("notifier-read");
  const { register, publish, notify, startNotifier } = h;

  async function read(userId: Id, channelId: Id, seq: bigint): Promise<void> {
    await publish(userId, encodeNotificationRead({ userId, read: { channelId, seq } }));
  }

  it("pushes nothing for a chat read within its collapse window, and only what came after the read of one read in part", async () => {
    const sub = h.receiver.subscribe();
    await register(1n, 10n, sub);
    // Long enough that each record below is read well before its window closes.
    await startNotifier({ collapseWindowMs: 1_500 });
    const seen = await notify(1n, 500n, "read on the laptop");
    await read(1n, 500n, seen);
    await notify(1n, 600n, "first, read");
    const upTo = await notify(1n, 600n, "second, read");
    const after = await notify(1n, 600n, "third, not read yet");
    await read(1n, 600n, upTo);
    // A reaction has no seq of its own: a read says nothing of it.
    await notify(1n, 700n, "👍", { seq: 0n, targetSeq: 1n, reaction: true });
    await read(1n, 700n, 5n);
    // Nothing for a chat the user has nothing pending in, nor anyone else's.
    await read(1n, 800n, 100n);
    await read(2n, 600n, 100n);
    await waitFor(() => h.receiver.deliveredTo(sub).length >= 2, "the pushes of what is left");
    await h.notifier!.idle();
    const pushes = h.receiver.pushesTo(sub);
    assert.deepEqual(
      pushes.map((p) => [p.topic, p.json!.body, p.json!.count]).sort(),
      [
        ["c600", "third, not read yet", "1"],
        ["c700", "Reacted 👍 to your message", "1"],
      ].sort(),
      "the unread message counted alone, and the reaction",
    );
    assert.ok(pushes.every((p) => p.json!.body !== "read on the laptop"));
    assert.equal(after, upTo + 1n);
    assert.deepEqual(h.skips, ["read"], "the window left with nothing");
  });

  it("drops a request that comes after the read of its message, and keeps a newer mark against an older read", async () => {
    const sub = h.receiver.subscribe();
    await register(1n, 10n, sub);
    await startNotifier({ collapseWindowMs: 300 });
    // The read's producer is not ordered with the pipeline: its mark came first.
    await read(1n, 500n, 3n);
    // An older read, from a device behind, comes after: the mark stays at 3.
    await read(1n, 500n, 1n);
    for (const [i, text] of ["one", "two", "three", "four, after the read"].entries()) await notify(1n, 500n, text, { seq: BigInt(i + 1) });
    await waitFor(() => h.receiver.deliveredTo(sub).length === 1, "the unread message's push");
    await h.notifier!.idle();
    const pushes = h.receiver.pushesTo(sub);
    assert.deepEqual(pushes.map((p) => [p.json!.body, p.json!.count]), [["four, after the read", "1"]]);
    assert.deepEqual(h.skips, ["read", "read", "read"]);
  });

  it("gives up a retry waiting for its backoff when its chat is read, at the read", async () => {
    const sub = h.receiver.subscribe({ kind: "failFirst", times: 1, status: 503 });
    await register(1n, 10n, sub);
    // A retry far off: given up at the read, not when its backoff ends.
    await startNotifier({ collapseWindowMs: 50, backoffBaseMs: 20_000, backoffMaxMs: 20_000 });
    const only = await notify(1n, 500n, "only");
    await waitFor(() => h.results.length === 1, "the first try");
    assert.equal(h.results[0]!.action, "retry");
    await read(1n, 500n, only);
    await waitFor(() => h.notifier!.pending === 0, "the retry given up");
    assert.deepEqual(h.skips, ["read"]);
    assert.equal(h.receiver.pushesTo(sub).length, 1, "only the failed first try");
  });

  it("retries a collapsed push with what a read left of it", async () => {
    const sub = h.receiver.subscribe({ kind: "failFirst", times: 1, status: 503 });
    await register(1n, 10n, sub);
    await startNotifier({ collapseWindowMs: 300, backoffBaseMs: 3_000, backoffMaxMs: 3_000 });
    const first = await notify(1n, 500n, "read");
    await notify(1n, 500n, "not read");
    await waitFor(() => h.results.length === 1, "the first try");
    assert.equal(h.results[0]!.action, "retry");
    await read(1n, 500n, first);
    await waitFor(() => h.receiver.deliveredTo(sub).length === 1, "the retry");
    await h.notifier!.idle();
    const json = h.receiver.deliveredTo(sub)[0]!.json!;
    assert.deepEqual([json.body, json.count], ["not read", "1"]);
  });
});
