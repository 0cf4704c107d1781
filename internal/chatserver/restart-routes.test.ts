// A chat server restarted under the same CHAT_SERVER_ID while the old process still drains,
// each process with its own RedisSessionRoutes on the real Redis of scripts/engines.sh.
// Fails (never skips) when Redis is unreachable.
import assert from "node:assert/strict";
import { engineConfig, uniqueName } from "../../test/support/engines.js";
import { stubInbox } from "../../test/support/inbox.js";
import { waitFor } from "../../test/support/wait.js";
import type { Id } from "../model/types.js";
import { RedisSessionRoutes } from "../routing/redis.js";
import { ChatServer } from "./server.js";

describe("a chat server restarted under the same id while the old process drains (real Redis)", function () {
  this.timeout(30_000);

  it("keeps the routes the new process wrote for the users who moved to it", async () => {
    const keyPrefix = `${uniqueName("test:restart-routes")}:`;
    const startProcess = () => {
      const routes = new RedisSessionRoutes({ url: engineConfig().redisUrl, keyPrefix });
      const server = new ChatServer({ serverId: "cs1", inbox: stubInbox(), channels: {} as never, submitter: {} as never, routes });
      let welcomed = 0;
      const open = (userId: Id) =>
        server.open({ userId, deviceId: 1n, tokenExpiresAtMs: Date.now() + 60_000, encoding: "proto" }, { send: () => void welcomed++, bufferedBytes: () => 0, close: () => {} });
      return { routes, server, open, welcomed: () => welcomed };
    };
    const [old, restarted] = [startProcess(), startProcess()];
    try {
      old.open(1n);
      old.open(2n);
      await waitFor(() => old.welcomed() === 2, "both sessions started on the old process (their routes written)");
      // User 1's device moved to the new process (its gateway saw the old one leave
      // etcd), whose session starts once its route is written; then the old one drains.
      restarted.open(1n);
      await waitFor(() => restarted.welcomed() === 1, "the session started on the new process");
      assert.equal(await old.server.drain(), true, "the old process's removes landed");
      const routes = await restarted.routes.lookup([1n, 2n]);
      assert.deepStrictEqual(routes.get(1n), ["cs1"], "the moved user keeps the new process's route");
      assert.equal(routes.has(2n), false, "the route only the old process held is gone");
    } finally {
      await restarted.server.drain();
      await Promise.all([old.routes.close(), restarted.routes.close()]);
    }
  });
});
