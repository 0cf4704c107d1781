import assert from "node:assert/strict";
import { readApiConfig } from "../../cmd/api/config.js";
import { readChatServerConfig } from "../../cmd/chat-server/config.js";
import { readGatewayConfig } from "../../cmd/gateway/config.js";
import { ConfigError } from "../../internal/config/env.js";

// As chatd's (chatd-ports-config.test.ts): the second listener on the first one's port failed
// "in use (another copy of this process?)", blaming a process that is not there.
describe("api, gateway and chat-server configuration: one port per listener", () => {
  const refused = (read: (env: NodeJS.ProcessEnv) => unknown, env: Record<string, string>, problem: string) =>
    assert.throws(
      () => read(env),
      (e) => e instanceof ConfigError && e.problems.length === 1 && e.problems[0] === problem,
      JSON.stringify(env),
    );

  it("api: refuses CHAT_GRPC_PORT on CHAT_HTTP_PORT's port, naming both; 0 for both picks two free ones", () => {
    refused(readApiConfig, { CHAT_HTTP_PORT: "9000", CHAT_GRPC_PORT: "9000" }, "CHAT_GRPC_PORT=9000: the same port as CHAT_HTTP_PORT; each listener needs its own (0 picks a free one)");
    refused(readApiConfig, { CHAT_GRPC_PORT: "8080" }, "CHAT_GRPC_PORT=8080: the same port as CHAT_HTTP_PORT; each listener needs its own (0 picks a free one)");
    const free = readApiConfig({ CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0" });
    assert.deepEqual([free.httpPort, free.grpcPort], [0, 0]);
  });

  it("gateway: the same, from its own defaults (8090, 8091)", () => {
    refused(readGatewayConfig, { CHAT_GRPC_PORT: "8090" }, "CHAT_GRPC_PORT=8090: the same port as CHAT_HTTP_PORT; each listener needs its own (0 picks a free one)");
    refused(readGatewayConfig, { CHAT_HTTP_PORT: "8091" }, "CHAT_GRPC_PORT=8091: the same port as CHAT_HTTP_PORT; each listener needs its own (0 picks a free one)");
    assert.deepEqual([readGatewayConfig({}).httpPort, readGatewayConfig({}).grpcPort], [8090, 8091]);
  });

  it("chat-server: refuses CHAT_OPS_PORT on CHAT_GRPC_PORT's port", () => {
    refused(readChatServerConfig, { CHAT_OPS_PORT: "9100" }, "CHAT_OPS_PORT=9100: the same port as CHAT_GRPC_PORT; each listener needs its own (0 picks a free one)");
    assert.equal(readChatServerConfig({ CHAT_GRPC_PORT: "0", CHAT_OPS_PORT: "0" }).opsPort, 0);
  });

  it("api and gateway: CHAT_OPS_PORT is optional (unset: /metrics stays on CHAT_HTTP_PORT) and refused on another listener's port", () => {
    for (const read of [readApiConfig, readGatewayConfig]) {
      assert.equal(read({}).opsPort, undefined);
      assert.equal(read({ CHAT_OPS_PORT: "0" }).opsPort, 0);
      assert.equal(read({ CHAT_OPS_PORT: "9464" }).opsPort, 9464);
      refused(read, { CHAT_HTTP_PORT: "9000", CHAT_OPS_PORT: "9000" }, "CHAT_OPS_PORT=9000: the same port as CHAT_HTTP_PORT; each listener needs its own (0 picks a free one)");
      refused(read, { CHAT_OPS_PORT: "x" }, 'CHAT_OPS_PORT="x": expected an integer from 0 to 65535');
    }
  });
});
