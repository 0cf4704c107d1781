import assert from "node:assert/strict";
import { loadChatdConfig } from "../../cmd/chatd/config.js";
import { ConfigError } from "../../internal/config/env.js";

// Origins are compared as text with the Origin header a browser sends: one written
// any other way matches no browser, and every request from one is refused silently.
describe("chatd configuration: CHAT_CORS_ORIGINS", () => {
  it("takes origins as browsers send them, any origin when unset", () => {
    assert.deepEqual(loadChatdConfig({}).corsOrigins, []);
    const origins = "https://chat.example, http://localhost:5173,http://127.0.0.1:8080";
    assert.deepEqual(loadChatdConfig({ CHAT_CORS_ORIGINS: origins }).corsOrigins, ["https://chat.example", "http://localhost:5173", "http://127.0.0.1:8080"]);
  });

  it("refuses one no browser sends, naming the variable and what was meant", () => {
    const refused = (value: string, why: RegExp) =>
      assert.throws(
        () => loadChatdConfig({ CHAT_CORS_ORIGINS: `https://ok.example,${value}` }),
        (e) => e instanceof ConfigError && e.problems.length === 1 && new RegExp(`^CHAT_CORS_ORIGINS: ${JSON.stringify(value).replace(/[.*/]/g, "\\$&")} is not an origin as a browser sends it`).test(e.problems[0]!) && why.test(e.problems[0]!),
      );
    refused("https://chat.example/", /did you mean https:\/\/chat\.example\?/);
    refused("https://Chat.Example", /did you mean https:\/\/chat\.example\?/);
    refused("https://chat.example:443", /did you mean https:\/\/chat\.example\?/);
    refused("https://chat.example/app", /did you mean https:\/\/chat\.example\?/);
    refused("*", /expected scheme:\/\/host\[:port\]\); leave it unset to allow any origin$/);
    refused("chat.example", /expected scheme:\/\/host\[:port\]/);
  });
});
