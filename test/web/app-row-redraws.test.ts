import { strict as assert } from "node:assert";
import { create } from "@bufbuild/protobuf";
import { ChannelKind, PresenceSchema, PresenceStatus } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, PEER, appSuite } from "./chat-harness.js";

// Who is typing and a peer's presence show in that chat's row alone: the
// whole chat list was built again (and compared row by row) at every typing
// event and every presence event, and again as typing ran out, a few times a
// second with a few people typing or many friends coming and going.
describe("web: an event of one chat of many", () => {
  const { browser, start } = appSuite({ speed: 10 });
  // One row is a dozen elements or so; the list is 60 of them.
  const ROW_BUDGET = 60;

  it("typing draws that chat's row again, not the whole list, as it shows and as it ends", async () => {
    const server = new FakeServer();
    for (let i = 0; i < 60; i++) server.addChat(BigInt(100 + i), {}, 1);
    const r = await start(server);
    await waitFor(() => r.rows().length === 60, "every chat listed");
    const last = (id: string) => r.rows().find((row) => row.id === id)?.last;
    const before = browser.document.created;
    r.socket().push({ kind: { case: "typing", value: { channelId: 130n, userId: PEER } } });
    await waitFor(() => last("130") === "typing…", "the peer shown typing");
    const shown = browser.document.created - before;
    await waitFor(() => last("130") !== "typing…", "typing no longer shown", 15_000);
    const ended = browser.document.created - before - shown;
    assert.ok(shown < ROW_BUDGET, `${shown} elements made to show typing in one row`);
    assert.ok(ended < ROW_BUDGET, `${ended} elements made as typing ended`);
  });

  it("a peer's presence draws their direct chat's row again, not the whole list", async () => {
    const server = new FakeServer();
    for (let i = 0; i < 60; i++) server.addChat(BigInt(200 + i), { kind: ChannelKind.DIRECT, peerUserId: BigInt(9_000 + i) }, 1);
    const r = await start(server);
    await waitFor(() => r.rows().length === 60, "every chat listed");
    const dot = (id: bigint) => browser.root.querySelector(`[data-testid=channel][data-channel-id="${id}"] [data-testid=channel-presence]`)?.getAttribute("data-presence");
    const before = browser.document.created;
    r.socket().push({ kind: { case: "presence", value: { presence: create(PresenceSchema, { userId: 9_030n, status: PresenceStatus.ONLINE }) } } });
    await waitFor(() => dot(230n) === "online", "the peer shown online");
    const made = browser.document.created - before;
    assert.ok(made < ROW_BUDGET, `${made} elements made to show one peer online`);
    assert.notEqual(dot(231n), "online", "another peer's row as it was");
  });
});
