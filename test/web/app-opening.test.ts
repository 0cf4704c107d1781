import { strict as assert } from "node:assert";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { MessageSchema, type Message } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, ME, PEER, appSuite, message, type Running } from "./chat-harness.js";
import { FakeEvent, settle } from "./fake-browser.js";

// A chat being opened: what comes live while its first page is on its way,
// and a first page that could not be read.
describe("web: a chat while its first page is on its way", () => {
  const { browser, start } = appSuite();
  let run: Running | undefined;

  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => BigInt(from + i));
  const shown = (r: Running, seq: number) => r.browser.root.querySelector(`[data-testid=message][data-seq="${seq}"]`);
  const pendingShown = (r: Running) => r.browser.root.querySelectorAll("[data-testid=pending-message]");

  /** A change entry: an edit of `seq` (text), or a reaction to it (emoji). */
  const change = (channelId: bigint, seq: bigint, id: bigint, fields: MessageInitShape<typeof MessageSchema>) =>
    create(MessageSchema, { channelId, targetSeq: seq, messageId: channelId * 1_000_000n + id, senderUserId: PEER, senderDeviceId: 22n, sentAt: timestampFromMs(Date.now()), ...fields });

  /** Sends `text` from the composer; the clientMsgId it went under. */
  function send(r: Running, text: string): string {
    const input = r.browser.root.querySelector("[data-testid=composer]")!;
    input.value = text;
    r.browser.root.querySelector("form")!.dispatchEvent(new FakeEvent("submit"));
    const f = r.socket().frames().filter((x) => x.kind.case === "send").at(-1);
    assert.ok(f && f.kind.case === "send");
    return f.kind.value.clientMsgId;
  }

  /** My message, as the server keeps it and delivers it back, sent from this device under `clientMsgId`. */
  function mine(server: FakeServer, channelId: bigint, text: string, clientMsgId: string): Message {
    const history = server.history.get(String(channelId))!;
    const m = message(channelId, history.at(-1)!.seq + 1n, text, ME);
    Object.assign(m, { clientMsgId, senderDeviceId: 11n });
    history.push(m);
    return m;
  }

  it("shows the messages, edits and reactions that came live after the page was read", async () => {
    const server = new FakeServer();
    server.addChat(70n, {}, 5);
    run = await start(server);
    const r = run;
    r.scroller().clientHeight = 400;
    const release = server.hold("listMessages");
    browser.go("#/c/70");
    await waitFor(() => server.count("listMessages") === 1, "the first page asked");

    r.deliver(server.post(70n, "came while opening"));
    r.deliver(change(70n, 5n, 100n, { text: "edited while opening" }));
    r.deliver(change(70n, 3n, 101n, { text: "👍", reaction: true }));
    await settle();
    release();
    await waitFor(() => r.shownSeqs().length >= 5, "the first page");
    await settle();

    assert.deepEqual(r.shownSeqs(), range(1, 6));
    assert.equal(shown(r, 5)?.querySelector("[data-testid=message-text]")?.textContent, "edited while opening");
    assert.match(shown(r, 3)?.querySelector("[data-testid=reactions]")?.textContent ?? "", /👍/);
  });

  it("reads a first page that failed again after a reconnect, and shows my message sent meanwhile throughout", async () => {
    const server = new FakeServer();
    server.addChat(71n, {}, 3);
    run = await start(server);
    const r = run;
    r.scroller().clientHeight = 400;
    const healed = server.fail("listMessages");
    browser.go("#/c/71");
    await waitFor(() => server.count("listMessages") === 1, "the first page asked");
    await settle();

    const id = send(r, "sent while it would not load");
    r.socket().push({ kind: { case: "sendAck", value: { clientMsgId: id, channelId: 71n, messageId: 71_000_004n } } });
    r.deliver(mine(server, 71n, "sent while it would not load", id));
    // Anything that renders the chat again, as the peer's receipt does.
    r.socket().push({ kind: { case: "receipt", value: { channelId: 71n, userId: PEER, seq: 4n } } });
    await settle();
    assert.equal(pendingShown(r).length, 1, "my message went from the chat");

    healed();
    await r.reconnect();
    await waitFor(() => r.shownSeqs().length === 4, "the first page, read again");
    await settle();
    assert.deepEqual(r.shownSeqs(), range(1, 4));
    assert.equal(pendingShown(r).length, 0, "my message shown twice");
    assert.equal(r.browser.root.querySelector("[data-testid=load-retry]"), null);
  });

  it("reads a first page that failed again when asked to", async () => {
    const server = new FakeServer();
    server.addChat(72n, {}, 3);
    run = await start(server);
    const r = run;
    r.scroller().clientHeight = 400;
    const healed = server.fail("listMessages");
    browser.go("#/c/72");
    const retry = await waitFor(() => r.browser.root.querySelector("[data-testid=load-retry]") ?? undefined, "the failure, with a way to try again");
    healed();
    retry.click();
    await waitFor(() => r.shownSeqs().length === 3, "the first page, read again");
  });
});
