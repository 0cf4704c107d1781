import assert from "node:assert/strict";
import { readGatewayConfig } from "../../cmd/gateway/config.js";
import { ConfigError } from "../../internal/config/env.js";

// The gateway process's configuration (cmd/gateway). Its WebSocket upgrade compares a
// browser's Origin with CHAT_CORS_ORIGINS as text: an origin written any other way than
// browsers send it refused every browser's socket (403) with nothing said.
describe("gateway configuration: CHAT_CORS_ORIGINS", () => {
  it("takes origins as browsers send them, any origin when unset", () => {
    assert.deepEqual(readGatewayConfig({}).corsOrigins, []);
    const origins = "https://chat.example, http://localhost:5173,http://127.0.0.1:8080";
    assert.deepEqual(readGatewayConfig({ CHAT_CORS_ORIGINS: origins }).corsOrigins, ["https://chat.example", "http://localhost:5173", "http://127.0.0.1:8080"]);
  });

  it("refuses at start one no browser sends, naming the variable and what was meant", () => {
    const refused = (value: string, why: RegExp) =>
      assert.throws(
        () => readGatewayConfig({ CHAT_CORS_ORIGINS: `https://ok.example,${value}` }),
        (e) => e instanceof ConfigError && e.problems.length === 1 && e.problems[0]!.startsWith(`CHAT_CORS_ORIGINS: ${JSON.stringify(value)} is not an origin as a browser sends it`) && why.test(e.problems[0]!),
        value,
      );
    refused("https://chat.example/", /did you mean https:\/\/chat\.example\?/);
    refused("https://Chat.Example", /did you mean https:\/\/chat\.example\?/);
    refused("https://chat.example:443", /did you mean https:\/\/chat\.example\?/);
    refused("*", /expected scheme:\/\/host\[:port\]\); leave it unset to allow any origin$/);
  });
});
