import { strict as assert } from "node:assert";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite } from "./chat-harness.js";
import { settle } from "./fake-browser.js";

// Opening a chat marked unread takes the mark away on every device; opened
// offline, the server hears of it once the connection is back.
describe("web: a chat marked unread, opened while offline", () => {
  const { browser, start } = appSuite();

  it("takes the mark away on the server once the connection is back, and shows it read meanwhile", async () => {
    const server = new FakeServer();
    server.addChat(90n, { markedUnread: true }, 3);
    server.addChat(91n, {}, 1);
    const r = await start(server);
    const row = (id: bigint) => r.rows().find((x) => x.id === String(id));
    assert.equal(row(90n)?.marked, true, "shown marked at first");

    const unfail = server.fail("markUnread");
    await r.reconnect(false);
    browser.go("#/c/90");
    await waitFor(() => r.shownSeqs().length === 3, "the chat open");
    await waitFor(() => server.count("markUnread") === 1, "MarkUnread tried");
    await settle();
    assert.equal(server.channels.get("90")!.markedUnread, true, "the server did not hear of it");
    browser.go("#/c/91");
    await waitFor(() => r.shownSeqs().length === 1, "another chat open");
    assert.equal(row(90n)?.marked, false, "shown read: it was opened");

    unfail();
    r.welcome();
    await waitFor(() => server.channels.get("90")!.markedUnread === false, "the mark taken away on the server");
    await settle();
    assert.equal(row(90n)?.marked, false, "still shown read after the catch-up's chat list");
  });

  it("keeps a mark set again after the offline open", async () => {
    const server = new FakeServer();
    server.addChat(92n, { markedUnread: true }, 2);
    const r = await start(server);
    const unfail = server.fail("markUnread");
    await r.reconnect(false);
    browser.go("#/c/92");
    await waitFor(() => server.count("markUnread") === 1, "MarkUnread tried");
    await settle();
    unfail();
    r.welcome();
    await waitFor(() => server.channels.get("92")!.markedUnread === false, "the owed unmark told");

    // Marked again from the chat itself: the owed unmark is settled and does not come back.
    browser.go("#/c/92");
    await waitFor(() => r.shownSeqs().length === 2, "the chat open");
    (browser.root.querySelector("[data-testid=mark-unread]") as unknown as { click(): void }).click();
    await waitFor(() => server.channels.get("92")!.markedUnread === true, "marked again");
    await r.reconnect();
    await settle();
    assert.equal(server.channels.get("92")!.markedUnread, true, "the mark set again stays");
    assert.equal(r.rows().find((x) => x.id === "92")?.marked, true);
  });
});
