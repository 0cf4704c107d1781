import assert from "node:assert/strict";
import { decodeInboxAppend, encodeInboxAppend, encodeInboxAppends } from "./records.js";
import { awkwardMessage } from "../wire/testdata.js";

describe("pipeline records", () => {
  const m = awkwardMessage;

  it("encodes the message once for all members, byte for byte what encodeInboxAppend writes for each", () => {
    const users = [1n, 300n, 2n ** 63n + 5n, 18_446_744_073_709_551_615n];
    const many = encodeInboxAppends(users, m);
    users.forEach((u, i) => {
      assert.deepEqual(many[i], encodeInboxAppend(u, m));
      assert.deepEqual(decodeInboxAppend(many[i]!), { userId: u, message: m });
    });
  });
});
