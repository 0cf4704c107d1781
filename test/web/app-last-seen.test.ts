import { strict as assert } from "node:assert";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ChannelKind, PresenceSchema, PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, ME, PEER, appSuite } from "./chat-harness.js";

// "Last seen" is how long ago by the server's clock, which tells when the
// peer was last seen; this browser's clock may be minutes off it.
describe("web: last seen with this browser's clock off the server's", () => {
  const { browser, start } = appSuite();

  it("says a peer who just left was last seen just now, with the browser's clock 20 minutes ahead", async () => {
    const server = new FakeServer();
    server.addChat(40n, { kind: ChannelKind.DIRECT, peerUserId: PEER }, 1);
    const serverNow = Date.now() - 20 * 60_000;
    server.presence.set(String(PEER), create(PresenceSchema, { userId: PEER, status: PresenceStatus.OFFLINE, lastSeenAt: timestampFromMs(serverNow - 10_000) }));
    const r = await start(server);
    // A session whose Welcome tells the server's time.
    const socket = await r.reconnect(false);
    socket.push({ kind: { case: "welcome", value: { userId: ME, deviceId: 11n, deviceCursor: r.inboxSeq, headInboxSeq: r.inboxSeq, heartbeatIntervalMs: 60_000, serverTime: timestampFromMs(serverNow) } } });
    r.scroller().clientHeight = 400;
    browser.go("#/c/40");
    const status = () => browser.root.querySelector("[data-testid=chat-status]")!.textContent;
    await waitFor(() => /last seen/.test(status()), "the peer's last seen");
    assert.match(status(), /last seen just now/);
  });
});
