import { strict as assert } from "node:assert";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite } from "./chat-harness.js";
import { FakeEvent, settle } from "./fake-browser.js";

// Reading while the connection is down: neither the socket nor MarkRead
// reaches the server, and what was read is told once it is back.
describe("web: a chat read while offline", () => {
  const { browser, start } = appSuite();

  const setVisible = (visible: boolean) => {
    const doc = (globalThis as unknown as { document: { visibilityState: string; dispatchEvent(ev: FakeEvent): boolean } }).document;
    doc.visibilityState = visible ? "visible" : "hidden";
    doc.dispatchEvent(new FakeEvent("visibilitychange"));
  };

  it("tells the server what was read once the connection is back", async () => {
    const server = new FakeServer();
    server.addChat(82n, {}, 3);
    const r = await start(server);
    r.scroller().clientHeight = 400;
    browser.go("#/c/82");
    await waitFor(() => r.shownSeqs().length === 3, "the chat open");

    // The tab is in the background when two messages come; then the connection drops.
    setVisible(false);
    r.deliver(server.post(82n, "while away 1"), server.post(82n, "while away 2"));
    await waitFor(() => r.shownSeqs().length === 5, "the messages shown");
    const unfail = server.fail("markRead");
    await r.reconnect(false);
    // The reader comes back to the tab, offline: both ways of telling the read fail.
    setVisible(true);
    await waitFor(() => server.count("markRead") === 1, "MarkRead tried");
    await settle();

    unfail();
    const back = server.calls.length;
    r.welcome();
    await settle();
    const told = [
      ...r.socket().frames().flatMap((f) => (f.kind.case === "read" && f.kind.value.channelId === 82n ? [f.kind.value.seq] : [])),
      ...server.calls.slice(back).flatMap((c) => (c.method === "markRead" ? [c.req.seq as bigint] : [])),
    ];
    assert.ok(told.includes(5n), `the read of 5 never reached the server (told: ${told.join(", ")})`);
  });
});
