import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { waitFor } from "../../test/support/wait.js";
import type { Id } from "../model/types.js";
import type { SessionRoutes } from "./port.js";

export interface RoutesFixture {
  routes: SessionRoutes;
  /** Loses every entry, as a restart of the routing store without persistence would. */
  wipe(): Promise<void>;
  /** The adapter of another process on the same store: a chat server restarted under the same id while the old process drains. */
  another(): Promise<SessionRoutes>;
  dispose(): Promise<void>;
}

/**
 * The SessionRoutes contract. Every adapter runs it unchanged; user ids are
 * random per test and server ids unique, so a shared real Redis can be used.
 * `makeFixture(ttlMs)` must honour the TTL it is given.
 */
export function sessionRoutesContract(name: string, makeFixture: (ttlMs: number) => Promise<RoutesFixture>): void {
  describe(`SessionRoutes contract: ${name}`, function () {
    this.timeout(30_000);
    const fixtures: RoutesFixture[] = [];
    const open = async (ttlMs = 60_000) => {
      const fx = await makeFixture(ttlMs);
      fixtures.push(fx);
      return fx.routes;
    };
    afterEach(async () => {
      await Promise.all(fixtures.splice(0).map((f) => f.dispose()));
    });
    const server = (p = "srv") => `${p}-${randomUUID().slice(0, 8)}`;
    let next = BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor(Math.random() * 1_000_000));
    const user = (): Id => next++;

    it("finds the servers of a user, and nothing for a user with no session", async () => {
      const routes = await open();
      const [u1, u2, nobody] = [user(), user(), user()];
      const [a, b] = [server("a"), server("b")];
      await routes.add(u1, a);
      await routes.add(u1, b);
      await routes.add(u2, b);
      await routes.add(u2, b); // twice is once
      const got = await routes.lookup([u1, u2, nobody]);
      assert.deepEqual(got.get(u1), [a, b].sort());
      assert.deepEqual(got.get(u2), [b]);
      assert.equal(got.has(nobody), false);
      assert.equal(got.size, 2);
      assert.equal((await routes.lookup([])).size, 0);
    });

    it("forgets a server for a user when its last session there ends", async () => {
      const routes = await open();
      const u = user();
      const [a, b] = [server("a"), server("b")];
      await routes.add(u, a);
      await routes.add(u, b);
      await routes.remove(u, a);
      assert.deepEqual((await routes.lookup([u])).get(u), [b]);
      await routes.remove(u, b);
      assert.equal((await routes.lookup([u])).has(u), false);
      await routes.remove(u, b); // removing what is not there is fine
      await routes.remove(user(), a);
    });

    it("leaves a user's entry to the process that wrote it last: a restart under the same server id keeps its routes through the old process's drain", async () => {
      const old = await open();
      const restarted = await fixtures[fixtures.length - 1]!.another();
      const s = server();
      const [moved, refreshed, left] = [user(), user(), user()];
      for (const u of [moved, refreshed, left]) await old.add(u, s);
      // The gateways moved two of the old process's users to the new one, which
      // wrote their entries (one by an add, one by a refresh); the old one's drain
      // then ended its sessions and removed their routes.
      await restarted.add(moved, s);
      await restarted.refresh(s, [refreshed]);
      for (const u of [moved, refreshed, left]) await old.remove(u, s);
      const got = await restarted.lookup([moved, refreshed, left]);
      assert.deepEqual(got.get(moved), [s], "the new process's route stays");
      assert.deepEqual(got.get(refreshed), [s], "a refreshed route stays too");
      assert.equal(got.has(left), false, "a route only the old process wrote goes");
      // The new process's own removes still work.
      await restarted.remove(moved, s);
      await restarted.remove(refreshed, s);
      assert.equal((await restarted.lookup([moved, refreshed])).size, 0);
    });

    it("looks up many users at once", async () => {
      const routes = await open();
      const s = server();
      const users = Array.from({ length: 2500 }, () => user());
      const online = users.filter((_, i) => i % 3 === 0);
      await routes.refresh(s, online);
      const got = await routes.lookup([...users, ...online]); // duplicates are fine
      assert.equal(got.size, online.length);
      for (const u of online) assert.deepEqual(got.get(u), [s]);
    });

    it("expires the entries of a server that stops refreshing, not those of one that refreshes", async () => {
      const ttlMs = 600;
      const routes = await open(ttlMs);
      const u = user();
      const [dead, alive] = [server("dead"), server("alive")];
      await routes.add(u, dead);
      await routes.add(u, alive);
      const start = performance.now();
      // `alive` keeps refreshing (a periodic refresh, as a chat server does, at a sixth of the
      // TTL), `dead` does not: `dead` goes, and `alive` stays at every look, past its own first
      // TTL too. Time itself is waited on: the TTL runs on the store's own clock (Redis's), which
      // no test clock moves.
      await waitFor(async () => {
        await routes.refresh(alive, [u]);
        const servers = (await routes.lookup([u])).get(u) ?? [];
        assert.ok(servers.includes(alive), `the refreshed server's entry stays (${Math.round(performance.now() - start)} ms in)`);
        return servers.length === 1 && performance.now() - start >= ttlMs * 1.5;
      }, "the entry of the server that stopped refreshing to expire", ttlMs * 10, ttlMs / 6);
      // And once `alive` stops too, the user has no route left.
      const stopped = performance.now();
      await waitFor(async () => !(await routes.lookup([u])).has(u), "no route once every server stopped refreshing", ttlMs * 5, 20);
      assert.ok(performance.now() - stopped >= ttlMs * 0.5, "not before its TTL");
    });

    it("re-adding (or refreshing) keeps an entry alive past its first TTL", async () => {
      const ttlMs = 600;
      const routes = await open(ttlMs);
      const u = user();
      const s = server();
      await routes.add(u, s);
      const start = performance.now();
      // Looked up at every re-add, until half a TTL past its first. Time itself is waited on: the
      // TTL runs on the store's own clock (Redis's), which no test clock moves.
      await waitFor(async () => {
        await routes.add(u, s);
        assert.deepEqual((await routes.lookup([u])).get(u), [s], `${Math.round(performance.now() - start)} ms in`);
        return performance.now() - start >= ttlMs * 1.5;
      }, "the first TTL to pass", ttlMs * 10, ttlMs / 6);
    });

    it("recovers every entry with refresh after the store lost them all", async () => {
      const fxRoutes = await open();
      const fx = fixtures[fixtures.length - 1]!;
      const [a, b] = [server("a"), server("b")];
      const onA = Array.from({ length: 50 }, () => user());
      const onB = Array.from({ length: 30 }, () => user());
      for (const u of onA) await fxRoutes.add(u, a);
      await fxRoutes.refresh(b, onB);
      await fx.wipe();
      assert.equal((await fxRoutes.lookup([...onA, ...onB])).size, 0, "all lost");
      // Each server's periodic refresh puts its users back.
      await fxRoutes.refresh(a, onA);
      await fxRoutes.refresh(b, onB);
      const got = await fxRoutes.lookup([...onA, ...onB]);
      assert.equal(got.size, onA.length + onB.length);
      for (const u of onA) assert.deepEqual(got.get(u), [a]);
      for (const u of onB) assert.deepEqual(got.get(u), [b]);
    });

    it("refuses a malformed user or server id", async () => {
      const routes = await open();
      await assert.rejects(routes.add(-1n, server()), /user id/);
      await assert.rejects(routes.add(user(), ""), /server id/);
    });
  });
}
