import { strict as assert } from "node:assert";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite, type Running } from "./chat-harness.js";
import { FakeEvent, settle } from "./fake-browser.js";

// My own reading of the open chat ("read up to seq N", a realtime read or
// MarkRead): only what the page has shown the reader is marked read.
describe("web: my read position follows what was shown", () => {
  const { browser, start } = appSuite();
  let run: Running | undefined;

  /** The seqs of the read positions this tab sent, realtime and MarkRead both, in order. */
  const reads = (r: Running) => [
    ...r.socket().frames().flatMap((f) => (f.kind.case === "read" ? [f.kind.value.seq] : [])),
    ...r.server.calls.filter((c) => c.method === "markRead").map((c) => c.req.seq as bigint),
  ];
  const row = (r: Running, id: bigint) => r.rows().find((x) => x.id === String(id));
  /** The browser window gains the focus, as when the reader comes back to it. */
  const focus = () => (window as unknown as { dispatchEvent(ev: FakeEvent): boolean }).dispatchEvent(new FakeEvent("focus"));

  it("marks nothing read while the chat's first page is on its way, and then what it shows", async () => {
    const server = new FakeServer();
    server.addChat(80n, { readSeq: 2n, unreadCount: 3n }, 5);
    run = await start(server);
    const r = run;
    r.scroller().clientHeight = 400;
    const release = server.hold("listMessages");
    browser.go("#/c/80");
    await waitFor(() => server.count("listMessages") === 1, "the first page asked");

    // The window is focused and a message comes live: neither is the reader seeing anything yet.
    focus();
    r.deliver(server.post(80n, "came while opening"));
    await settle();
    assert.deepEqual(reads(r), [], "read ahead of what was shown");
    assert.equal(row(r, 80n)?.unread, "4", "the chat list counts what the reader has not seen");

    release();
    await waitFor(() => r.shownSeqs().length === 6, "the first page");
    await settle();
    assert.deepEqual(reads(r), [6n]);
    assert.equal(row(r, 80n)?.unread, "");
  });

  it("marks read no further than the newest message shown when the chat list knows of later ones", async () => {
    const server = new FakeServer();
    server.addChat(81n, {}, 5);
    run = await start(server);
    const r = run;
    r.scroller().clientHeight = 400;
    browser.go("#/c/81");
    await waitFor(() => r.shownSeqs().length === 5, "the first page");
    await settle();
    const before = reads(r).length;

    // Offline meanwhile: two messages came that this tab has not been shown. After the
    // reconnect the chat list says so first; the messages are on their way.
    server.post(81n, "missed one");
    server.post(81n, "missed two");
    const release = server.hold("listMessages");
    await r.reconnect();
    await waitFor(() => server.count("listMessages") === 2, "the open chat read again");
    await waitFor(() => row(r, 81n)?.unread === "2", "the chat list read again");
    focus();
    await settle();
    assert.deepEqual(reads(r).slice(before), [], "read ahead of what was shown");

    release();
    await waitFor(() => r.shownSeqs().length === 7, "the messages missed");
    await settle();
    assert.deepEqual(reads(r).slice(before), [7n]);
    assert.equal(row(r, 81n)?.unread, "");
  });
});
