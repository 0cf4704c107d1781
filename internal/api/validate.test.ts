import assert from "node:assert/strict";
import { ChatError } from "../model/errors.js";
import { displayName, groupTitle } from "./validate.js";

const refused = (f: () => unknown, message: RegExp) =>
  assert.throws(f, (err: unknown) => err instanceof ChatError && err.code === "invalid_argument" && message.test(err.message));

describe("names and titles", () => {
  it("refuses bidirectional overrides, which make one name show as another", () => {
    refused(() => displayName("\u202Eevil"), /bidirectional/);
    refused(() => groupTitle("Trip \u2066x\u2069"), /bidirectional/);
  });

  it("refuses a name with nothing visible in it", () => {
    refused(() => groupTitle("\u200b"), /visible/);
    refused(() => displayName("\u200b\u200d \u3000"), /visible/);
    refused(() => displayName("\u0301"), /visible/);
    // Letters and symbols by category that show as nothing: the blank names of other apps.
    refused(() => displayName("\u3164"), /visible/);
    refused(() => displayName("\u115F\u1160 \uFFA0"), /visible/);
    refused(() => groupTitle("\u2800\u2800"), /visible/);
    // Unassigned, but default ignorable: shown as nothing, as Unicode asks of a renderer that does not know them.
    refused(() => displayName("\u{E0080}\u{E0081}"), /visible/);
    refused(() => groupTitle("\u2065 \uFFF0"), /visible/);
  });

  it("refuses line and paragraph separators, which break a name over lines as a newline does", () => {
    refused(() => displayName("Alice\u2028(admin)"), /line or paragraph separators/);
    refused(() => groupTitle("Trip\u2029Pinned: pay here"), /line or paragraph separators/);
  });

  it("keeps names in any script, with emoji sequences and right-to-left marks", () => {
    assert.equal(displayName(" 👨‍👩‍👧 family "), "👨‍👩‍👧 family");
    assert.equal(displayName("\u05D3\u05E0\u05D9\u200F"), "\u05D3\u05E0\u05D9\u200F");
    assert.equal(groupTitle("Café ☕"), "Café ☕");
    assert.equal(displayName("한글 \u3164이름"), "한글 \u3164이름", "a filler beside what shows is left be");
  });
});
