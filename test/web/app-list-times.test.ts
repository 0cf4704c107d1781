import { strict as assert } from "node:assert";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { shortWhen } from "../../web/src/format.js";
import { FakeServer, appSuite } from "./chat-harness.js";

// The time each row of the chat list shows is when the chat was last active,
// as its place in the list is.
describe("web: the chat list's times", () => {
  const { start } = appSuite();

  it("shows a chat whose history I cleared at its last activity, not at its creation, as it is placed", async () => {
    const server = new FakeServer();
    const day = 86_400_000;
    const created = Date.now() - 40 * day;
    const active = Date.now() - 60_000;
    // Cleared through its newest message: the listing has no last message, only when it was last active.
    server.addChat(90n, { createdAt: timestampFromMs(created), lastActivityAt: timestampFromMs(active), clearedThroughSeq: 3n }, 3);
    server.channels.get("90")!.lastMessage = undefined;
    server.addChat(91n, { createdAt: timestampFromMs(Date.now() - 10 * day) }, 0);
    const r = await start(server);

    assert.deepEqual(r.rows().map((row) => row.id), ["90", "91"], "placed by its last activity");
    const when = r.browser.root.querySelector('[data-testid=channel][data-channel-id="90"] .channel-when')!.textContent;
    assert.equal(when, shortWhen(active), `shown at ${when}, when it was created`);
  });
});
