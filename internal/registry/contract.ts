import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { withTimeout } from "../../test/support/engines.js";
import { waitFor } from "../../test/support/wait.js";
import { DuplicateServerId, type ServerInfo, type ServerRegistry, type ServerWatch } from "./port.js";

export interface RegistryFixture {
  /** The registry the servers register with. */
  registry: ServerRegistry;
  /** The same registry as another process sees it (a gateway); may be `registry` itself. */
  observer: ServerRegistry;
  /** Makes a server's entry vanish as if its lease had expired, from outside the registering process. */
  expire(serverId: string): Promise<void>;
  /** How long a lost entry may take to come back (lease grant + write, plus backoff). */
  regainWithinMs: number;
  dispose(): Promise<void>;
}

/**
 * The ServerRegistry contract. Every adapter runs it unchanged; server ids
 * are unique per test so a shared real etcd can be used.
 */
export function serverRegistryContract(name: string, makeFixture: () => Promise<RegistryFixture>): void {
  describe(`ServerRegistry contract: ${name}`, function () {
    // Above the sum of one test's waits, so a stuck step fails with its own name.
    this.timeout(90_000);
    let fx: RegistryFixture;
    const watches: ServerWatch[] = [];
    beforeEach(async () => {
      fx = await makeFixture();
    });
    afterEach(async () => {
      await Promise.all(watches.splice(0).map((w) => w.close()));
      await fx.dispose();
    });
    const id = (p = "s") => `${p}-${randomUUID().slice(0, 8)}`;
    const watch = async (r: ServerRegistry) => {
      const w = await r.watch();
      watches.push(w);
      return w;
    };
    // Without the registration, which each adapter names its own way.
    const find = (w: ServerWatch, serverId: string) => {
      const found = w.servers().find((s) => s.serverId === serverId);
      if (!found) return found;
      const { registration: _, ...info } = found;
      return info;
    };

    it("shows a registered server to a watch opened later, with its address and load", async () => {
      const serverId = id();
      const reg = await fx.registry.register({ serverId, address: "127.0.0.1:7001", load: 3 });
      assert.equal(reg.live, true);
      const w = await watch(fx.observer);
      assert.deepEqual(find(w, serverId), { serverId, address: "127.0.0.1:7001", load: 3 });
      await reg.close();
    });

    it("tells a watch about joins, load changes and leaves", async () => {
      const w = await watch(fx.observer);
      const changes: ServerInfo[][] = [];
      w.onChange((servers) => changes.push(servers));
      const a = id("a");
      const b = id("b");
      const ra = await fx.registry.register({ serverId: a, address: "10.0.0.1:1", load: 0 });
      const rb = await fx.registry.register({ serverId: b, address: "10.0.0.2:1", load: 5 });
      await waitFor(() => find(w, a) && find(w, b), "both servers in the watch");
      assert.ok(changes.length >= 1, "onChange was called");
      const last = changes[changes.length - 1]!;
      assert.ok(last.some((s) => s.serverId === a) && last.some((s) => s.serverId === b), "listener got the full set");

      await ra.setLoad(42);
      await waitFor(() => find(w, a)?.load === 42, "load 42 of a");
      assert.equal(find(w, b)?.load, 5);

      await rb.close();
      await waitFor(() => !find(w, b), "b gone after close");
      assert.equal(rb.live, false);
      assert.ok(find(w, a), "a still there");
      await ra.close();
      await waitFor(() => !find(w, a), "a gone after close");
    });

    it("refuses a second live registration under the same id, and takes it once the first has left", async () => {
      const serverId = id();
      const first = await fx.registry.register({ serverId, address: "127.0.0.1:7004", load: 1 });
      await assert.rejects(fx.observer.register({ serverId, address: "127.0.0.1:7005", load: 0 }), DuplicateServerId);
      const w = await watch(fx.observer);
      assert.equal(find(w, serverId)?.address, "127.0.0.1:7004", "the first keeps its entry");
      assert.equal(first.live, true);
      await first.close();
      const second = await fx.observer.register({ serverId, address: "127.0.0.1:7005", load: 0 });
      await waitFor(() => find(w, serverId)?.address === "127.0.0.1:7005", "the second's entry");
      await second.close();
    });

    it("coalesces load updates and ends on the latest value", async () => {
      const serverId = id();
      const reg = await fx.registry.register({ serverId, address: "127.0.0.1:7002", load: 0 });
      const w = await watch(fx.observer);
      const seen: number[] = [];
      w.onChange((servers) => {
        const s = servers.find((x) => x.serverId === serverId);
        if (s) seen.push(s.load);
      });
      await Promise.all(Array.from({ length: 100 }, (_, i) => reg.setLoad(i + 1)));
      await waitFor(() => find(w, serverId)?.load === 100, "final load 100");
      assert.ok(seen.length < 100, `updates were coalesced (${seen.length} seen)`);
      for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! >= seen[i - 1]!, `loads never go back: ${seen}`);
      await reg.close();
    });

    it("wakes no watch for a load that is what the entry holds already (chat servers report theirs every second)", async () => {
      const serverId = id();
      const reg = await fx.registry.register({ serverId, address: "127.0.0.1:7006", load: 3 });
      const w = await watch(fx.observer);
      await waitFor(() => find(w, serverId), "registered");
      const seen: number[] = [];
      w.onChange((servers) => {
        const s = servers.find((x) => x.serverId === serverId);
        if (s) seen.push(s.load);
      });
      for (let i = 0; i < 3; i++) await reg.setLoad(3);
      // Changes reach a watch in order: any for the repeats would come before this one.
      await reg.setLoad(4);
      await waitFor(() => find(w, serverId)?.load === 4, "load 4");
      assert.deepEqual(seen, [4]);
      await reg.close();
    });

    it("reports a lost lease, drops the entry, and comes back with the latest load (regained)", async () => {
      const serverId = id();
      const reg = await fx.registry.register({ serverId, address: "127.0.0.1:7003", load: 1 });
      const w = await watch(fx.observer);
      await waitFor(() => find(w, serverId), "registered");
      let lost = 0;
      let regained = 0;
      const sequence: string[] = [];
      w.onChange((servers) => sequence.push(servers.some((s) => s.serverId === serverId) ? "present" : "absent"));
      let liveWhenLost: boolean | undefined;
      reg.onLost(() => {
        lost++;
        liveWhenLost = reg.live;
        sequence.push("lost");
      });
      reg.onRegained(() => {
        regained++;
        sequence.push("regained");
      });

      await withTimeout(fx.expire(serverId), 10_000, "expiring the entry's lease");
      await waitFor(() => lost >= 1, "onLost", 15_000);
      assert.equal(liveWhenLost, false, "not live while lost");
      await reg.setLoad(9); // while lost it is written when the entry comes back; else as usual
      await waitFor(() => regained === 1, "onRegained", fx.regainWithinMs + 10_000);
      assert.equal(reg.live, true, "live again");
      await waitFor(() => find(w, serverId)?.load === 9, `entry back with the latest load (${sequence})`, 15_000);
      assert.ok(sequence.indexOf("absent") >= 0, `the watch saw it vanish: ${sequence}`);
      assert.ok(sequence.indexOf("lost") < sequence.indexOf("regained"), `lost before regained: ${sequence}`);
      assert.equal(lost, 1, `lost once: ${sequence}`);
      await reg.close();
      await waitFor(() => !find(w, serverId), "gone after close", 15_000);
    });

    it("closing the registry removes its servers", async () => {
      const serverId = id();
      await fx.registry.register({ serverId, address: "127.0.0.1:7004", load: 0 });
      const w = await watch(fx.observer);
      await waitFor(() => find(w, serverId), "registered");
      await fx.registry.close();
      await waitFor(() => !find(w, serverId), "gone after registry close");
    });

    it("stops telling a closed watch", async () => {
      const w = await fx.observer.watch();
      let calls = 0;
      w.onChange(() => calls++);
      await w.close();
      const reg = await fx.registry.register({ serverId: id(), address: "127.0.0.1:7005", load: 0 });
      const w2 = await watch(fx.observer);
      await waitFor(() => w2.servers().length > 0, "second watch sees it");
      assert.equal(calls, 0);
      await reg.close();
    });

    it("refuses a malformed server id or load", async () => {
      await assert.rejects(fx.registry.register({ serverId: "a/b", address: "x:1", load: 0 }), /server id/);
      await assert.rejects(fx.registry.register({ serverId: "", address: "x:1", load: 0 }), /server id/);
      await assert.rejects(fx.registry.register({ serverId: id(), address: "x:1", load: Number.NaN }), /load/);
    });
  });
}
