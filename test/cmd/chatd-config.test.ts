import assert from "node:assert/strict";
import { loadChatdConfig } from "../../cmd/chatd/config.js";
import { ConfigError } from "../../internal/config/env.js";

// chatd's configuration (cmd/chatd/config.ts): the settings read nowhere else.
describe("chatd configuration", () => {
  it("CHAT_REFRESH_REUSE_GRACE_S: 60 s by default, 0 turns it off, past an hour refused", () => {
    assert.equal(loadChatdConfig({}).refreshReuseGraceMs, 60_000);
    assert.equal(loadChatdConfig({ CHAT_REFRESH_REUSE_GRACE_S: "0" }).refreshReuseGraceMs, 0);
    assert.equal(loadChatdConfig({ CHAT_REFRESH_REUSE_GRACE_S: "5" }).refreshReuseGraceMs, 5_000);
    assert.throws(() => loadChatdConfig({ CHAT_REFRESH_REUSE_GRACE_S: "3601" }), (e) => e instanceof ConfigError && /CHAT_REFRESH_REUSE_GRACE_S/.test(e.message));
  });
});
