import assert from "node:assert/strict";
import { newInviteCode } from "./invite-code.js";

describe("newInviteCode", () => {
  it("makes 22-character base64url codes, all different, none starting with '-' (read as an option on a command line)", () => {
    // One in 64 random codes starts with "-": among 5,000, one does but for a chance of about 1e-34.
    const codes = Array.from({ length: 5_000 }, newInviteCode);
    for (const c of codes) assert.match(c, /^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/);
    assert.equal(new Set(codes).size, codes.length);
  });
});
