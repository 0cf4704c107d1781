import { strict as assert } from "node:assert";
import { ErrorCode } from "../../gen/es/chat/v1/types_pb.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, ME, appSuite, message, type Running } from "./chat-harness.js";
import { FakeEvent, settle } from "./fake-browser.js";

// An edit the server refuses (the edit window passed, LIMIT_REACHED after
// 100 edits): what the person typed for it is not lost with it, but back in
// the edit box, the error told, the draft they had before kept for after.
describe("web: an edit the server refuses", () => {
  const { browser, start } = appSuite();

  const root = () => browser.root;
  const composer = () => root().querySelector("[data-testid=composer]")!;
  const editBar = () => root().querySelector("[data-testid=edit-bar]")!;
  const toast = () => root().querySelector("[data-testid=toast]")!;
  const shown = (seq: bigint) => root().querySelector(`[data-testid=message][data-seq="${seq}"]`);

  /** A chat whose newest message (seq 4) is mine; opened when `open`. */
  async function chatWithMine(server: FakeServer, channelId: bigint, open = true): Promise<Running> {
    server.addChat(channelId, {}, 3);
    const mine = message(channelId, 4n, "before the edit", ME);
    server.history.get(String(channelId))!.push(mine);
    Object.assign(server.channels.get(String(channelId))!, { lastSeq: 4n, readSeq: 4n, lastMessage: mine });
    const r = await start(server);
    r.scroller().clientHeight = 400;
    if (open) {
      browser.go(`#/c/${channelId}`);
      await waitFor(() => r.shownSeqs().length === 4, "the chat open");
    }
    return r;
  }

  /** Edits message `seq` of the open chat to `text` and saves it; the clientMsgId the edit went under. */
  function edit(r: Running, seq: bigint, text: string): string {
    shown(seq)!.querySelector("[data-testid=edit-message]")!.click();
    composer().value = text;
    root().querySelector("form")!.dispatchEvent(new FakeEvent("submit"));
    const f = r.socket().frames().filter((x) => x.kind.case === "send").at(-1);
    assert.ok(f && f.kind.case === "send" && f.kind.value.editSeq === seq, "the edit sent");
    return f.kind.value.clientMsgId;
  }

  function refuse(r: Running, clientMsgId: string, code: ErrorCode, text: string): void {
    r.socket().push({ kind: { case: "error", value: { code, message: text, clientMsgId } } });
  }

  it("puts the text typed for it back in the edit box, with the error, and the draft back after", async () => {
    const server = new FakeServer();
    const r = await chatWithMine(server, 71n);
    composer().value = "a draft of my next message";
    composer().dispatchEvent(new FakeEvent("input"));
    const id = edit(r, 4n, "the fix I typed at length");
    assert.equal(composer().value, "a draft of my next message", "the draft back while the edit is saved");

    refuse(r, id, ErrorCode.PERMISSION_DENIED, "the message can no longer be edited");
    await settle();
    assert.ok(!toast().hidden && /Could not edit the message: the message can no longer be edited/.test(toast().textContent), toast().textContent);
    assert.equal(composer().value, "the fix I typed at length", "the text typed for the edit was lost");
    assert.equal(editBar().hidden, false, "not back in the edit box");
    assert.equal(shown(4n)?.querySelector("[data-testid=message-text]")?.textContent, "before the edit");

    root().querySelector("[data-testid=edit-cancel]")!.click();
    assert.equal(composer().value, "a draft of my next message");
    assert.equal(editBar().hidden, true);
  });

  it("keeps it for its chat when another is open, and puts it back when that chat is opened", async () => {
    const server = new FakeServer();
    const r = await chatWithMine(server, 72n);
    server.addChat(73n, {}, 2);
    const id = edit(r, 4n, "typed, then I went to another chat");
    browser.go("#/c/73");
    await waitFor(() => r.shownSeqs().length === 2, "the other chat open");

    refuse(r, id, ErrorCode.LIMIT_REACHED, "this message was edited too many times");
    await settle();
    assert.equal(editBar().hidden, true, "the other chat's composer taken over");
    assert.equal(composer().value, "");

    browser.go("#/c/72");
    await waitFor(() => r.shownSeqs().length === 4, "the chat open again");
    assert.equal(composer().value, "typed, then I went to another chat", "the text typed for the edit was lost");
    assert.equal(editBar().hidden, false);
  });

  it("keeps an edit under way when another chat is opened, and puts it back when its chat is opened again", async () => {
    const server = new FakeServer();
    const r = await chatWithMine(server, 74n);
    server.addChat(75n, {}, 2);
    composer().value = "my draft";
    composer().dispatchEvent(new FakeEvent("input"));
    shown(4n)!.querySelector("[data-testid=edit-message]")!.click();
    composer().value = "half of a long edit";
    composer().dispatchEvent(new FakeEvent("input"));

    browser.go("#/c/75");
    await waitFor(() => r.shownSeqs().length === 2, "the other chat open");
    assert.equal(editBar().hidden, true);
    assert.equal(composer().value, "");

    browser.go("#/c/74");
    await waitFor(() => r.shownSeqs().length === 4, "the chat open again");
    assert.equal(composer().value, "half of a long edit", "the text typed for the edit was lost");
    assert.equal(editBar().hidden, false);
    root().querySelector("[data-testid=edit-cancel]")!.click();
    assert.equal(composer().value, "my draft");
  });

  it("does not take a reply being written away: the refused edit comes back once the reply is sent", async () => {
    const server = new FakeServer();
    const r = await chatWithMine(server, 76n);
    const id = edit(r, 4n, "an edit the server will refuse");
    shown(2n)!.querySelector("[data-testid=reply-message]")!.click();
    composer().value = "my answer to 2";
    composer().dispatchEvent(new FakeEvent("input"));

    refuse(r, id, ErrorCode.PERMISSION_DENIED, "the message can no longer be edited");
    await settle();
    assert.equal(root().querySelector("[data-testid=reply-bar]")!.hidden, false, "the reply under way was dropped");
    assert.equal(composer().value, "my answer to 2");

    root().querySelector("form")!.dispatchEvent(new FakeEvent("submit"));
    const sent = r.socket().frames().filter((x) => x.kind.case === "send").at(-1);
    assert.ok(sent && sent.kind.case === "send" && sent.kind.value.replyToSeq === 2n && sent.kind.value.text === "my answer to 2");
    assert.equal(composer().value, "an edit the server will refuse", "the refused edit not back after the reply");
    assert.equal(editBar().hidden, false);
  });
});
