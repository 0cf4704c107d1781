import { strict as assert } from "node:assert";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import { MessageSchema } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, ME, PEER, appSuite, message, type Running } from "./chat-harness.js";
import { FakeEvent, settle } from "./fake-browser.js";

/** As app.ts's WINDOW: how many messages the open chat keeps while the reader is at its bottom. */
const WINDOW = 500;

// The open chat of a web client left open on a busy chat: what it holds
// stays bounded, and what it let go of comes back by paging up.
describe("web: the open chat's messages, bounded", () => {
  const { browser, start } = appSuite();
  let run: Running | undefined;

  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => BigInt(from + i));
  const older = (r: Running) => r.browser.root.querySelector("[data-testid=load-older]");
  const listCalls = (r: Running) => r.server.calls.filter((c) => c.method === "listMessages");
  const shown = (r: Running, seq: bigint) => r.browser.root.querySelector(`[data-testid=message][data-seq="${seq}"]`);
  const shownText = (r: Running, seq: bigint) => shown(r, seq)?.querySelector("[data-testid=message-text]")?.textContent;

  /** A change (edit, delete) to message `seq` of the chat, as its inbox entry has it. */
  const change = (channelId: bigint, seq: bigint, id: bigint, fields: MessageInitShape<typeof MessageSchema>) =>
    create(MessageSchema, { channelId, targetSeq: seq, messageId: channelId * 1_000_000n + id, senderUserId: PEER, senderDeviceId: 22n, sentAt: timestampFromMs(Date.now()), ...fields });

  /** Message `seq` is edited in history, and the edit arrives live. */
  function editLive(r: Running, channelId: bigint, seq: bigint, text: string): void {
    Object.assign(r.server.history.get(String(channelId))![Number(seq) - 1]!, { text, editedAt: timestampFromMs(Date.now()) });
    r.deliver(change(channelId, seq, 1000n + seq, { text }));
  }

  async function openChat(r: Running, channelId: bigint, shownCount: number): Promise<void> {
    r.scroller().clientHeight = 400;
    browser.go(`#/c/${channelId}`);
    await waitFor(() => r.shownSeqs().length === shownCount, "the newest page");
  }

  /** Scrolls to the top with ListMessages held: the older page is read now and answered when the returned function is called. */
  async function pageBackSlowly(r: Running): Promise<() => void> {
    const release = r.server.hold("listMessages");
    const asked = listCalls(r).length;
    r.scroller().scrollTop = 0;
    r.scroller().dispatchEvent(new FakeEvent("scroll"));
    await waitFor(() => listCalls(r).length > asked, "the older page asked");
    return release;
  }

  it("keeps the newest WINDOW while the reader is at the bottom, and reads the older ones again when they page back", async () => {
    const server = new FakeServer();
    server.addChat(70n, {}, 60);
    run = await start(server);
    const r = run;
    r.scroller().clientHeight = 400;
    browser.go("#/c/70");
    await waitFor(() => r.shownSeqs().length === 50, "the newest page");

    // Live traffic, in backlog pages and one by one, while the reader stays at the bottom.
    for (let i = 0; i < 10; i++) r.deliverPage(Array.from({ length: 100 }, () => server.post(70n)));
    for (let i = 0; i < 5; i++) r.deliver(server.post(70n));
    await settle();
    assert.deepEqual(r.shownSeqs(), range(1065 - WINDOW + 1, 1065), "the newest WINDOW messages, no more");
    assert.ok(older(r), "older messages can be loaded again");

    // Paging back reads the dropped ones from history again, from the oldest kept.
    const asked = listCalls(r).length;
    r.scroller().scrollTop = 0;
    r.scroller().dispatchEvent(new FakeEvent("scroll"));
    await waitFor(() => r.shownSeqs().length > WINDOW, "the older page");
    const page = listCalls(r)[asked]!.req;
    assert.equal(page.direction, PageDirection.BACKWARD);
    assert.equal(page.anchorSeq, BigInt(1065 - WINDOW + 1));
    assert.deepEqual(r.shownSeqs(), range(1065 - WINDOW - 49, 1065));

    // Reading back, nothing goes; back at the bottom, the oldest go again with the next message.
    r.deliver(server.post(70n));
    await settle();
    assert.equal(r.shownSeqs().length, WINDOW + 51, "a message taken from a reader reading back");
    r.scroller().scrollTop = r.scroller().scrollHeight;
    r.deliver(server.post(70n));
    await settle();
    assert.deepEqual(r.shownSeqs(), range(1067 - WINDOW + 1, 1067));
  });

  it("leaves a reader reading back where they are when a message of mine comes from my other device, and jumps to the bottom for one sent here", async () => {
    const server = new FakeServer();
    server.addChat(74n, {}, 60);
    run = await start(server);
    const r = run;
    await openChat(r, 74n, 50);
    const sc = r.scroller();
    sc.scrollTop = 200;
    const fromBottom = sc.scrollHeight - sc.scrollTop;

    r.deliver(Object.assign(server.post(74n, "from my phone"), { senderUserId: ME, senderDeviceId: 12n }));
    await waitFor(() => r.shownSeqs().includes(61n), "my phone's message");
    await settle();
    assert.equal(sc.scrollHeight - sc.scrollTop, fromBottom, "the page stays where the reader is");

    r.deliver(Object.assign(server.post(74n, "from here"), { senderUserId: ME, senderDeviceId: 11n }));
    await waitFor(() => r.shownSeqs().includes(62n), "this page's message");
    await settle();
    assert.equal(sc.scrollTop, sc.scrollHeight - sc.clientHeight, "at the bottom");
  });

  it("shows an edit of an older message that came live while the page with it was on its way", async () => {
    const server = new FakeServer();
    server.addChat(71n, {}, 60);
    run = await start(server);
    const r = run;
    await openChat(r, 71n, 50);

    const release = await pageBackSlowly(r);
    editLive(r, 71n, 5n, "edited 5");
    await settle();
    release();
    await waitFor(() => r.shownSeqs().length === 60, "the older page");
    await settle();

    assert.equal(shownText(r, 5n), "edited 5");
  });

  it("shows a delete of an older message that came live while the page with it was on its way", async () => {
    const server = new FakeServer();
    server.addChat(72n, {}, 60);
    run = await start(server);
    const r = run;
    await openChat(r, 72n, 50);

    const release = await pageBackSlowly(r);
    Object.assign(server.history.get("72")![4]!, { text: "", deleted: true });
    r.deliver(change(72n, 5n, 1005n, { deleted: true }));
    await settle();
    release();
    await waitFor(() => r.shownSeqs().length === 60, "the older page");
    await settle();

    assert.equal(shown(r, 5n)?.getAttribute("data-deleted"), "true");
  });

  it("shows an edit that came live while the history up to a clicked quote was on its way", async () => {
    const server = new FakeServer();
    server.addChat(73n, {}, 59);
    server.history.get("73")!.push(Object.assign(message(73n, 60n, "about five"), { replyToSeq: 5n }));
    run = await start(server);
    const r = run;
    await openChat(r, 73n, 50);
    const quote = () => r.browser.root.querySelector("[data-testid=message-quote]");
    await waitFor(() => quote()?.querySelector("[data-testid=quote-text]")?.textContent === "message 5", "the quote read");

    const release = server.hold("listMessages");
    const asked = listCalls(r).length;
    quote()!.click();
    await waitFor(() => listCalls(r).length > asked, "the history up to the quote asked");
    editLive(r, 73n, 5n, "edited 5");
    await settle();
    release();
    await waitFor(() => r.shownSeqs()[0]! <= 5n, "the history up to the quote");
    await settle();

    assert.equal(shownText(r, 5n), "edited 5");
  });

  it("leaves no gap when the window was trimmed while an older page was on its way", async () => {
    const server = new FakeServer();
    server.addChat(74n, {}, 60);
    run = await start(server);
    const r = run;
    await openChat(r, 74n, 50);
    for (let i = 0; i < 5; i++) r.deliverPage(Array.from({ length: 100 }, () => server.post(74n)));
    await settle();
    assert.deepEqual(r.shownSeqs(), range(61, 560));

    // The reader pages back; meanwhile a message of mine from another device takes them to the bottom, and the window on.
    const release = await pageBackSlowly(r);
    const history = server.history.get("74")!;
    const mine = message(74n, 561n, "from my phone", ME);
    history.push(mine);
    r.deliver(mine);
    await settle();
    release();
    await settle();

    const seqs = r.shownSeqs();
    assert.deepEqual(seqs, range(Number(seqs[0]), 561), "the messages shown, with no gap");
  });
});
