import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { engineScope } from "../support/engine-scope.js";
import { engineConfig } from "../support/engines.js";
import { startRole, stopAll } from "../support/processes.js";

/** A loopback port nothing listens on: a Redis that is away. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe("distributed mode: health", function () {
  this.timeout(180_000);
  const scope = engineScope(engineConfig(), "health");
  const keysDir = mkdtempSync(join(tmpdir(), "chat-health-keys-"));
  const common = { ...scope.env, CHAT_KEYS_DIR: keysDir, CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0", CHAT_OPS_PORT: "0" };
  after(async () => {
    await stopAll();
    await scope.drop();
    rmSync(keysDir, { recursive: true, force: true });
  });

  it("answers /healthz 503 naming Redis from the api and the presence sweeper while Redis is away, 200 from an api with every engine", async () => {
    const healthy = await startRole("api", common);
    const ok = await fetch(`${healthy.info.http}/healthz`);
    assert.equal(ok.status, 200, await ok.text());

    const away = { ...common, CHAT_REDIS_URL: `redis://127.0.0.1:${await deadPort()}` };
    const api = await startRole("api", away);
    const res = await fetch(`${api.info.http}/healthz`);
    const body = await res.text();
    assert.equal(res.status, 503, body);
    assert.match(body, /redis/);

    const presence = await startRole("presence", away);
    const swept = await fetch(`http://127.0.0.1:${presence.info.ops}/healthz`);
    assert.equal(swept.status, 503);
    assert.match(await swept.text(), /redis/);
  });
});
