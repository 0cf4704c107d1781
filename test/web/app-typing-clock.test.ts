import { strict as assert } from "node:assert";
import { waitFor } from "../support/wait.js";
import { FakeServer, PEER, appSuite } from "./chat-harness.js";
import { FakeEvent, settle } from "./fake-browser.js";

// Typing is timed in seconds on this browser alone: a device clock stepped
// back (NTP, a laptop waking) must neither keep "typing…" shown nor keep
// this user's own typing from being sent for the length of the step.
describe("web: typing, with this browser's clock stepped back an hour", () => {
  // Typing is shown for 6 s and sent again after 3 s of the page's time, which runs ten times faster here.
  const { browser, start } = appSuite({ speed: 10 });
  const realNow = Date.now;
  /** Steps Date.now back an hour from here on (restored after each test). */
  const stepBack = () => {
    Date.now = () => realNow() - 3_600_000;
  };
  afterEach(() => {
    Date.now = realNow;
  });

  it("stops showing a peer typing a few seconds after the last typing event, not an hour later", async () => {
    const server = new FakeServer();
    server.addChat(61n, {}, 2);
    const r = await start(server);
    r.socket().push({ kind: { case: "typing", value: { channelId: 61n, userId: PEER } } });
    await waitFor(() => r.rows().find((row) => row.id === "61")?.last === "typing…", "the peer shown typing");
    stepBack();
    await waitFor(() => r.rows().find((row) => row.id === "61")?.last !== "typing…", "the peer no longer shown typing", 15_000);
  });

  it("sends typing again a few seconds later while this user goes on typing", async () => {
    const server = new FakeServer();
    server.addChat(62n, {}, 2);
    const r = await start(server);
    r.scroller().clientHeight = 400;
    browser.go("#/c/62");
    await waitFor(() => r.shownSeqs().length === 2, "the chat open");
    const composer = browser.root.querySelector("[data-testid=composer]")!;
    const typings = () => r.socket().frames().filter((f) => f.kind.case === "typing").length;
    const type = (text: string) => {
      composer.value = text;
      composer.dispatchEvent(new FakeEvent("input"));
    };
    type("h");
    await settle();
    assert.equal(typings(), 1, "typing sent");
    stepBack();
    let text = "h";
    await waitFor(() => {
      type((text += "i"));
      return typings() === 2;
    }, "typing sent again as the user goes on", 15_000, 100);
  });
});
