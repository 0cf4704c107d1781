import { strict as assert } from "node:assert";
import { create } from "@bufbuild/protobuf";
import { ChannelKind, PresenceSchema, PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, PEER, appSuite, type Running } from "./chat-harness.js";
import { settle } from "./fake-browser.js";

// Presence read with GetPresence against the live events that pass it.
describe("web: presence kept current against slow answers", () => {
  const { start } = appSuite();
  let run: Running | undefined;

  const dot = (r: Running, id: bigint) => r.browser.root.querySelector(`[data-testid=channel][data-channel-id="${id}"] [data-testid=channel-presence]`)?.getAttribute("data-presence");

  it("keeps a live presence event that came after a GetPresence was asked over its answer", async () => {
    const server = new FakeServer();
    server.addChat(30n, { kind: ChannelKind.DIRECT, peerUserId: PEER }, 1);
    server.presence.set(String(PEER), create(PresenceSchema, { userId: PEER, status: PresenceStatus.ONLINE }));
    run = await start(server);
    const r = run;
    await waitFor(() => dot(r, 30n) === "online", "the peer online");

    // The reconnect reads presence again; the answer, read now, is slow.
    const asked = server.count("getPresence");
    const release = server.hold("getPresence");
    await r.reconnect();
    await waitFor(() => server.count("getPresence") > asked, "the presence asked at the welcome");
    server.presence.set(String(PEER), create(PresenceSchema, { userId: PEER, status: PresenceStatus.OFFLINE }));
    r.socket().push({ kind: { case: "presence", value: { presence: server.presence.get(String(PEER)) } } });
    assert.equal(dot(r, 30n), "offline");
    release();
    await settle();

    assert.equal(dot(r, 30n), "offline", "the answer read before the event put the peer back online");
  });
});
