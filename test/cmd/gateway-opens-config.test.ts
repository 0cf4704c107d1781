import assert from "node:assert/strict";
import { readGatewayConfig } from "../../cmd/gateway/config.js";
import { ConfigError } from "../../internal/config/env.js";

describe("CHAT_GATEWAY_MAX_OPENS_IN_FLIGHT", () => {
  it("defaults to 32 unanswered session opens per chat server, and takes another", () => {
    assert.equal(readGatewayConfig({}).maxOpensInFlight, 32);
    assert.equal(readGatewayConfig({ CHAT_GATEWAY_MAX_OPENS_IN_FLIGHT: "128" }).maxOpensInFlight, 128);
  });

  it("refuses at start a count that is no whole number from 1 to 10000, naming the variable", () => {
    for (const value of ["0", "-1", "10001", "1.5", "many"]) {
      assert.throws(
        () => readGatewayConfig({ CHAT_GATEWAY_MAX_OPENS_IN_FLIGHT: value }),
        (e) => e instanceof ConfigError && e.problems.some((p) => p.startsWith("CHAT_GATEWAY_MAX_OPENS_IN_FLIGHT")),
        JSON.stringify(value),
      );
    }
  });
});
