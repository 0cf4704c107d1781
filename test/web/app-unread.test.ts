import { strict as assert } from "node:assert";
import { create } from "@bufbuild/protobuf";
import { ChannelNoteKind, ChannelNoteSchema } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, ME, message, appSuite, type Running } from "./chat-harness.js";
import { settle } from "./fake-browser.js";

// The unread count of the open chat: what is not read stays counted.
describe("web: unread of the open chat", () => {
  const { browser, start } = appSuite();
  let run: Running | undefined;

  const row = (r: Running, id: bigint) => r.rows().find((x) => x.id === String(id));

  it("counts a message that came while the reader was reading back, as the server does", async () => {
    const server = new FakeServer();
    server.addChat(40n, {}, 50);
    run = await start(server);
    const r = run;
    r.scroller().clientHeight = 400;
    browser.go("#/c/40");
    await waitFor(() => r.shownSeqs().length === 50, "the newest page");

    r.scroller().scrollTop = 300;
    r.deliver(server.post(40n));
    await settle();
    const reads = r.socket().frames().filter((f) => f.kind.case === "read").length;
    browser.go("#");
    await settle();

    assert.equal(server.channels.get("40")!.unreadCount, 1n, "the server counts it");
    assert.equal(r.socket().frames().filter((f) => f.kind.case === "read").length, reads, "no read sent");
    assert.equal(row(r, 40n)?.unread, "1");

    // Read once the reader is back at the bottom.
    browser.go("#/c/40");
    await waitFor(() => r.shownSeqs().length === 51, "the chat again");
    await settle();
    assert.equal(row(r, 40n)?.unread, "");
  });

  it("counts the note of my own join by link or add, and what came before it, as read, as the server does", async () => {
    const server = new FakeServer();
    server.addChat(41n, {}, 2);
    server.addChat(42n, {}, 2);
    run = await start(server);
    const r = run;
    await waitFor(() => row(r, 41n) !== undefined && row(r, 42n) !== undefined, "the chats listed");
    // In the cluster the chat is listed before the note is stored: a message queued before the join lands first.
    r.deliver(message(41n, 3n, "before you", 7n));
    await waitFor(() => row(r, 41n)?.unread === "1", "a message unread");
    const joined = Object.assign(message(41n, 4n, "", ME), { note: create(ChannelNoteSchema, { kind: ChannelNoteKind.JOINED_BY_INVITE }) });
    r.deliver(joined);
    await waitFor(() => row(r, 41n)?.unread === "", "nothing unread up to the join note");
    r.deliver(message(41n, 5n, "welcome", 7n));
    await waitFor(() => row(r, 41n)?.unread === "1", "what follows unread");
    // Added by someone else to another group: the note naming me is where I came in.
    r.deliver(message(42n, 3n, "before you", 7n));
    await waitFor(() => row(r, 42n)?.unread === "1", "a message unread");
    const addNote = (seq: bigint, who: bigint) =>
      Object.assign(message(42n, seq, "", 7n), { note: create(ChannelNoteSchema, { kind: ChannelNoteKind.MEMBERS_ADDED, userIds: [who] }) });
    r.deliver(addNote(4n, ME));
    await waitFor(() => row(r, 42n)?.unread === "", "nothing unread up to the note of my add");
    // Someone else's add is news.
    r.deliver(addNote(5n, 9n));
    await waitFor(() => row(r, 42n)?.unread === "1", "another's add unread");
  });
});
