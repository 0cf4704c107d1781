import { strict as assert } from "node:assert";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { MessageSchema, ReactionSchema, type InboxEntry, type Message } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, PEER, appSuite, type Running } from "./chat-harness.js";
import { ScriptedSocket, settle } from "./fake-browser.js";

// A device away longer than the inbox keeps entries: the sync after it
// reconnects starts with entries it will never get (SyncBatch.expired_through),
// and the web client reads what it missed from history instead.
describe("web: a sync that skipped entries past the inbox's retention window", () => {
  const { browser, start } = appSuite();
  let run: Running | undefined;

  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => BigInt(from + i));
  const shownText = (r: Running, seq: number) => r.browser.root.querySelector(`[data-testid=message][data-seq="${seq}"] [data-testid=message-text]`)?.textContent;

  /** Reconnects after `expired` inbox entries went unkept; the sync brings `kept` after them. */
  async function reconnectPastRetention(r: Running, expired: number, kept: Message[]): Promise<void> {
    await r.reconnect(false);
    const cursor = r.inboxSeq;
    const through = cursor + BigInt(expired);
    const head = through + BigInt(kept.length);
    r.welcome(head);
    const entries = kept.map((message, i) => ({ inboxSeq: through + 1n + BigInt(i), message }));
    r.socket().push({ kind: { case: "syncBatch", value: { entries, headInboxSeq: head, hasMore: false, expiredThrough: through } } });
    r.inboxSeq = head;
  }

  async function openChat(r: Running, channelId: bigint, shown: number): Promise<void> {
    r.scroller().clientHeight = 400;
    browser.go(`#/c/${channelId}`);
    await waitFor(() => r.shownSeqs().length === shown, "the chat's newest page");
  }

  it("reads the open chat again, with an edit whose entry expired", async () => {
    const server = new FakeServer();
    server.addChat(80n, {}, 40);
    run = await start(server);
    await openChat(run, 80n, 40);
    assert.equal(shownText(run, 35), "message 35");

    // While away: message 35 is edited and 20 more come; the inbox kept only the last 10 messages' entries.
    Object.assign(server.history.get("80")![34]!, { text: "edited while away", editedAt: timestampFromMs(Date.now()) });
    const later = Array.from({ length: 20 }, () => server.post(80n));
    await reconnectPastRetention(run, 11, later.slice(10));
    await waitFor(() => run!.shownSeqs().at(-1) === 60n, "the newest message");
    await settle();

    assert.equal(shownText(run, 35), "edited while away");
    assert.deepEqual(run.shownSeqs(), range(11, 60), "the newest page");
  });

  it("reads the open chat again, with a reaction whose entry expired", async () => {
    const server = new FakeServer();
    server.addChat(85n, {}, 40);
    run = await start(server);
    await openChat(run, 85n, 40);

    // While away: message 35 gets a reaction and 20 more come; the inbox kept only the last 10 messages' entries.
    server.history.get("85")![34]!.reactions = [create(ReactionSchema, { userId: PEER, emoji: "❤️" })];
    const later = Array.from({ length: 20 }, () => server.post(85n));
    await reconnectPastRetention(run, 11, later.slice(10));
    await waitFor(() => run!.shownSeqs().at(-1) === 60n, "the newest message");
    await settle();

    assert.deepEqual(run.shownSeqs(), range(11, 60), "the newest page");
    const reactions = run.browser.root.querySelector(`[data-testid=message][data-seq="35"] [data-testid=reactions]`);
    assert.match(reactions?.textContent ?? "", /❤️/);
  });

  it("shows an edit that came live while the open chat was being read again", async () => {
    const server = new FakeServer();
    server.addChat(82n, {}, 40);
    run = await start(server);
    const r = run;
    await openChat(r, 82n, 40);

    const asked = server.count("listMessages");
    const release = server.hold("listMessages");
    const later = Array.from({ length: 20 }, () => server.post(82n));
    await reconnectPastRetention(r, 11, later.slice(10));
    await waitFor(() => server.count("listMessages") > asked, "the newest page asked again");
    // Message 35, held here, is edited; the page on its way was read before.
    Object.assign(server.history.get("82")![34]!, { text: "edited meanwhile", editedAt: timestampFromMs(Date.now()) });
    const edit = create(MessageSchema, { channelId: 82n, targetSeq: 35n, messageId: 82_000_100n, senderUserId: PEER, senderDeviceId: 22n, text: "edited meanwhile", sentAt: timestampFromMs(Date.now()) });
    r.deliver(edit);
    await settle();
    release();
    await waitFor(() => r.shownSeqs().at(-1) === 60n, "the newest message");
    await settle();

    assert.equal(shownText(r, 35), "edited meanwhile");
  });

  it("shows the open chat's newest page with no gap when more expired than one page forward reads", async () => {
    const server = new FakeServer();
    server.addChat(90n, {}, 10);
    run = await start(server);
    await openChat(run, 90n, 10);

    const later = Array.from({ length: 300 }, () => server.post(90n));
    await reconnectPastRetention(run, 290, later.slice(290));
    await waitFor(() => run!.shownSeqs().at(-1) === 310n, "the newest message");
    await settle();

    assert.deepEqual(run.shownSeqs(), range(261, 310), "the newest page, nothing older and no gap");
    assert.ok(run.browser.root.querySelector("[data-testid=load-older]"), "older messages can be paged back to");
  });

  it("reads the chat list again when the expired entries came in a backlog outside a catch-up", async () => {
    const server = new FakeServer();
    server.addChat(95n, {}, 2);
    run = await start(server);
    const listed = server.count("listChannels");

    // A session that stalled: the next page of its backlog starts past entries the inbox no longer has.
    const renamed = Object.assign(server.channels.get("95")!, { title: "Renamed while stalled" });
    const m = server.post(95n);
    const cursor = run.inboxSeq;
    run.socket().push({ kind: { case: "syncBatch", value: { entries: [{ inboxSeq: cursor + 5n, message: m }], headInboxSeq: cursor + 5n, hasMore: false, expiredThrough: cursor + 4n } } });
    await waitFor(() => server.count("listChannels") > listed, "the chat list read again", 5_000);
    await waitFor(() => run!.rows().find((x) => x.id === "95")?.name === renamed.title, "the rename, from the listing");
  });

  const entry = (inboxSeq: bigint): InboxEntry => ({ inboxSeq, message: { channelId: 1n, seq: inboxSeq } }) as InboxEntry;

  /** The web client's realtime session alone, started, with what it told the app's caughtUp. */
  async function sessionTellingCaughtUp(deviceId: string) {
    const { RealtimeSession } = await import("../../web/src/session.js");
    const told: unknown[] = [];
    const handlers = new Proxy({}, { get: (_t, name) => (name === "caughtUp" ? (missed: unknown) => told.push(missed) : () => undefined) });
    const auth = { current: { deviceId, accessToken: "t" }, accessToken: async () => "t" };
    const session = new RealtimeSession(auth as never, handlers as never, "ws://127.0.0.1/ws");
    const sockets = ScriptedSocket.all.length;
    session.start();
    await waitFor(() => ScriptedSocket.all.length > sockets, "the socket");
    return { session, told, sockets };
  }

  it("the session tells the app once the last page is in, and only of entries past the tab's own position", async () => {
    const { session, told } = await sessionTellingCaughtUp("12");
    try {
      const socket = ScriptedSocket.all.at(-1)!;
      socket.push({ kind: { case: "welcome", value: { deviceCursor: 0n, headInboxSeq: 9n } } });
      socket.push({ kind: { case: "syncBatch", value: { entries: [entry(4n), entry(5n)], hasMore: true, expiredThrough: 3n } } });
      assert.deepEqual(told, [], "not before the last page");
      socket.push({ kind: { case: "syncBatch", value: { entries: [entry(6n)], hasMore: false } } });
      assert.deepEqual(told, [true]);
      // A backlog page outside a catch-up, whose skipped entries this tab has taken already: nothing missed.
      socket.push({ kind: { case: "syncBatch", value: { entries: [entry(7n)], hasMore: false, expiredThrough: 5n } } });
      assert.deepEqual(told, [true]);
      socket.push({ kind: { case: "syncBatch", value: { entries: [entry(9n)], hasMore: false, expiredThrough: 8n } } });
      assert.deepEqual(told, [true, true]);
    } finally {
      session.stop();
    }
  });

  it("the session still tells the app after the connection dropped before the last page of a catch-up that skipped some", async () => {
    const { session, told, sockets } = await sessionTellingCaughtUp("13");
    try {
      const first = ScriptedSocket.all.at(-1)!;
      first.push({ kind: { case: "welcome", value: { deviceCursor: 0n, headInboxSeq: 9n } } });
      first.push({ kind: { case: "syncBatch", value: { entries: [entry(4n), entry(5n)], hasMore: true, expiredThrough: 3n } } });
      first.drop();
      // What the first page brought was acked: the next session has nothing before it to skip, or to say.
      await waitFor(() => ScriptedSocket.all.length > sockets + 1, "the reconnect", 5_000);
      ScriptedSocket.all.at(-1)!.push({ kind: { case: "welcome", value: { deviceCursor: 5n, headInboxSeq: 5n } } });
      assert.deepEqual(told, [true]);
    } finally {
      session.stop();
    }
  });
});
