import { strict as assert } from "node:assert";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite } from "./chat-harness.js";
import { FakeEvent, ScriptedSocket, settle } from "./fake-browser.js";

// The browser says it went offline. Closing the socket starts its closing
// handshake, which a network that is gone never answers: the browser tells
// the page it closed only when that times out (a minute in Chromium). The
// scripted socket's close() never tells it, as such a network does.
describe("web: the browser going offline and back online", () => {
  const { browser, start } = appSuite();
  const tell = (type: "offline" | "online") => (window as unknown as { dispatchEvent(ev: FakeEvent): boolean }).dispatchEvent(new FakeEvent(type));
  const connection = () => browser.root.querySelector("[data-testid=connection]")!.getAttribute("data-state");

  it("shows the page offline at once, and connects again as soon as it is back online", async () => {
    const server = new FakeServer();
    server.addChat(95n, {}, 1);
    const r = await start(server);
    assert.equal(connection(), "open");
    const before = ScriptedSocket.all.length;

    tell("offline");
    await settle();
    assert.notEqual(connection(), "open", "still shown online, its sends going to a socket that is closing");

    tell("online");
    await waitFor(() => ScriptedSocket.all.length > before, "a new socket once back online");
    r.welcome();
    await waitFor(() => connection() === "open", "online again");
  });
});
