import { strict as assert } from "node:assert";
import { ChannelEventKind } from "../../gen/es/chat/v1/session_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, ME, appSuite, type Running } from "./chat-harness.js";
import { settle } from "./fake-browser.js";

// The web client's chat list when what it reads from the server is older
// than what came live meanwhile: a ListChannels after a reconnect, or a
// DescribeChannel, answered after later events.
describe("web: the chat list kept current against slow answers", () => {
  const { start } = appSuite();
  let run: Running | undefined;

  /** Reconnects with the listing that follows held: it reads the chats now, and answers when the returned function is called. */
  async function reconnectWithSlowListing(r: Running): Promise<() => Promise<void>> {
    const asked = r.server.count("listChannels");
    const release = r.server.hold("listChannels");
    await r.reconnect();
    await waitFor(() => r.server.count("listChannels") >= asked + 2, "the listing after the reconnect", 5_000);
    return async () => {
      release();
      await settle();
    };
  }

  const row = (r: Running, id: bigint) => r.rows().find((x) => x.id === String(id));

  it("keeps the messages, my reading and a chat back from the archive that came live while ListChannels was on its way", async () => {
    const server = new FakeServer();
    server.addChat(10n, {}, 5);
    server.addChat(20n, { readSeq: 5n, unreadCount: 3n }, 8);
    server.addChat(30n, { archived: true }, 3);
    run = await start(server);
    assert.deepEqual(run.rows().map((x) => x.id).sort(), ["10", "20"]);

    const answer = await reconnectWithSlowListing(run);
    run.deliver(server.post(10n, "new in ten"));
    // Read on another of my devices.
    run.socket().push({ kind: { case: "receipt", value: { channelId: 20n, userId: ME, seq: 8n } } });
    // The server's rule: a message brings an archived chat back (the listing read it archived).
    server.channels.get("30")!.archived = false;
    run.deliver(server.post(30n, "back from the archive"));
    await settle();
    await answer();

    assert.equal(row(run, 10n)?.unread, "1");
    assert.match(row(run, 10n)?.last ?? "", /new in ten$/);
    assert.equal(row(run, 20n)?.unread, "", "read on another device");
    assert.match(row(run, 30n)?.last ?? "", /back from the archive$/, "the chat back from the archive");
  });

  it("takes a newer read position from ListChannels even when a message came live while it was on its way", async () => {
    const server = new FakeServer();
    server.addChat(20n, { readSeq: 3n, unreadCount: 5n }, 8);
    run = await start(server);
    assert.equal(row(run, 20n)?.unread, "5");

    // Read to its end on another of my devices while this tab was offline: the receipt went by unseen here.
    const c = server.channels.get("20")!;
    c.readSeq = 8n;
    c.unreadCount = 0n;
    const answer = await reconnectWithSlowListing(run);
    run.deliver(server.post(20n, "new"));
    await settle();
    await answer();

    assert.equal(server.channels.get("20")!.unreadCount, 1n, "the server counts one");
    assert.equal(row(run, 20n)?.unread, "1");
  });

  it("does not bring back a chat I left, nor drop one I joined, while ListChannels was on its way", async () => {
    const server = new FakeServer();
    server.addChat(10n, {}, 2);
    server.addChat(40n, {}, 2);
    run = await start(server);
    assert.ok(row(run, 40n));

    const answer = await reconnectWithSlowListing(run);
    server.channels.delete("40");
    run.channelEvent(ChannelEventKind.LEFT, 40n);
    server.addChat(50n, { title: "Joined meanwhile" }, 1);
    run.channelEvent(ChannelEventKind.JOINED, 50n);
    await waitFor(() => row(run!, 50n), "the chat joined, described");
    await answer();

    assert.equal(row(run, 40n), undefined, "the chat I left came back");
    assert.equal(row(run, 50n)?.name, "Joined meanwhile", "the chat I joined went");
  });

  it("keeps a DescribeChannel answer that came while ListChannels was on its way", async () => {
    const server = new FakeServer();
    server.addChat(20n, { title: "Before" }, 2);
    run = await start(server);

    const answer = await reconnectWithSlowListing(run);
    server.channels.get("20")!.title = "Renamed";
    run.channelEvent(ChannelEventKind.UPDATED, 20n);
    await waitFor(() => row(run!, 20n)?.name === "Renamed", "the rename, described");
    await answer();

    assert.equal(row(run, 20n)?.name, "Renamed");
  });

  it("does not bring back a chat I left with a DescribeChannel asked before, and lets a later JOINED bring it back", async () => {
    const server = new FakeServer();
    server.addChat(60n, { title: "Sixty" }, 2);
    run = await start(server);

    // Someone else joined: the client asks how the chat now is, and the answer is slow.
    const release = server.hold("describeChannel");
    run.channelEvent(ChannelEventKind.JOINED, 60n, 3n);
    await waitFor(() => server.count("describeChannel") === 1, "the describe");
    server.channels.delete("60");
    run.channelEvent(ChannelEventKind.LEFT, 60n);
    assert.equal(row(run, 60n), undefined);
    release();
    await settle();
    assert.equal(row(run, 60n), undefined, "the describe answered after I left brought the chat back");

    server.addChat(60n, { title: "Sixty again" }, 2);
    run.channelEvent(ChannelEventKind.JOINED, 60n);
    await waitFor(() => row(run!, 60n)?.name === "Sixty again", "the chat back after joining again");
  });

  it("reads the chat list again after a reconnect when it could not be read at start", async () => {
    const server = new FakeServer();
    server.addChat(10n, {}, 3);
    const heal = server.fail("listChannels");
    run = await start(server);
    await settle();
    assert.match(run.browser.root.querySelector("[data-testid=sidebar-note]")?.textContent ?? "", /Loading chats/);

    heal();
    await run.reconnect();
    await waitFor(() => row(run!, 10n) !== undefined, "the chat list", 5_000);
  });
});
