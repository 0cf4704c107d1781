import { strict as assert } from "node:assert";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite } from "./chat-harness.js";

// The tab's title counts what calls for attention: unread in the chat list,
// not in the archive, and not in a muted chat, whose badge is quieted too.
describe("web: the unread count in the tab's title", () => {
  const { browser, start } = appSuite();
  const title = () => (globalThis as unknown as { document: { title: string } }).document.title;

  it("counts unread chats in the list, leaving out muted and archived ones", async () => {
    const server = new FakeServer();
    server.addChat(60n, { unreadCount: 2n, readSeq: 1n }, 3);
    server.addChat(61n, { unreadCount: 5n, readSeq: 0n, mutedUntil: timestampFromMs(Date.now() + 3_600_000) }, 5);
    server.addChat(62n, { unreadCount: 1n, readSeq: 0n, archived: true }, 1);
    await start(server);
    await waitFor(() => title() === "(2) Chat", `the title (${title()})`);
    assert.ok(browser.root.querySelector("[data-testid=channel-muted]"), "the muted chat is listed, quieted");
  });
});
