import { strict as assert } from "node:assert";
import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite, type Running } from "./chat-harness.js";
import { settle } from "./fake-browser.js";

// A read receipt the server refuses on the socket (its frame rate, or its
// store down: RATE_LIMITED, UNAVAILABLE, INTERNAL) has no other answer: the
// page showed the chat read, and nothing would tell the server or my other
// devices, which kept it unread until the next message was read.
describe("web: a read receipt the server refuses", () => {
  const { browser, start } = appSuite();

  /** The realtime reads of `channelId` sent on the current socket: their refs and seqs. */
  const readFrames = (r: Running, channelId: bigint) =>
    r.socket().frames().flatMap((f) => (f.kind.case === "read" && f.kind.value.channelId === channelId ? [{ ref: f.ref, seq: f.kind.value.seq }] : []));
  const refuse = (r: Running, ref: bigint, code: ErrorCode) =>
    r.socket().push({ kind: { case: "error", value: { code, message: "refused", refusedKind: 5 } }, ref });

  it("tells it again with MarkRead", async () => {
    const server = new FakeServer();
    server.addChat(90n, { readSeq: 1n, unreadCount: 2n }, 3);
    const r = await start(server);
    r.scroller().clientHeight = 400;
    browser.go("#/c/90");
    await waitFor(() => r.shownSeqs().length === 3, "the chat open");
    const [read] = await waitFor(() => readFrames(r, 90n).length > 0 && readFrames(r, 90n), "the read sent");
    assert.equal(read!.seq, 3n);

    refuse(r, read!.ref, ErrorCode.UNAVAILABLE);
    await waitFor(() => server.calls.some((c) => c.method === "markRead" && c.req.seq === 3n), "the refused read told again");
  });

  it("does not tell again one refused because I am not in the chat", async () => {
    const server = new FakeServer();
    server.addChat(91n, { readSeq: 1n, unreadCount: 2n }, 3);
    const r = await start(server);
    r.scroller().clientHeight = 400;
    browser.go("#/c/91");
    await waitFor(() => r.shownSeqs().length === 3, "the chat open");
    const [read] = await waitFor(() => readFrames(r, 91n).length > 0 && readFrames(r, 91n), "the read sent");

    refuse(r, read!.ref, ErrorCode.NOT_A_MEMBER);
    await settle();
    assert.equal(server.count("markRead"), 0);
    // Nor on the next connection.
    await r.reconnect();
    await settle();
    assert.deepEqual(readFrames(r, 91n), []);
    assert.equal(server.count("markRead"), 0);
  });
});
