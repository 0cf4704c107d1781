import { strict as assert } from "node:assert";
import { preview } from "../../web/src/format.js";
import { fakeBrowser } from "./fake-browser.js";

// Texts cut for the chat list, a quote or the edit bar, and an avatar's
// initials: by what a reader takes for one character, never inside one.
describe("web: characters cut whole", () => {
  it("cuts a preview between whole characters, not inside an emoji of several code points or a letter with its accent", () => {
    const before = "a".repeat(78);
    assert.equal(preview(`${before}👨‍👩‍👧 and more`), `${before}👨‍👩‍👧…`, "the family whole, not its first person");
    assert.equal(preview(`${before}🇯🇵🇫🇷 trip`), `${before}🇯🇵…`, "a flag is two code points");
    assert.equal(preview(`${before}e\u0301e\u0301 more`), `${before}e\u0301…`, "the accent stays with its letter");
    assert.equal(preview("👍🏽".repeat(80)), "👍🏽".repeat(80), "eighty characters fit, however many code points");
  });

  describe("avatar initials", () => {
    const browser = fakeBrowser();
    before(() => browser.install());
    after(() => browser.uninstall());

    it("takes each word's whole first character", async () => {
      const { avatar } = await import("../../web/src/dom.js");
      assert.equal(avatar("🇯🇵 Trip", "1").textContent, "🇯🇵T");
      assert.equal(avatar("👨‍👩‍👧 family", "1").textContent, "👨‍👩‍👧F");
      assert.equal(avatar("e\u0301lodie", "1").textContent, "E\u0301");
    });
  });
});
