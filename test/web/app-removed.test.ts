import { strict as assert } from "node:assert";
import { Code, ConnectError } from "@connectrpc/connect";
import { ChannelEventKind } from "../../gen/es/chat/v1/session_pb.js";
import { ChannelKind } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite, type Running } from "./chat-harness.js";
import { settle } from "./fake-browser.js";

// The open group when I am no longer in it (removed, or left on another
// device): it closes with a notice, whether this tab hears of it live or
// only after a reconnect.
describe("web: the open chat when I am no longer in it", () => {
  const { browser, start } = appSuite();
  let run: Running | undefined;

  const row = (r: Running, id: bigint) => r.rows().find((x) => x.id === String(id));
  const chatShown = (r: Running) => !r.browser.root.querySelector(".chat")!.hidden;
  const toast = (r: Running) => {
    const el = r.browser.root.querySelector("[data-testid=toast]")!;
    return el.hidden ? "" : el.textContent;
  };

  /** The server as it answers one who is not in the chat: history is refused, the chat is not listed. */
  function removeMe(server: FakeServer, channelId: bigint): void {
    server.channels.delete(String(channelId));
    const handlers = (server as unknown as { handlers: Record<string, (req: Record<string, unknown>) => unknown> }).handlers;
    const list = handlers.listMessages!;
    handlers.listMessages = (req) => {
      if (req.channelId === channelId) throw new ConnectError("not a member of this channel", Code.PermissionDenied, { "chat-error-code": "ERROR_CODE_NOT_A_MEMBER" });
      return list(req);
    };
  }

  async function openChat(server: FakeServer, channelId: bigint): Promise<Running> {
    run = await start(server);
    const r = run;
    r.scroller().clientHeight = 400;
    browser.go(`#/c/${channelId}`);
    await waitFor(() => r.shownSeqs().length === 3, "the chat open");
    await settle();
    return r;
  }

  it("closes the chat with a notice when the removal comes live", async () => {
    const server = new FakeServer();
    server.addChat(90n, { title: "Team" }, 3);
    const r = await openChat(server, 90n);

    removeMe(server, 90n);
    r.channelEvent(ChannelEventKind.LEFT, 90n);
    await waitFor(() => !chatShown(r), "the chat closed", 5_000);
    assert.equal(location.hash, "");
    assert.equal(row(r, 90n), undefined);
    assert.match(toast(r), /no longer .*Team/);
  });

  it("closes the chat with a notice when the chat list read after a reconnect no longer has it", async () => {
    const server = new FakeServer();
    server.addChat(91n, { title: "Team" }, 3);
    server.addChat(92n, {}, 1);
    const r = await openChat(server, 91n);

    // Removed while this browser was offline: the LEFT event went by unseen.
    removeMe(server, 91n);
    await r.reconnect();
    await waitFor(() => row(r, 91n) === undefined, "the chat list read again", 5_000);
    await waitFor(() => !chatShown(r), "the chat closed", 5_000);
    assert.equal(location.hash, "");
    assert.match(toast(r), /no longer .*Team/);
    assert.ok(row(r, 92n), "another chat went too");
  });

  it("closes the chat with a notice when the chat list cannot be read after a reconnect and its history says I am not in it", async () => {
    const server = new FakeServer();
    server.addChat(93n, { title: "Team" }, 3);
    const r = await openChat(server, 93n);

    removeMe(server, 93n);
    server.fail("listChannels");
    await r.reconnect();
    await waitFor(() => !chatShown(r), "the chat closed", 5_000);
    assert.equal(location.hash, "");
    assert.equal(row(r, 93n), undefined);
    assert.match(toast(r), /no longer .*Team/);
  });

  it("closes a chat whose first page is refused because I am not in it any more", async () => {
    const server = new FakeServer();
    server.addChat(94n, { title: "Team" }, 3);
    run = await start(server);
    const r = run;
    // Listed when the page started, removed before it was opened.
    removeMe(server, 94n);
    browser.go("#/c/94");
    await waitFor(() => server.count("listMessages") === 1, "the first page asked");
    await waitFor(() => !chatShown(r) && location.hash === "", "the chat closed", 5_000);
    assert.equal(row(r, 94n), undefined);
    assert.match(toast(r), /no longer .*Team/);
  });
  it("keeps the open chat when the chat list read after a reconnect was cut short (more chats than it reads)", async () => {
    const server = new FakeServer();
    server.addChat(95n, { title: "Team" }, 3);
    server.addChat(96n, {}, 1);
    const r = await openChat(server, 95n);

    // Every page says more follow, none has the open chat: it is past what the list reads.
    const handlers = (server as unknown as { handlers: Record<string, (req: Record<string, unknown>) => unknown> }).handlers;
    const list = handlers.listChannels!;
    handlers.listChannels = (req) => {
      const page = list(req) as { channels: { channelId: bigint }[] };
      return { channels: page.channels.filter((c) => c.channelId !== 95n), nextPageToken: "more" };
    };
    const before = server.count("listChannels");
    await r.reconnect();
    await waitFor(() => server.count("listChannels") >= before + 20, "the chat list read again, ten pages of each", 5_000);
    await settle();
    assert.ok(chatShown(r), "the chat stays open");
    assert.ok(row(r, 95n), "and listed");
    assert.equal(toast(r), "");
  });

  describe("leaving a group from its header", () => {
    const leaveButton = (r: Running) => r.browser.root.querySelector("[data-testid=leave-group]")!;

    it("leaves the open group once confirmed: it goes from the list and closes, saying I left", async () => {
      const server = new FakeServer();
      server.addChat(97n, { title: "Team" }, 3);
      server.addChat(98n, {}, 1);
      const r = await openChat(server, 97n);
      assert.equal(leaveButton(r).hidden, false, "a group's header offers to leave it");

      leaveButton(r).click();
      await waitFor(() => !chatShown(r), "the chat closed", 5_000);
      assert.deepEqual(server.calls.filter((c) => c.method === "leaveGroup").map((c) => c.req.channelId), [97n]);
      assert.equal(location.hash, "");
      assert.equal(row(r, 97n), undefined);
      assert.ok(row(r, 98n), "the other chat stays");
      assert.match(toast(r), /You left .*Team/);
    });

    it("says I left also when the LEFT event comes before the answer", async () => {
      const server = new FakeServer();
      server.addChat(99n, { title: "Team" }, 3);
      const r = await openChat(server, 99n);
      const release = server.hold("leaveGroup");

      leaveButton(r).click();
      await waitFor(() => server.count("leaveGroup") === 1, "the leave asked");
      removeMe(server, 99n);
      r.channelEvent(ChannelEventKind.LEFT, 99n);
      await waitFor(() => !chatShown(r), "the chat closed", 5_000);
      assert.match(toast(r), /You left .*Team/);
      release();
      await settle();
      assert.equal(row(r, 99n), undefined);
    });

    it("keeps the group when the server refuses, with its reason", async () => {
      const server = new FakeServer();
      server.addChat(100n, { title: "Team" }, 3);
      const r = await openChat(server, 100n);
      server.fail("leaveGroup");

      leaveButton(r).click();
      await waitFor(() => toast(r) !== "", "the refusal told");
      assert.ok(chatShown(r), "the chat stays open");
      assert.ok(row(r, 100n), "and listed");
    });

    it("is not offered in a direct chat", async () => {
      const server = new FakeServer();
      server.addChat(101n, { kind: ChannelKind.DIRECT, peerUserId: 2n }, 3);
      const r = await openChat(server, 101n);
      assert.equal(leaveButton(r).hidden, true);
    });
  });
});
