import { strict as assert } from "node:assert";
import { message } from "./chat-harness.js";
import { fakeBrowser } from "./fake-browser.js";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";

// A message's time is the clock of the chat server that took it, and the
// chat's order is its seq: two senders on servers whose clocks differ by a
// second can land in seq order with the second's time before the first's.
describe("web: message times in a chat, from chat servers whose clocks differ", () => {
  const browser = fakeBrowser();
  before(() => browser.install());
  after(() => browser.uninstall());

  it("never shows a time before the message above it, nor the day going back and forth across midnight", async () => {
    const { messageList } = await import("../../web/src/views/messages.js");
    const midnight = new Date(2026, 11, 6).getTime();
    const at = (ms: number) => ({ ...message(9n, 0n), sentAt: timestampFromMs(ms) });
    const messages = [
      { ...at(midnight + 300), seq: 1n }, // through a server a second ahead
      { ...at(midnight - 200), seq: 2n }, // sent just after, through one on time
      { ...at(midnight + 1_000), seq: 3n },
    ];
    const nodes = messageList({
      now: midnight + 60_000, messages, pending: [], me: 1n, group: false, readByOthers: 0n, moderator: false,
      editing: 0n, replying: 0n, flash: 0n, reacting: 0n, saving: new Map(),
      name: () => "", retry() {}, discard() {}, edit() {}, remove() {}, reply() {}, openReactions() {}, react() {}, quoted: () => undefined, jump() {},
    } as Parameters<typeof messageList>[0]);
    const root = document.createElement("div");
    root.append(...nodes);
    assert.deepEqual([...root.querySelectorAll(".day")].map((d) => d.textContent), ["Today"], "one day separator");
    const shown = [...root.querySelectorAll("time")].map((t) => Date.parse(t.getAttribute("datetime")!));
    assert.ok(shown.every((ms, i) => i === 0 || ms >= shown[i - 1]!), `times shown in seq order: ${shown.map((ms) => ms - midnight).join(", ")}`);
  });
});
