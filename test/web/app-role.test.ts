import { strict as assert } from "node:assert";
import { ChannelEventKind } from "../../gen/es/chat/v1/session_pb.js";
import { MemberRole } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, appSuite } from "./chat-harness.js";
import { settle } from "./fake-browser.js";

// My role in a group changes while it is open: what I may do to the others' messages follows at once.
describe("web: my role in the open group changes", () => {
  const { browser, start } = appSuite();

  const deletable = () => browser.root.querySelectorAll("[data-testid=message] [data-testid=delete-message]").length;

  it("offers Delete on everyone's messages once I am made an admin, and no more once I am not", async () => {
    const server = new FakeServer();
    server.addChat(60n, { myRole: MemberRole.MEMBER }, 3);
    const r = await start(server);
    r.scroller().clientHeight = 400;
    browser.go("#/c/60");
    await waitFor(() => r.shownSeqs().length === 3, "the group open");
    assert.equal(deletable(), 0);

    server.channels.get("60")!.myRole = MemberRole.ADMIN;
    r.channelEvent(ChannelEventKind.UPDATED, 60n);
    await waitFor(() => server.count("describeChannel") >= 1, "the group asked for");
    await settle();
    assert.equal(browser.root.querySelector("[data-testid=invite-link]")!.hidden, false, "the header follows");
    assert.equal(deletable(), 3, "the others' messages offer no Delete to an admin");

    server.channels.get("60")!.myRole = MemberRole.MEMBER;
    r.channelEvent(ChannelEventKind.UPDATED, 60n);
    await waitFor(() => server.count("describeChannel") >= 2, "the group asked for again");
    await settle();
    assert.equal(deletable(), 0, "Delete still offered on the others' messages to a member");
  });
});
