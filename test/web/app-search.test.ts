import { strict as assert } from "node:assert";
import { create } from "@bufbuild/protobuf";
import { UserSchema } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, ME, PEER, appSuite } from "./chat-harness.js";
import { FakeEvent } from "./fake-browser.js";

// Finding people from the sidebar: the server's answer has me in it too, and
// the page leaves me out; a search for my own username then found "no one".
describe("web: finding people by username", () => {
  const { start } = appSuite();

  function answering(server: FakeServer): void {
    const handlers = (server as unknown as { handlers: Record<string, (req: Record<string, unknown>) => unknown> }).handlers;
    const people = [create(UserSchema, { userId: ME, username: "me" }), create(UserSchema, { userId: PEER, username: "peer" })];
    handlers.searchUsers = (req) => ({ users: people.filter((u) => u.username.startsWith(String(req.query).toLowerCase())) });
  }

  it("says a search for my own username is me, and that no one goes by a name nobody has", async () => {
    const server = new FakeServer();
    answering(server);
    const r = await start(server);
    const search = r.browser.root.querySelector("[data-testid=search]")!;
    const note = () => r.browser.root.querySelector("[data-testid=search-empty]")?.textContent ?? "";

    search.value = "@Me";
    search.dispatchEvent(new FakeEvent("input"));
    await waitFor(() => note(), "the search answered", 5_000);
    assert.match(note(), /That is you/);

    search.value = "nobody";
    search.dispatchEvent(new FakeEvent("input"));
    await waitFor(() => /nobody/.test(note()), "the second search answered", 5_000);
    assert.equal(note(), "No one goes by “nobody”.");
  });
});
