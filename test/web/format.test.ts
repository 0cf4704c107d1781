import { strict as assert } from "node:assert";
import { create } from "@bufbuild/protobuf";
import { ChannelKind, ChannelSchema } from "../../gen/es/chat/v1/types_pb.js";
import { excerpt, preview } from "../../web/src/format.js";
import { fakeBrowser } from "./fake-browser.js";

// Texts cut for the chat list, a quote or the edit bar, and an avatar's
// initials: by what a reader takes for one character, never inside one;
// and the chat list's words for a group with nothing in it yet.
describe("web: the words of the chat list and avatars", () => {
  it("cuts a preview between whole characters, not inside an emoji of several code points or a letter with its accent", () => {
    const before = "a".repeat(78);
    assert.equal(preview(`${before}👨‍👩‍👧 and more`), `${before}👨‍👩‍👧…`, "the family whole, not its first person");
    assert.equal(preview(`${before}🇯🇵🇫🇷 trip`), `${before}🇯🇵…`, "a flag is two code points");
    assert.equal(preview(`${before}e\u0301e\u0301 more`), `${before}e\u0301…`, "the accent stays with its letter");
    assert.equal(preview("👍🏽".repeat(80)), "👍🏽".repeat(80), "eighty characters fit, however many code points");
  });

  it("shows a search hit's match in a text with İ before it, whose lower case is two units", () => {
    const text = `${"İSTANBUL ".repeat(30)}${"x ".repeat(60)}the needle, once`;
    assert.match(excerpt(text, ["needle"]), /the needle, once$/);
    // The server's search takes "istanbul" for "İSTANBUL" (its fold drops the dot): so does the excerpt.
    assert.match(excerpt(`${"x ".repeat(100)}İSTANBUL trip`, ["istanbul"]), /İSTANBUL trip$/);
    assert.match(excerpt(`${"x ".repeat(100)}İSTANBUL trip`, ["İstanbul"]), /İSTANBUL trip$/);
  });

  it("cuts a line of a text of 100,000 characters without segmenting all of it", () => {
    // Node 20's V8 (Chrome 113's) segments in time growing with the square of a text's length (65 s for these):
    // a chat list row, a quote or a search hit of a long message froze the page each time it was drawn.
    const long = "a".repeat(100_000);
    const at = performance.now();
    assert.equal(preview(long), `${"a".repeat(79)}…`);
    assert.equal(preview(`e\u0301${"\u0301".repeat(2_000)}${long}`, 3), `e\u0301${"\u0301".repeat(2_000)}a…`, "a character longer than the beginning first read");
    assert.equal(excerpt(`${long} needle`, ["needle"]), `…${"a".repeat(19)} needle`);
    assert.equal(excerpt(`${"e\u0301".repeat(50)} needle ${long}`, ["needle"]).slice(0, 4), "…e\u0301e", "begun at a whole character");
    const took = performance.now() - at;
    assert.ok(took < 200, `took ${took.toFixed(0)} ms`);
  });

  describe("in the page", () => {
    const browser = fakeBrowser();
    before(() => browser.install());
    after(() => browser.uninstall());

    it("takes each word's whole first character", async () => {
      const { avatar } = await import("../../web/src/dom.js");
      assert.equal(avatar("🇯🇵 Trip", "1").textContent, "🇯🇵T");
      assert.equal(avatar("👨‍👩‍👧 family", "1").textContent, "👨‍👩‍👧F");
      assert.equal(avatar("e\u0301lodie", "1").textContent, "E\u0301");
    });

    it("takes a word's first character that shows: a name may start with a right-to-left mark or a zero-width space", async () => {
      const { avatar } = await import("../../web/src/dom.js");
      assert.equal(avatar("\u200F\u05D3\u05E0\u05D9", "1").textContent, "\u05D3");
      assert.equal(avatar("\u200Bbob \u2060smith", "1").textContent, "BS");
      assert.equal(avatar("\u200B ann", "1").textContent, "A", "a word of nothing visible gives no initial");
    });

    it("counts a new group's members in the chat list: one member, two members", async () => {
      const { channelItem } = await import("../../web/src/views/sidebar.js");
      const last = (memberCount: number) =>
        channelItem({ channel: create(ChannelSchema, { channelId: 5n, kind: ChannelKind.GROUP, title: "Solo", memberCount }), now: Date.now(), name: "Solo", mine: false, active: false, typing: false, muted: false, pinned: false, markedUnread: false }, () => undefined)
          .querySelector("[data-testid=channel-last]")!.textContent;
      assert.equal(last(1), "1 member");
      assert.equal(last(2), "2 members");
    });
  });
});
