import { strict as assert } from "node:assert";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { MessageSchema } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, ME, PEER, appSuite, message, type Running } from "./chat-harness.js";
import { FakeEvent, settle, type FakeElement } from "./fake-browser.js";

// Every change to the open chat (a message, a receipt, a reaction) rebuilt
// every message on screen: three long ones stalled Chromium up to 235 ms a
// redraw, a long history redrew hundreds of nodes for each receipt. A message
// keeps its element until it changes, and paging in history moves the rest.
describe("web: the open chat keeps each message's element between redraws", () => {
  const { browser, start } = appSuite();

  const el = (r: Running, seq: bigint) => r.browser.root.querySelector(`[data-testid=message][data-seq="${seq}"]`);
  const elements = (r: Running) => new Map(r.shownSeqs().map((seq) => [seq, el(r, seq)!]));
  const text = (r: Running, seq: bigint) => el(r, seq)?.querySelector("[data-testid=message-text]")?.textContent;
  const change = (channelId: bigint, seq: bigint, id: bigint, fields: MessageInitShape<typeof MessageSchema>) =>
    create(MessageSchema, { channelId, targetSeq: seq, messageId: channelId * 1_000_000n + id, senderUserId: PEER, senderDeviceId: 22n, sentAt: timestampFromMs(Date.now()), ...fields });

  /** Asserts the messages `seqs` are shown by the very elements `before` had for them. */
  function assertKept(r: Running, before: Map<bigint, FakeElement>, seqs: bigint[], why: string): void {
    for (const seq of seqs) assert.equal(el(r, seq), before.get(seq), `message ${seq} was built anew ${why}`);
  }

  async function openChat(r: Running, channelId: bigint, count: number): Promise<void> {
    r.scroller().clientHeight = 400;
    browser.go(`#/c/${channelId}`);
    await waitFor(() => r.shownSeqs().length === count, "the chat open");
    await settle();
  }

  it("rebuilds only the message a receipt, a reaction or an edit changed, and none for a new message", async () => {
    const server = new FakeServer();
    server.addChat(60n, {}, 4);
    server.history.get("60")!.push(message(60n, 5n, "mine", ME));
    const r = await start(server);
    await openChat(r, 60n, 5);
    const ticks = () => el(r, 5n)?.querySelector(".ticks")?.textContent;
    assert.equal(ticks(), "✓");
    const first = elements(r);

    r.socket().push({ kind: { case: "receipt", value: { channelId: 60n, userId: PEER, seq: 5n } } });
    await waitFor(() => ticks() === "✓✓", "my message seen");
    assertKept(r, first, [1n, 2n, 3n, 4n], "for a receipt of another");

    const afterReceipt = elements(r);
    r.deliver(server.post(60n, "a new one"));
    await waitFor(() => r.shownSeqs().length === 6, "the new message");
    assertKept(r, afterReceipt, [1n, 2n, 3n, 4n, 5n], "for a new message below it");

    r.deliver(change(60n, 2n, 100n, { text: "👍", reaction: true }));
    await waitFor(() => el(r, 2n)?.querySelector("[data-testid=reaction]")?.getAttribute("data-emoji") === "👍", "the reaction shown");
    r.deliver(change(60n, 3n, 101n, { text: "edited", editedAt: timestampFromMs(Date.now()) }));
    await waitFor(() => text(r, 3n) === "edited", "the edit shown");
    assert.ok(el(r, 3n)?.querySelector("[data-testid=message-edited]"), "marked edited");
    assertKept(r, afterReceipt, [1n, 4n, 5n], "for a change to another");
  });

  it("keeps an element's buttons acting on the message as it now is, however many redraws it was kept over", async () => {
    const server = new FakeServer();
    server.addChat(61n, {}, 3);
    const r = await start(server);
    await openChat(r, 61n, 3);
    const kept = el(r, 1n)!;
    for (let i = 0; i < 3; i++) r.deliver(server.post(61n));
    await waitFor(() => r.shownSeqs().length === 6, "three more");
    assert.equal(el(r, 1n), kept);

    kept.querySelector("[data-testid=reply-message]")!.click();
    assert.equal(r.browser.root.querySelector("[data-testid=reply-bar]")?.hidden, false, "the reply bar open");
    assert.match(r.browser.root.querySelector("[data-testid=reply-preview]")?.textContent ?? "", /message 1/);

    el(r, 2n)!.querySelector("[data-testid=react-message]")!.click();
    const option = el(r, 2n)!.querySelector("[data-testid=reaction-option]");
    assert.ok(option, "the palette open on message 2");
    option.click();
    const f = r.socket().frames().filter((x) => x.kind.case === "send").at(-1);
    assert.ok(f && f.kind.case === "send" && f.kind.value.reactSeq === 2n, "the reaction sent for message 2");
  });

  it("moves the messages below a page of older history rather than building them again, and the reader stays where they were", async () => {
    const server = new FakeServer();
    server.addChat(62n, {}, 60);
    const r = await start(server);
    await openChat(r, 62n, 50);
    const before = elements(r);
    const sc = r.scroller();
    sc.scrollTop = 0;
    const fromBottom = sc.scrollHeight - sc.scrollTop;
    sc.dispatchEvent(new FakeEvent("scroll"));
    await waitFor(() => r.shownSeqs().length === 60, "the older page");
    await settle();
    // Message 11 was the first of its run and is now one more of the run above: it alone changes.
    assert.ok(el(r, 11n)?.classList.contains("cont"), "message 11 grouped with the page above it");
    assertKept(r, before, Array.from({ length: 49 }, (_, i) => BigInt(i + 12)), "when older history came above it");
    assert.equal(sc.scrollHeight - sc.scrollTop, fromBottom, "what the reader saw moved on screen");
  });

  it("shows another chat's messages, not the elements of the same seqs in the chat left", async () => {
    const server = new FakeServer();
    server.addChat(63n, {}, 2);
    server.addChat(64n, {}, 0);
    server.post(64n, "message 1");
    server.post(64n, "in chat 64");
    const r = await start(server);
    await openChat(r, 63n, 2);
    const was = el(r, 1n);
    browser.go("#/c/64");
    await waitFor(() => text(r, 2n) === "in chat 64", "chat 64 open");
    assert.notEqual(el(r, 1n), was, "chat 63's element shown in chat 64");
  });
});
