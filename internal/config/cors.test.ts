import assert from "node:assert/strict";
import { readCorsOrigins } from "./cors.js";
import { ConfigError, EnvReader } from "./env.js";

// Origins are compared as text with the Origin header a browser sends: one written
// any other way matches no browser, and every request from one is refused silently.
describe("CHAT_CORS_ORIGINS", () => {
  const read = (value?: string) => {
    const r = new EnvReader(value === undefined ? {} : { CHAT_CORS_ORIGINS: value });
    const origins = readCorsOrigins(r);
    r.done();
    return origins;
  };

  it("takes origins as browsers send them, any origin when unset", () => {
    assert.deepEqual(read(), []);
    assert.deepEqual(read("https://chat.example, http://localhost:5173,http://127.0.0.1:8080"), ["https://chat.example", "http://localhost:5173", "http://127.0.0.1:8080"]);
  });

  it("refuses one no browser sends, naming the variable and what was meant", () => {
    const refused = (value: string, why: RegExp) =>
      assert.throws(
        () => read(`https://ok.example,${value}`),
        (e) =>
          e instanceof ConfigError &&
          e.problems.length === 1 &&
          e.problems[0]!.startsWith(`CHAT_CORS_ORIGINS: ${JSON.stringify(value)} is not an origin as a browser sends it`) &&
          why.test(e.problems[0]!),
        value,
      );
    refused("https://chat.example/", /did you mean https:\/\/chat\.example\?/);
    refused("https://Chat.Example", /did you mean https:\/\/chat\.example\?/);
    refused("https://chat.example:443", /did you mean https:\/\/chat\.example\?/);
    refused("https://chat.example/app", /did you mean https:\/\/chat\.example\?/);
    refused("*", /expected scheme:\/\/host\[:port\]\); leave it unset to allow any origin$/);
    refused("chat.example", /expected scheme:\/\/host\[:port\]/);
  });
});
