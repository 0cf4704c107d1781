import assert from "node:assert/strict";
import { readChatServerConfig } from "../../cmd/chat-server/config.js";
import { loadChatdConfig } from "../../cmd/chatd/config.js";
import { readPresenceConfig } from "../../cmd/presence/config.js";
import { ConfigError } from "../../internal/config/env.js";

// CHAT_PRESENCE_GRACE_MS against CHAT_HEARTBEAT_INTERVAL_MS, in every process that keeps presence.
describe("presence grace period configuration", () => {
  const readers: Array<[string, (env: NodeJS.ProcessEnv) => { presence: { graceMs: number } }]> = [
    ["chatd", loadChatdConfig],
    ["chat-server", readChatServerConfig],
    ["presence", readPresenceConfig],
  ];

  for (const [role, read] of readers) {
    it(`${role}: refuses a grace period shorter than two heartbeat intervals, naming the variable and the bound`, () => {
      // Just over one interval: a heartbeat held up behind a slow store call lands after a sweep expired the device.
      for (const grace of ["1001", "1999"]) {
        assert.throws(
          () => read({ CHAT_HEARTBEAT_INTERVAL_MS: "1000", CHAT_PRESENCE_GRACE_MS: grace }),
          (e) => e instanceof ConfigError && new RegExp(`CHAT_PRESENCE_GRACE_MS=${grace}`).test(e.message) && /at least 2000 ms/.test(e.message),
          grace,
        );
      }
      assert.equal(read({ CHAT_HEARTBEAT_INTERVAL_MS: "1000", CHAT_PRESENCE_GRACE_MS: "2000" }).presence.graceMs, 2_000);
      // The default follows the interval and always passes.
      assert.equal(read({ CHAT_HEARTBEAT_INTERVAL_MS: "600000" }).presence.graceMs, 1_210_000);
      assert.equal(read({}).presence.graceMs, 60_000);
    });
  }
});
