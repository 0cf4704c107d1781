import type { Inbox } from "../../internal/messages/inbox.js";

/** An inbox with nothing in it and nothing to keep, for tests of what sits around one; `over` gives it what a test needs. */
export function stubInbox(over: Partial<Inbox> = {}): Inbox {
  return {
    append: () => Promise.reject(new Error("not in this test")),
    readAfter: async () => [],
    head: async () => 0n,
    getCursor: async () => 0n,
    advanceCursor: async () => {},
    dropCursor: async () => {},
    emptyTexts: async () => {},
    ...over,
  };
}
