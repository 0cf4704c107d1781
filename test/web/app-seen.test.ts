import { strict as assert } from "node:assert";
import { create } from "@bufbuild/protobuf";
import { ChannelEventKind } from "../../gen/es/chat/v1/session_pb.js";
import { ChannelNoteKind, ChannelNoteSchema, MemberSchema, PresenceSchema, PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
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

  it("counts a member's own note (a rename) as their having seen up to it, as ListMembers does, but not a joiner's note of their join", async () => {
    const CAROL = 3n;
    const server = new FakeServer();
    server.addChat(82n, { memberCount: 3 }, 0);
    server.history.set("82", [message(82n, 1n, "mine", ME)]);
    server.members.set("82", [ME, PEER, CAROL].map((userId) => create(MemberSchema, { userId, readSeq: 0n })));
    run = await start(server);
    const r = run;
    browser.go("#/c/82");
    await waitFor(() => r.shownSeqs().length === 1, "the message");
    await settle();
    assert.equal(r.browser.root.querySelector("[data-testid=seen-by]"), null);
    const note = (seq: bigint, from: bigint, kind: ChannelNoteKind) =>
      Object.assign(message(82n, seq, "", from), { note: create(ChannelNoteSchema, { kind, title: "renamed" }) });
    // Carol's note of a join by link says nothing of what she read; the peer renaming the group has read it.
    r.deliver(note(2n, CAROL, ChannelNoteKind.JOINED_BY_INVITE));
    const notes = () => r.browser.root.querySelectorAll("[data-testid=note]").length;
    await waitFor(() => notes() === 1, "the join");
    await settle();
    assert.equal(r.browser.root.querySelector("[data-testid=seen-by]"), null);
    r.deliver(note(3n, PEER, ChannelNoteKind.TITLE_CHANGED));
    await waitFor(() => notes() === 2, "the rename");
    await settle();
    assert.match(r.browser.root.querySelector("[data-testid=seen-by]")?.textContent ?? "", /Seen by/);
    assert.doesNotMatch(r.browser.root.querySelector("[data-testid=seen-by]")?.textContent ?? "", /everyone|User 3/);
  });

  it("counts a member who joined while the group is open in Seen by and online", async () => {
    const CAROL = 3n;
    const server = new FakeServer();
    server.addChat(81n, { memberCount: 2 }, 0);
    server.history.set("81", [message(81n, 1n, "mine", ME)]);
    server.members.set("81", [ME, PEER].map((userId) => create(MemberSchema, { userId, readSeq: 0n })));
    run = await start(server);
    const r = run;
    browser.go("#/c/81");
    await waitFor(() => r.shownSeqs().length === 1, "the message");
    await settle();
    assert.equal(r.browser.root.querySelector("[data-testid=seen-by]"), null);

    // Carol is added, and is online; the channel event tells this device.
    server.channels.get("81")!.memberCount = 3;
    server.members.set("81", [ME, PEER, CAROL].map((userId) => create(MemberSchema, { userId, readSeq: 0n })));
    server.presence.set(String(CAROL), create(PresenceSchema, { userId: CAROL, status: PresenceStatus.ONLINE }));
    r.channelEvent(ChannelEventKind.JOINED, 81n, CAROL);
    await settle();
    assert.match(r.browser.root.querySelector("[data-testid=chat-status]")?.textContent ?? "", /3 members, 1 online/);

    // She reads my message.
    r.socket().push({ kind: { case: "receipt", value: { channelId: 81n, userId: CAROL, seq: 1n } } });
    await settle();
    assert.match(r.browser.root.querySelector("[data-testid=seen-by]")?.textContent ?? "", /Seen by User 3/);
  });
});
