import assert from "node:assert/strict";
import { readApiConfig } from "../../cmd/api/config.js";
import { loadChatdConfig } from "../../cmd/chatd/config.js";
import { readGatewayConfig } from "../../cmd/gateway/config.js";
import { ConfigError } from "../../internal/config/env.js";

// Every process that browsers reach checks CHAT_CORS_ORIGINS at start
// (internal/config/cors.ts has the cases): the api's requests and the
// gateway's WebSocket upgrades refused every browser, with nothing said, for
// an origin written as no browser sends it.
describe("CHAT_CORS_ORIGINS in chatd, the api and the gateway", () => {
  for (const [role, read] of [
    ["chatd", loadChatdConfig],
    ["api", readApiConfig],
    ["gateway", readGatewayConfig],
  ] as const) {
    it(`${role}: takes origins as browsers send them, refuses one they do not`, () => {
      assert.deepEqual(read({ CHAT_CORS_ORIGINS: "https://chat.example" }).corsOrigins, ["https://chat.example"]);
      assert.throws(() => read({ CHAT_CORS_ORIGINS: "https://chat.example/" }), (e) => e instanceof ConfigError && /CHAT_CORS_ORIGINS: "https:\/\/chat.example\/".*did you mean https:\/\/chat\.example\?/.test(e.message));
    });
  }
});
