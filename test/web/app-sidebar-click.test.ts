import { strict as assert } from "node:assert";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { waitFor } from "../support/wait.js";
import { FakeServer, PEER, appSuite } from "./chat-harness.js";
import { press, settle } from "./fake-browser.js";

// The chat list is drawn again on every message, typing and presence: a row
// replaced between the press and the release of a click lost the click.
describe("web: a click on the chat list while it is drawn again", () => {
  const { start } = appSuite();

  it("opens the chat pressed, though its row changed and the list was drawn again before the release", async () => {
    const server = new FakeServer();
    server.addChat(60n, { lastActivityAt: timestampFromMs(Date.now()) }, 2);
    server.addChat(61n, { lastActivityAt: timestampFromMs(Date.now() - 60_000) }, 2);
    const r = await start(server);
    assert.deepEqual(r.rows().map((row) => row.id), ["60", "61"]);
    const row = r.browser.root.querySelector("[data-testid=channel][data-channel-id=\"61\"]")!;

    const click = press(row);
    // A message in the chat above (which stays on top) and someone typing in the one pressed.
    r.deliver(server.post(60n, "meanwhile"));
    r.socket().push({ kind: { case: "typing", value: { channelId: 61n, userId: PEER } } });
    await settle();
    assert.deepEqual(r.rows().map((row) => [row.id, row.last]), [["60", "User 2: meanwhile"], ["61", "typing…"]], "the list drawn again");
    click.release();

    await waitFor(() => r.browser.root.querySelector("[data-testid=chat-title]")?.textContent === "Chat 61", "the chat pressed open", 2_000);
  });
});
