import { strict as assert } from "node:assert";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite } from "./chat-harness.js";
import { settle } from "./fake-browser.js";

// A chat the list does not have yet (a notification's, or one just joined)
// is asked for before it opens; the person may open another meanwhile.
describe("web: opening a chat the list does not have yet", () => {
  const { browser, start } = appSuite();

  it("does not open it over the chat opened while it was asked for", async () => {
    const server = new FakeServer();
    server.addChat(80n, {}, 3);
    const r = await start(server);
    r.scroller().clientHeight = 400;
    server.addChat(81n, {}, 5);
    const release = server.hold("describeChannel");
    browser.go("#/c/81");
    await waitFor(() => server.count("describeChannel") === 1, "the unknown chat asked for");
    browser.go("#/c/80");
    await waitFor(() => r.shownSeqs().length === 3, "the other chat open");

    release();
    await settle();
    await waitFor(() => server.count("listMessages") >= 1, "the first page read");
    await settle();
    assert.equal((globalThis as unknown as { location: Location }).location.hash, "#/c/80");
    assert.equal(r.browser.root.querySelector("[data-testid=chat-title]")?.textContent, "Chat 80", "the chat asked for first opened over the one opened since");
    assert.deepEqual(r.shownSeqs(), [1n, 2n, 3n]);
    // Known now: it is in the list, and opens when asked.
    assert.ok(r.rows().some((row) => row.id === "81"));
  });
});
