import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { corsHeaders } from "./cors.js";

const request = (origin?: string) => ({ headers: origin === undefined ? {} : { origin } }) as IncomingMessage;

describe("CORS headers of the public HTTP listener", () => {
  it("allows an allowed origin, and any when none is configured", () => {
    assert.equal(corsHeaders(request("https://chat.example"), ["https://chat.example"])["access-control-allow-origin"], "https://chat.example");
    assert.equal(corsHeaders(request("https://any.example"), [])["access-control-allow-origin"], "https://any.example");
  });

  // A cache between browser and api must not hand one origin's answer to another: every answer says it varies by Origin.
  it("says the answer varies by Origin on every answer: allowed, refused and one asked with no Origin", () => {
    for (const [origin, allowed] of [
      ["https://chat.example", ["https://chat.example"]],
      ["https://evil.example", ["https://chat.example"]],
      [undefined, ["https://chat.example"]],
      [undefined, []],
    ] as const) {
      const h = corsHeaders(request(origin), allowed);
      assert.equal(h.vary, "origin", `origin ${origin ?? "none"}, allowed ${allowed.join() || "any"}`);
    }
    assert.equal(corsHeaders(request("https://evil.example"), ["https://chat.example"])["access-control-allow-origin"], undefined);
    assert.equal(corsHeaders(request(), [])["access-control-allow-origin"], undefined);
  });
});
