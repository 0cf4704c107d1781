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

  it("counts my own note of a join by link as unread, as the server does, and my own message as read", async () => {
    const server = new FakeServer();
    server.addChat(41n, {}, 2);
    run = await start(server);
    const r = run;
    await waitFor(() => row(r, 41n) !== undefined, "the chat listed");
    const joined = Object.assign(message(41n, 3n, "", ME), { note: create(ChannelNoteSchema, { kind: ChannelNoteKind.JOINED_BY_INVITE }) });
    r.deliver(joined);
    await waitFor(() => row(r, 41n)?.unread === "1", "the join note unread");
    r.deliver(message(41n, 4n, "mine", ME));
    await waitFor(() => row(r, 41n)?.unread === "", "my message read");
  });
});
