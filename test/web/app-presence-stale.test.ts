import { strict as assert } from "node:assert";
import { create } from "@bufbuild/protobuf";
import { ChannelKind, PresenceSchema, PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, PEER, appSuite, type Running } from "./chat-harness.js";
import { settle } from "./fake-browser.js";

// Presence after a reconnect: the events of the time offline were missed, so
// what the page had is read again; when that read fails, it is not shown as
// if it were current.
describe("web: presence after a reconnect whose GetPresence fails", () => {
  const { start } = appSuite();

  const dot = (r: Running, id: bigint) => r.browser.root.querySelector(`[data-testid=channel][data-channel-id="${id}"] [data-testid=channel-presence]`)?.getAttribute("data-presence");

  it("shows no peer online on the word it had before the connection dropped", async () => {
    const server = new FakeServer();
    server.addChat(31n, { kind: ChannelKind.DIRECT, peerUserId: PEER }, 1);
    server.presence.set(String(PEER), create(PresenceSchema, { userId: PEER, status: PresenceStatus.ONLINE }));
    const r = await start(server);
    await waitFor(() => dot(r, 31n) === "online", "the peer online");

    // The peer leaves while this page is offline: the event is missed, and the read at the welcome fails.
    const asked = server.count("getPresence");
    const unfail = server.fail("getPresence");
    await r.reconnect();
    await waitFor(() => server.count("getPresence") > asked, "the presence asked at the welcome");
    await settle();
    assert.notEqual(dot(r, 31n), "online", "shown online on the word from before the reconnect");

    // A live event after the welcome is current: shown.
    unfail();
    r.socket().push({ kind: { case: "presence", value: { presence: { userId: PEER, status: PresenceStatus.ONLINE } } } });
    await waitFor(() => dot(r, 31n) === "online", "the peer online again, live");
  });
});
