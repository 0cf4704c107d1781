import assert from "node:assert/strict";
import { awkwardMessage } from "../wire/testdata.js";
import { decodeNotificationRequested, encodeNotificationRequested, mentions } from "./records.js";

describe("push records", () => {
  it("tells a mention of a username from a longer name, an address and a sentence's end", () => {
    const yes = ["@bob", "hi @bob!", "@BOB, look", "(@bob)", "ask @bob.", "@bob: now", "x\n@bob"];
    const no = ["bob", "@bobby", "@bob_2", "mail a@bob.example", "x@bob", "@bob.smith", "@ bob", "@bo", ""];
    for (const t of yes) assert.equal(mentions(t, "bob"), true, t);
    for (const t of no) assert.equal(mentions(t, "bob"), false, t);
    assert.equal(mentions("ping @bob.smith", "bob.smith"), true);
    assert.equal(mentions("ping @bob.smith", "bob"), false);
    assert.equal(mentions("@bob @bobby", "bobby"), true, "a later occurrence counts");
    assert.equal(mentions("@", ""), false, "a deleted account (no username) is never mentioned");
  });

  it("carries the mention flag only when set", () => {
    const base = { userId: 5n, message: awkwardMessage, senderName: "Alice", channelTitle: "" };
    assert.deepStrictEqual(decodeNotificationRequested(encodeNotificationRequested(base)), base);
    const mentioned = { ...base, mentioned: true };
    assert.deepStrictEqual(decodeNotificationRequested(encodeNotificationRequested(mentioned)), mentioned);
  });
});
