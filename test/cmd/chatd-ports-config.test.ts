import assert from "node:assert/strict";
import { loadChatdConfig } from "../../cmd/chatd/config.js";
import { ConfigError } from "../../internal/config/env.js";

describe("chatd configuration: CHAT_HTTP_PORT and CHAT_GRPC_PORT", () => {
  it("refuses one port for both listeners, naming both variables; 0 for both picks two free ones", () => {
    const refused = (env: Record<string, string>, port: number) =>
      assert.throws(
        () => loadChatdConfig(env),
        (e) => e instanceof ConfigError && e.problems.length === 1 && e.problems[0] === `CHAT_GRPC_PORT=${port}: the same port as CHAT_HTTP_PORT; each listener needs its own (0 picks a free one)`,
      );
    refused({ CHAT_HTTP_PORT: "9000", CHAT_GRPC_PORT: "9000" }, 9000);
    refused({ CHAT_GRPC_PORT: "8080" }, 8080); // CHAT_HTTP_PORT's default
    const free = loadChatdConfig({ CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0" });
    assert.deepEqual([free.httpPort, free.grpcPort], [0, 0]);
    const apart = loadChatdConfig({});
    assert.deepEqual([apart.httpPort, apart.grpcPort], [8080, 8081]);
  });

  it("CHAT_OPS_PORT: unset by default (/metrics on CHAT_HTTP_PORT), refused on CHAT_GRPC_PORT's port", () => {
    assert.equal(loadChatdConfig({}).opsPort, undefined);
    assert.equal(loadChatdConfig({ CHAT_OPS_PORT: "0" }).opsPort, 0);
    assert.throws(
      () => loadChatdConfig({ CHAT_OPS_PORT: "8081" }),
      (e) => e instanceof ConfigError && e.problems[0] === "CHAT_OPS_PORT=8081: the same port as CHAT_GRPC_PORT; each listener needs its own (0 picks a free one)",
    );
  });
});
