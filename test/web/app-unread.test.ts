import { strict as assert } from "node:assert";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite, type Running } from "./chat-harness.js";
import { settle } from "./fake-browser.js";

// The unread count of the open chat: what is not read stays counted.
describe("web: unread of the open chat", () => {
  const { browser, start } = appSuite();
  let run: Running | undefined;

  const row = (r: Running, id: bigint) => r.rows().find((x) => x.id === String(id));

  it("counts a message that came while the reader was reading back, as the server does", async () => {
    const server = new FakeServer();
    server.addChat(40n, {}, 50);
    run = await start(server);
    const r = run;
    r.scroller().clientHeight = 400;
    browser.go("#/c/40");
    await waitFor(() => r.shownSeqs().length === 50, "the newest page");

    r.scroller().scrollTop = 300;
    r.deliver(server.post(40n));
    await settle();
    const reads = r.socket().frames().filter((f) => f.kind.case === "read").length;
    browser.go("#");
    await settle();

    assert.equal(server.channels.get("40")!.unreadCount, 1n, "the server counts it");
    assert.equal(r.socket().frames().filter((f) => f.kind.case === "read").length, reads, "no read sent");
    assert.equal(row(r, 40n)?.unread, "1");

    // Read once the reader is back at the bottom.
    browser.go("#/c/40");
    await waitFor(() => r.shownSeqs().length === 51, "the chat again");
    await settle();
    assert.equal(row(r, 40n)?.unread, "");
  });
});
