import { strict as assert } from "node:assert";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ChannelKind, ChannelNoteKind, ChannelNoteSchema, ChannelSchema, ReactionSchema, UserSchema } from "../../gen/es/chat/v1/types_pb.js";
import { balanced, isolate } from "../../web/src/dom.js";
import { waitFor } from "../support/wait.js";
import { FakeServer, PEER, appSuite, message } from "./chat-harness.js";
import { FakeEvent, fakeBrowser, settle, type FakeElement } from "./fake-browser.js";

// A name, a title or a message is someone else's text: a right-to-left
// override (U+202E) in it must not reorder the words of the page around it
// ("Seen by", "is typing…", the chat list's "Name: text"). The CLI shows the
// controls as <U+202E>; a browser shows the text as it is, isolated.
const RLO = "\u202e";
const PDI = "\u2069";
const EVIL = `${RLO}evil`;
/** Ends an isolate early in Chromium, which makes `<bdi>` FSI ... PDI in the line: the override after it ran to the line's end. */
const ESCAPING = `${PDI}${RLO}evil`;

/** Every text node showing `text` is the whole text of an element with dir="auto" (`<bdi>` or a block), balanced. */
function assertIsolated(root: FakeElement, text: string, what: string): void {
  const holders: FakeElement[] = [];
  const walk = (el: FakeElement) => {
    for (const n of el.childNodes) {
      if ("data" in n && typeof n.data === "string" && n.data.includes("evil")) holders.push(el);
      else if ("childNodes" in n) walk(n as FakeElement);
    }
  };
  walk(root);
  assert.ok(holders.length > 0, `${what}: shown`);
  for (const el of holders) {
    assert.equal(el.getAttribute("dir"), "auto", `${what}: in an isolated element, not in "${el.textContent}" with the words around it`);
    assert.equal(el.textContent, balanced(text), `${what}: the element holds it alone, balanced`);
  }
}

describe("web: bidi controls in names and texts", () => {
  it("balances a text's controls: each one it opens is closed at its end, a closer of nothing is dropped", () => {
    assert.equal(balanced("plain"), "plain");
    assert.equal(balanced(EVIL), `${RLO}evil\u202c`);
    assert.equal(balanced(ESCAPING), `${RLO}evil\u202c`, "the PDI closes none of its own: it would have closed the isolate around it");
    assert.equal(balanced("a\u2067b\u202ec"), "a\u2067b\u202ec\u202c\u2069", "innermost first");
    assert.equal(balanced("\u2067a\u202eb\u2069c\u202c"), "\u2067a\u202eb\u2069c", "a PDI closes the embeddings inside its isolate; the PDF after it closes nothing");
    assert.equal(balanced("\u202ba\u202cb\u202c"), "\u202ba\u202cb");
    assert.equal(isolate(ESCAPING), `\u2068${RLO}evil\u202c${PDI}`);
  });

  describe("in the page", () => {
    const browser = fakeBrowser();
    before(() => browser.install());
    after(() => browser.uninstall());

    it("isolates names and texts in the chat list", async () => {
      const { channelItem, userItem } = await import("../../web/src/views/sidebar.js");
      const channel = create(ChannelSchema, {
        channelId: 5n,
        kind: ChannelKind.GROUP,
        title: EVIL,
        memberCount: 3,
        lastMessage: { ...message(5n, 1n, `${ESCAPING} text`), sentAt: timestampFromMs(Date.now()) },
      });
      const row = channelItem(
        { channel, now: Date.now(), name: EVIL, senderName: ESCAPING, mine: false, active: false, typing: false, muted: false, pinned: false, markedUnread: false },
        () => {},
      ) as unknown as FakeElement;
      assertIsolated(row.querySelector(".channel-name")!, EVIL, "the group's title");
      const last = row.querySelector("[data-testid=channel-last]")!;
      const parts = last.childNodes.map((n) => n.textContent);
      assert.deepEqual(parts, [balanced(ESCAPING), ": ", balanced(`${ESCAPING} text`)], "the sender and the text each apart");
      for (const el of last.querySelectorAll("bdi")) assert.equal(el.getAttribute("dir"), "auto");
      const user = userItem({ userId: 7n, username: "u", displayName: EVIL } as never, () => {}) as unknown as FakeElement;
      assertIsolated(user, EVIL, "a search result's name");
    });

    it("isolates names and texts in the open chat: sender, text, quote, reactions, Seen by", async () => {
      const { messageList } = await import("../../web/src/views/messages.js");
      const quoted = { ...message(9n, 1n, `${ESCAPING} quoted`), sentAt: timestampFromMs(Date.now() - 1000) };
      const reply = {
        ...message(9n, 2n, `${ESCAPING} reply`),
        sentAt: timestampFromMs(Date.now()),
        replyToSeq: 1n,
        reactions: [create(ReactionSchema, { userId: 2n, emoji: "👍" })],
      };
      const mine = { ...message(9n, 3n, "mine", 1n), sentAt: timestampFromMs(Date.now()) };
      const nodes = messageList({
        now: Date.now(), messages: [quoted, reply, mine], pending: [], me: 1n, group: true, readByOthers: 3n, moderator: false,
        seenBy: { seq: 3n, names: [ESCAPING, "Bob"], everyone: false },
        editing: 0n, replying: 0n, flash: 0n, reacting: 0n, saving: new Map(),
        name: (id) => (id === 1n ? "You" : ESCAPING), retry() {}, discard() {}, edit() {}, remove() {}, reply() {}, openReactions() {}, react() {},
        quoted: (seq) => (seq === 1n ? quoted : undefined), jump() {},
      } as Parameters<typeof messageList>[0]);
      const root = document.createElement("div") as unknown as FakeElement;
      root.append(...(nodes as never[]));
      const [first, second] = root.querySelectorAll("[data-testid=message]");
      assertIsolated(first!.querySelector(".sender")!, ESCAPING, "a sender's name");
      assertIsolated(first!.querySelector("[data-testid=message-text]")!, `${ESCAPING} quoted`, "a message's text");
      assertIsolated(second!.querySelector("[data-testid=message-quote]")!.querySelector("[data-testid=quote-sender]")!, ESCAPING, "a quote's sender");
      assertIsolated(second!.querySelector("[data-testid=quote-text]")!, `${ESCAPING} quoted`, "a quote's text");
      const chip = second!.querySelector("[data-testid=reaction]")!;
      assert.equal(chip.getAttribute("title"), `${isolate(ESCAPING)} reacted with 👍`, "a tooltip isolates each name in its string");
      const seen = root.querySelector("[data-testid=seen-by]")!;
      assertIsolated(seen, ESCAPING, "a name in Seen by");
      assert.equal(seen.textContent, `Seen by ${balanced(ESCAPING)}, Bob`);
    });
  });

  describe("in the app", () => {
    const { browser, start } = appSuite();

    it("isolates a name in the chat's title, who is typing, a note and the reply bar", async () => {
      const server = new FakeServer();
      server.addChat(63n, { title: ESCAPING }, 2);
      // Every other user is called ESCAPING.
      (server as unknown as { handlers: Record<string, (req: Record<string, unknown>) => unknown> }).handlers.getUsers = (req) => ({
        users: (req.userIds as bigint[]).map((userId) => create(UserSchema, { userId, username: `u${userId}`, displayName: ESCAPING })),
      });
      const r = await start(server);
      r.scroller().clientHeight = 400;
      browser.go("#/c/63");
      await waitFor(() => r.shownSeqs().length === 2, "the chat open");
      const root = browser.root;
      assertIsolated(root.querySelector("[data-testid=chat-title]")!, ESCAPING, "the chat's title");

      r.socket().push({ kind: { case: "typing", value: { channelId: 63n, userId: PEER } } });
      await waitFor(() => root.querySelector("[data-testid=typing]")!.textContent.endsWith("is typing…"), "typing shown");
      const typing = root.querySelector("[data-testid=typing]")!;
      assertIsolated(typing, ESCAPING, "who is typing");
      assert.equal(typing.textContent, `${balanced(ESCAPING)} is typing…`);

      const renamed = { ...message(63n, 3n, ""), note: create(ChannelNoteSchema, { kind: ChannelNoteKind.TITLE_CHANGED, title: ESCAPING }) };
      server.history.get("63")!.push(renamed);
      r.deliver(renamed);
      await waitFor(() => root.querySelector("[data-testid=note]") !== null, "the note shown");
      // A string, which the chat list shows too: each name and the title an isolate of its own in it.
      assert.equal(root.querySelector("[data-testid=note]")!.textContent, `${isolate(ESCAPING)} renamed the group to “${isolate(ESCAPING)}”`);
      await waitFor(() => r.rows().find((row) => row.id === "63")!.last.includes("renamed"), "the note in the chat list");
      assert.equal(r.rows().find((row) => row.id === "63")!.last, `${isolate(ESCAPING)} renamed the group to “${isolate(ESCAPING)}”`);

      root.querySelector("[data-testid=message]")!.querySelector("[data-testid=reply-message]")!.dispatchEvent(new FakeEvent("click"));
      await settle();
      assertIsolated(root.querySelector("[data-testid=reply-name]")!, ESCAPING, "the reply bar's name");
    });
  });
});
