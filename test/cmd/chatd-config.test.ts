import assert from "node:assert/strict";
import { readApiConfig } from "../../cmd/api/config.js";
import { loadChatdConfig } from "../../cmd/chatd/config.js";
import { readGatewayConfig } from "../../cmd/gateway/config.js";
import { ConfigError } from "../../internal/config/env.js";

// chatd's configuration (cmd/chatd/config.ts): the settings read nowhere else.
describe("chatd configuration", () => {
  it("CHAT_REFRESH_REUSE_GRACE_S: 60 s by default, 0 turns it off, past an hour refused", () => {
    assert.equal(loadChatdConfig({}).refreshReuseGraceMs, 60_000);
    assert.equal(loadChatdConfig({ CHAT_REFRESH_REUSE_GRACE_S: "0" }).refreshReuseGraceMs, 0);
    assert.equal(loadChatdConfig({ CHAT_REFRESH_REUSE_GRACE_S: "5" }).refreshReuseGraceMs, 5_000);
    assert.throws(() => loadChatdConfig({ CHAT_REFRESH_REUSE_GRACE_S: "3601" }), (e) => e instanceof ConfigError && /CHAT_REFRESH_REUSE_GRACE_S/.test(e.message));
  });

  it("CHAT_DRAIN_GRACE_MS: 5 s by default, as the api and a gateway read it; 0 cuts at once; past 20 s (the stop's bound less 5 s) refused", () => {
    for (const read of [loadChatdConfig, readApiConfig, readGatewayConfig]) {
      assert.equal(read({}).drainGraceMs, 5_000);
      assert.equal(read({ CHAT_DRAIN_GRACE_MS: "0" }).drainGraceMs, 0);
      assert.equal(read({ CHAT_DRAIN_GRACE_MS: "20000" }).drainGraceMs, 20_000);
      assert.throws(() => read({ CHAT_DRAIN_GRACE_MS: "20001" }), (e) => e instanceof ConfigError && /CHAT_DRAIN_GRACE_MS/.test(e.message));
    }
  });

  it("CHAT_INBOX_RETENTION_S: 30 days by default, as in the cluster; 0 keeps entries forever; a negative one refused", () => {
    assert.equal(loadChatdConfig({}).inboxRetentionMs, 30 * 86_400_000);
    assert.equal(loadChatdConfig({ CHAT_INBOX_RETENTION_S: "0" }).inboxRetentionMs, 0);
    assert.equal(loadChatdConfig({ CHAT_INBOX_RETENTION_S: "3600" }).inboxRetentionMs, 3_600_000);
    assert.throws(() => loadChatdConfig({ CHAT_INBOX_RETENTION_S: "-1" }), (e) => e instanceof ConfigError && /CHAT_INBOX_RETENTION_S/.test(e.message));
  });

  it("CHAT_MAX_NEW_DIRECT_PER_DAY: read by chatd as by the api, 200 by default, 0 turns it off, a negative one refused", () => {
    assert.equal(loadChatdConfig({}).apiLimits.maxNewDirectPerDay, 200);
    assert.equal(loadChatdConfig({ CHAT_MAX_NEW_DIRECT_PER_DAY: "0" }).apiLimits.maxNewDirectPerDay, 0);
    assert.equal(loadChatdConfig({ CHAT_MAX_NEW_DIRECT_PER_DAY: "3" }).apiLimits.maxNewDirectPerDay, 3);
    assert.throws(() => loadChatdConfig({ CHAT_MAX_NEW_DIRECT_PER_DAY: "-1" }), (e) => e instanceof ConfigError && /CHAT_MAX_NEW_DIRECT_PER_DAY="-1"/.test(e.message));
  });

  it("CHAT_REDIS_URL: checked when presence is kept in Redis, ignored otherwise", () => {
    assert.equal(loadChatdConfig({ CHAT_REDIS_URL: "redis://x:99999" }).presence.store, "memory");
    assert.equal(loadChatdConfig({ CHAT_PRESENCE_STORE: "redis", CHAT_REDIS_URL: "redis://r:6380" }).presence.redisUrl, "redis://r:6380");
    assert.throws(
      () => loadChatdConfig({ CHAT_PRESENCE_STORE: "redis", CHAT_REDIS_URL: "redis://r:99999" }),
      (e) => e instanceof ConfigError && /CHAT_REDIS_URL="redis:\/\/r:99999"/.test(e.message),
    );
  });
});
