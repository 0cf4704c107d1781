import { strict as assert } from "node:assert";
import { waitFor } from "../support/wait.js";
import { FakeServer, PEER, appSuite } from "./chat-harness.js";

// Who is typing shows in that chat's row alone: the whole chat list was built
// again (and compared row by row) at every typing event of every chat, and
// again as each one ran out, a few times a second with a few people typing.
describe("web: typing in one chat of many", () => {
  const { browser, start } = appSuite({ speed: 10 });

  it("draws that chat's row again, not the whole list, as typing shows and as it ends", async () => {
    const server = new FakeServer();
    for (let i = 0; i < 60; i++) server.addChat(BigInt(100 + i), {}, 1);
    const r = await start(server);
    await waitFor(() => r.rows().length === 60, "every chat listed");
    const last = (id: string) => r.rows().find((row) => row.id === id)?.last;
    const before = browser.document.created;
    r.socket().push({ kind: { case: "typing", value: { channelId: 130n, userId: PEER } } });
    await waitFor(() => last("130") === "typing…", "the peer shown typing");
    const shown = browser.document.created - before;
    await waitFor(() => last("130") !== "typing…", "typing no longer shown", 15_000);
    const ended = browser.document.created - before - shown;
    // One row is a dozen elements or so; the list was 60 of them.
    assert.ok(shown < 60, `${shown} elements made to show typing in one row`);
    assert.ok(ended < 60, `${ended} elements made as typing ended`);
  });
});
