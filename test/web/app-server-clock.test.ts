import { strict as assert } from "node:assert";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { waitFor } from "../support/wait.js";
import { FakeServer, ME, appSuite, message, type Running } from "./chat-harness.js";

// Times shown against "now" (a mute's end, "Today", the chat list's time of
// day) are the server's times, so "now" is the server's too: this browser's
// clock may be off it by minutes or by a day.
describe("web: times against the server's clock, with this browser's clock off it", () => {
  const { browser, start } = appSuite();

  /** A session whose Welcome tells the server's time. */
  const welcomeAt = async (r: Running, serverNow: number) => {
    const socket = await r.reconnect(false);
    socket.push({ kind: { case: "welcome", value: { userId: ME, deviceId: 11n, deviceCursor: r.inboxSeq, headInboxSeq: r.inboxSeq, heartbeatIntervalMs: 60_000, serverTime: timestampFromMs(serverNow) } } });
  };

  it("shows a chat muted for ten more minutes as muted, with the browser's clock 20 minutes ahead", async () => {
    const server = new FakeServer();
    const serverNow = Date.now() - 20 * 60_000;
    server.addChat(50n, { mutedUntil: timestampFromMs(serverNow + 10 * 60_000) }, 1);
    const r = await start(server);
    await welcomeAt(r, serverNow);
    r.scroller().clientHeight = 400;
    browser.go("#/c/50");
    await waitFor(() => r.shownSeqs().length === 1, "the chat open");
    const mute = browser.root.querySelector("[data-testid=mute]")!;
    assert.equal(mute.textContent, "Unmute");
    assert.ok(browser.root.querySelector("[data-testid=channel-muted]"), "the list shows it muted");
  });

  it("says Today, and shows the time in the list, for a message of the server's today, with the browser's clock a day ahead", async () => {
    const server = new FakeServer();
    const serverNow = Date.now() - 86_400_000;
    const startOfServerDay = new Date(serverNow).setHours(0, 0, 0, 0);
    const c = server.addChat(51n, {}, 0);
    const m = message(51n, 1n);
    m.sentAt = timestampFromMs(Math.max(serverNow - 60_000, startOfServerDay));
    server.history.set("51", [m]);
    c.lastSeq = 1n;
    c.readSeq = 1n;
    c.lastMessage = m;
    const r = await start(server);
    await welcomeAt(r, serverNow);
    r.scroller().clientHeight = 400;
    browser.go("#/c/51");
    await waitFor(() => r.shownSeqs().length === 1, "the chat open");
    assert.equal(browser.root.querySelector(".day")?.textContent, "Today");
    assert.match(browser.root.querySelector(".channel-when")!.textContent, /\d:\d\d/, "a time of day, not a weekday");
  });
});

// A page left open overnight: nothing else may draw the chat list or the open chat again for hours.
describe("web: times in a page left open past midnight", () => {
  const { browser, start } = appSuite({ speed: 20 });
  const realNow = Date.now;
  afterEach(() => (Date.now = realNow));

  it("draws the chat's day line and the chat list's time again once the server's day is over", async () => {
    const midnight = new Date(realNow() + 86_400_000).setHours(0, 0, 0, 0);
    const server = new FakeServer();
    const c = server.addChat(52n, {}, 0);
    const m = message(52n, 1n);
    m.sentAt = timestampFromMs(midnight - 40_000);
    server.history.set("52", [m]);
    c.lastSeq = 1n;
    c.readSeq = 1n;
    c.lastMessage = m;
    const r = await start(server);
    const socket = await r.reconnect(false);
    socket.push({ kind: { case: "welcome", value: { userId: ME, deviceId: 11n, deviceCursor: r.inboxSeq, headInboxSeq: r.inboxSeq, heartbeatIntervalMs: 60_000, serverTime: timestampFromMs(midnight - 30_000) } } });
    r.scroller().clientHeight = 400;
    browser.go("#/c/52");
    await waitFor(() => r.shownSeqs().length === 1, "the chat open");
    const day = () => browser.root.querySelector(".day")?.textContent;
    const when = () => browser.root.querySelector(".channel-when")!.textContent;
    assert.equal(day(), "Today");
    assert.match(when(), /\d:\d\d/);

    // A minute on: the server's clock is past midnight.
    Date.now = () => realNow() + 60_000;
    await waitFor(() => day() === "Yesterday", `"Yesterday" on the day line (it says ${day()})`, 10_000);
    assert.doesNotMatch(when(), /\d:\d\d/, "yesterday's message is shown by its weekday in the list");
  });
});
