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

  it("says it is opening at once, instead of leaving the chat open before on screen while it is asked for", async () => {
    const server = new FakeServer();
    server.addChat(82n, {}, 3);
    const r = await start(server);
    r.scroller().clientHeight = 400;
    browser.go("#/c/82");
    await waitFor(() => r.shownSeqs().length === 3, "the first chat open");
    server.addChat(83n, {}, 2);
    const release = server.hold("describeChannel");
    browser.go("#/c/83");
    await waitFor(() => server.count("describeChannel") === 1, "the unknown chat asked for");
    await settle();

    const root = r.browser.root;
    assert.equal(root.querySelector("[data-testid=opening]")?.textContent, "Opening…", "no opening state while the chat is asked for");
    assert.equal(root.querySelector(".chat")?.hidden, true, "the chat opened before still on screen");
    assert.equal(root.querySelector("[data-testid=empty]")?.hidden, false);

    release();
    await waitFor(() => r.shownSeqs().length === 2, "the chat asked for open");
    assert.equal(root.querySelector("[data-testid=chat-title]")?.textContent, "Chat 83");
    assert.equal(root.querySelector("[data-testid=empty]")?.hidden, true);
  });

  it("goes back to no chat open when the chat asked for is not there", async () => {
    const server = new FakeServer();
    const r = await start(server);
    browser.go("#/c/84");
    await waitFor(() => server.count("describeChannel") === 1, "the unknown chat asked for");
    await waitFor(() => (globalThis as unknown as { location: Location }).location.hash === "", "the hash dropped");
    await settle();
    assert.equal(r.browser.root.querySelector("[data-testid=opening]"), null, "still opening a chat that is not there");
    assert.match(r.browser.root.querySelector("[data-testid=empty]")?.textContent ?? "", /No chat open/);
  });
});
