import { strict as assert } from "node:assert";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite } from "./chat-harness.js";

// The device's cursor is kept in localStorage under its id: a device signed
// out must not leave it there, one key for every device ever signed in.
describe("web: the device's stored cursor", () => {
  const { start } = appSuite();

  it("goes when the server says the device was signed out", async () => {
    const server = new FakeServer();
    server.addChat(90n, {}, 1);
    const r = await start(server);
    r.deliver(server.post(90n, "hello"));
    await waitFor(() => localStorage.getItem("chat.cursor.11") === "1", "the cursor stored");
    r.socket().onclose!({ code: 4003, reason: "logged out" });
    assert.equal(localStorage.getItem("chat.cursor.11"), null, "the signed-out device's cursor left behind");
  });
});
