import { strict as assert } from "node:assert";
import { create } from "@bufbuild/protobuf";
import { MemberSchema } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, ME, PEER, message, appSuite, type Running } from "./chat-harness.js";
import { settle } from "./fake-browser.js";

// A group's "Seen by" under my newest message, when its members are read after its messages.
describe("web: seen marks of a group opened", () => {
  const { browser, start } = appSuite();
  let run: Running | undefined;

  it("shows who has seen my newest message when ListMembers answers after the messages", async () => {
    const server = new FakeServer();
    server.addChat(80n, { memberCount: 3 }, 0);
    const mine = message(80n, 1n, "mine", ME);
    server.history.set("80", [mine]);
    server.members.set("80", [ME, PEER, 3n].map((userId) => create(MemberSchema, { userId, readSeq: 1n })));
    const release = server.hold("listMembers");
    run = await start(server);
    const r = run;
    browser.go("#/c/80");
    await waitFor(() => r.shownSeqs().length === 1, "the message");
    release();
    await settle();
    const seen = r.browser.root.querySelector("[data-testid=seen-by]");
    assert.ok(seen, "Seen by shown");
    assert.match(seen.textContent ?? "", /everyone/i);
  });
});
