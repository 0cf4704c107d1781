import { strict as assert } from "node:assert";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite, type Running } from "./chat-harness.js";
import { FakeEvent, settle } from "./fake-browser.js";

// Read receipts of a busy open chat: one per live message went past the
// server's frame rate for a connection (50/s) and was refused; a receipt
// covers every message before it, so they are coalesced, the last never lost.
describe("web: read receipts of a busy chat", () => {
  const { browser, start } = appSuite();

  /** The seqs this tab sent read receipts for in chat `channelId`, on the socket or with MarkRead, in order. */
  const receipts = (r: Running, channelId: bigint) => [
    ...r.socket().frames().flatMap((f) => (f.kind.case === "read" && f.kind.value.channelId === channelId ? [f.kind.value.seq] : [])),
    ...r.server.calls.filter((c) => c.method === "markRead" && c.req.channelId === channelId).map((c) => c.req.seq as bigint),
  ];
  const setVisible = (visible: boolean) => {
    const doc = (globalThis as unknown as { document: { visibilityState: string; dispatchEvent(ev: FakeEvent): boolean } }).document;
    doc.visibilityState = visible ? "visible" : "hidden";
    doc.dispatchEvent(new FakeEvent("visibilitychange"));
  };
  afterEach(() => setVisible(true));
  /** Whether no chat's receipt window is open: the next read goes at once. */
  const windowsOver = (r: Running) => (r.app as unknown as { receipts: { readWindows: Map<string, unknown> } }).receipts.readWindows.size === 0;

  /** The app, with chat `channelId` (3 messages, all read) open and at its bottom. */
  async function openChat(channelId: bigint): Promise<Running> {
    const server = new FakeServer();
    server.addChat(channelId, {}, 3);
    server.addChat(channelId + 1n, {}, 1);
    const r = await start(server);
    r.scroller().clientHeight = 400;
    browser.go(`#/c/${channelId}`);
    await waitFor(() => r.shownSeqs().length === 3, "the chat open");
    await settle();
    assert.deepEqual(receipts(r, channelId), [], "a receipt for what was read already");
    return r;
  }

  it("sends a few receipts for a burst of live messages, the last for the newest", async () => {
    const r = await openChat(90n);
    r.deliver(...Array.from({ length: 100 }, (_, i) => r.server.post(90n, `burst ${i}`)));
    await waitFor(() => r.shownSeqs().at(-1) === 103n, "the burst shown");
    await waitFor(() => receipts(r, 90n).at(-1) === 103n, "the receipt of the newest", 5_000);
    const sent = receipts(r, 90n);
    assert.ok(sent.length <= 3, `${sent.length} receipts for a burst of 100: ${sent.join(", ")}`);
    // No more after it: the window closes with nothing held.
    await waitFor(() => windowsOver(r), "the receipt window over", 5_000);
    assert.deepEqual(receipts(r, 90n), sent);
  });

  it("sends the receipt held back at once when the page is hidden or the chat is left", async () => {
    const r = await openChat(92n);
    r.deliver(r.server.post(92n), r.server.post(92n));
    await waitFor(() => receipts(r, 92n).length === 1, "the first receipt");
    await waitFor(() => r.shownSeqs().at(-1) === 5n, "both shown");
    await settle();
    assert.deepEqual(receipts(r, 92n), [4n], "the second held back for the window's end");
    setVisible(false);
    assert.deepEqual(receipts(r, 92n), [4n, 5n], "the held receipt waited though the page was hidden");

    setVisible(true);
    await waitFor(() => windowsOver(r), "the receipt window over", 5_000);
    r.deliver(r.server.post(92n), r.server.post(92n));
    await waitFor(() => r.shownSeqs().at(-1) === 7n, "two more shown");
    await settle();
    assert.deepEqual(receipts(r, 92n), [4n, 5n, 6n]);
    browser.go("#/c/93");
    await waitFor(() => receipts(r, 92n).length === 4, "the held receipt sent on leaving", 200);
    assert.deepEqual(receipts(r, 92n), [4n, 5n, 6n, 7n]);
  });
});
