import { strict as assert } from "node:assert";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ChannelEventKind } from "../../gen/es/chat/v1/session_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite } from "./chat-harness.js";

// A press on the chat list lands on the row's button, never on what it holds
// (style.css): the 📌, 🔕 and marked-unread marks' own tooltips could never show.
describe("web: the chat list's marks", () => {
  const { start } = appSuite();

  it("names a row's marks in the row's title, the tooltip anywhere over it, and follows them over redraws", async () => {
    const server = new FakeServer();
    const hourAhead = timestampFromMs(Date.now() + 3_600_000);
    server.addChat(70n, { lastActivityAt: timestampFromMs(Date.now()), pinnedAt: timestampFromMs(Date.now() - 1000), mutedUntil: hourAhead, markedUnread: true }, 2);
    server.addChat(71n, { lastActivityAt: timestampFromMs(Date.now() - 60_000) }, 2);
    server.addChat(72n, { lastActivityAt: timestampFromMs(Date.now() - 120_000), mutedUntil: hourAhead, readSeq: 0n, unreadCount: 3n, markedUnread: true }, 3);
    const r = await start(server);
    const button = (id: bigint) => r.browser.root.querySelector(`[data-testid=channel][data-channel-id="${id}"]`)!;
    const title = (id: bigint) => button(id).getAttribute("title");

    assert.equal(title(70n), "Pinned · Notifications off · Marked unread");
    assert.equal(title(71n), null, "a row without marks has no tooltip");
    assert.equal(r.rows().find((row) => row.id === "72")?.unread, "3");
    assert.equal(title(72n), "Notifications off", "a count is shown, not the mark: nothing to name");
    for (const mark of ["channel-pinned", "channel-muted", "marked-unread"]) {
      assert.ok(button(70n).querySelector(`[data-testid=${mark}]`), `the ${mark} mark shown`);
    }

    // Unpinned and unmuted elsewhere: the row is kept and its title follows.
    const kept = button(70n);
    const c = server.channels.get("70")!;
    c.pinnedAt = undefined;
    c.mutedUntil = undefined;
    r.channelEvent(ChannelEventKind.UPDATED, 70n);
    await waitFor(() => title(70n) === "Marked unread", `the title after the unpin and unmute (${title(70n)})`, 2_000);
    assert.equal(button(70n), kept, "the row drawn anew");

    c.markedUnread = false;
    r.channelEvent(ChannelEventKind.UPDATED, 70n);
    await waitFor(() => title(70n) === null, `no title once it has no marks (${title(70n)})`, 2_000);
  });
});
