import assert from "node:assert/strict";
import { decodeInboxAppend, encodeInboxAppend, encodeInboxAppends } from "./records.js";
import type { StoredMessage } from "../model/types.js";

describe("pipeline records", () => {
  const m: StoredMessage = {
    messageId: 1234567890123456789n,
    channelId: 9_000_000_000_000_000_001n,
    seq: 42n,
    senderUserId: 18_000_000_000_000_000_000n,
    senderDeviceId: 7n,
    clientMsgId: "c-1",
    text: "héllo 👋 ".repeat(20),
    sentAtMs: 1_764_000_000_123,
  };

  it("encodes the message once for all members, byte for byte what encodeInboxAppend writes for each", () => {
    const users = [1n, 300n, 2n ** 63n + 5n, 18_446_744_073_709_551_615n];
    const many = encodeInboxAppends(users, m);
    users.forEach((u, i) => {
      assert.deepEqual(many[i], encodeInboxAppend(u, m));
      assert.deepEqual(decodeInboxAppend(many[i]!), { userId: u, message: m });
    });
  });
});
