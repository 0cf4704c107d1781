import assert from "node:assert/strict";
import http2 from "node:http2";
import { PUBLIC_MAX_CONCURRENT_STREAMS } from "../../internal/grpc/listener.js";
import { removeDataDir, startChatd } from "../support/chatd.js";
import { startRole, useDeployment } from "../support/processes.js";

/** What the listener at `url` tells a new connection of its streams per connection. */
async function advertisedStreams(url: string): Promise<number | undefined> {
  const client = http2.connect(url);
  try {
    await new Promise((resolve, reject) => {
      client.once("remoteSettings", resolve);
      client.once("error", reject);
    });
    return client.remoteSettings.maxConcurrentStreams;
  } finally {
    client.destroy();
  }
}

// The gRPC listeners of chatd, the api and the gateway set no limit on a connection's streams
// (Node's default): one TCP connection could open any number of realtime sessions or calls.
// The limit's behaviour is pinned in internal/grpc/listener.test.ts; here, that each role has it.
describe("public gRPC listeners: streams per connection", function () {
  this.timeout(120_000);
  const deployment = useDeployment("streams");

  it("chatd", async () => {
    const chatd = await startChatd();
    try {
      assert.equal(await advertisedStreams(chatd.grpcUrl), PUBLIC_MAX_CONCURRENT_STREAMS);
    } finally {
      await chatd.stop();
      removeDataDir(chatd.dataDir);
    }
  });

  it("api and gateway", async () => {
    const api = await startRole("api", deployment.env);
    // The gateway starts on the token key the api wrote.
    const gateway = await startRole("gateway", deployment.env);
    try {
      assert.equal(await advertisedStreams(String(api.info.grpc)), PUBLIC_MAX_CONCURRENT_STREAMS);
      assert.equal(await advertisedStreams(String(gateway.info.grpc)), PUBLIC_MAX_CONCURRENT_STREAMS);
    } finally {
      await Promise.all([api.stop(), gateway.stop()]);
    }
  });
});
