import { strict as assert } from "node:assert";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { clock } from "../../web/src/format.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, ME, appSuite, message } from "./chat-harness.js";
import { FakeEvent } from "./fake-browser.js";

// A message taken by the server shows its time before its entry comes back:
// the server's time, as the messages around it show, not this browser's clock.
describe("web: the time of a message sent, with this browser's clock 20 minutes ahead of the server's", () => {
  const { browser, start } = appSuite();

  it("shows the server's time of day under a message the server took, not the browser's", async () => {
    const server = new FakeServer();
    server.addChat(52n, {}, 3);
    const r = await start(server);
    const serverNow = Date.now() - 20 * 60_000;
    const socket = await r.reconnect(false);
    socket.push({ kind: { case: "welcome", value: { userId: ME, deviceId: 11n, deviceCursor: r.inboxSeq, headInboxSeq: r.inboxSeq, heartbeatIntervalMs: 60_000, serverTime: timestampFromMs(serverNow) } } });
    r.scroller().clientHeight = 400;
    browser.go("#/c/52");
    await waitFor(() => r.shownSeqs().length === 3, "the chat open");
    browser.root.querySelector("[data-testid=composer]")!.value = "hello";
    browser.root.querySelector("form")!.dispatchEvent(new FakeEvent("submit"));
    const f = r.socket().frames().filter((x) => x.kind.case === "send").at(-1);
    assert.ok(f && f.kind.case === "send");
    r.socket().push({ kind: { case: "sendAck", value: { clientMsgId: f.kind.value.clientMsgId, channelId: 52n, messageId: 52_000_004n } } });
    const pending = await waitFor(() => {
      const p = browser.root.querySelector("[data-testid=pending-message]");
      return p?.dataset.state === "sent" && p;
    }, "the message shown as sent");
    const shown = pending.querySelector(".meta")!.textContent;
    assert.ok([clock(serverNow), clock(serverNow + 60_000)].some((t) => shown.includes(t)), `the server's time of day, not the browser's: ${shown}`);
  });

  it("says when an edit of mine not yet confirmed was made by the server's clock, not the browser's", async () => {
    const server = new FakeServer();
    server.addChat(53n, {}, 3);
    const mine = message(53n, 4n, "before the edit", ME);
    server.history.get("53")!.push(mine);
    Object.assign(server.channels.get("53")!, { lastSeq: 4n, readSeq: 4n, lastMessage: mine });
    const r = await start(server);
    const serverNow = Date.now() - 20 * 60_000;
    const socket = await r.reconnect(false);
    socket.push({ kind: { case: "welcome", value: { userId: ME, deviceId: 11n, deviceCursor: r.inboxSeq, headInboxSeq: r.inboxSeq, heartbeatIntervalMs: 60_000, serverTime: timestampFromMs(serverNow) } } });
    r.scroller().clientHeight = 400;
    browser.go("#/c/53");
    await waitFor(() => r.shownSeqs().length === 4, "the chat open");
    const shown = () => browser.root.querySelector('[data-testid=message][data-seq="4"]')!;
    shown().querySelector("[data-testid=edit-message]")!.click();
    browser.root.querySelector("[data-testid=composer]")!.value = "after the edit";
    browser.root.querySelector("form")!.dispatchEvent(new FakeEvent("submit"));
    const edited = await waitFor(() => shown().querySelector("[data-testid=message-edited]") ?? undefined, "the edit shown");
    const editedAt = Date.parse(edited.getAttribute("title")!.replace(/^Edited /, ""));
    assert.ok(Math.abs(editedAt - serverNow) < 60_000, `edited at the server's time, not the browser's: ${edited.getAttribute("title")}`);
  });
});
