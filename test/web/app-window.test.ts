import { strict as assert } from "node:assert";
import { PageDirection } from "../../gen/es/chat/v1/messages_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite, type Running } from "./chat-harness.js";
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
});
