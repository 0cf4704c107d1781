import assert from "node:assert/strict";
import type { PushEndpoint, PushEndpointStore } from "./port.js";

export interface PushEndpointStoreHandle {
  store: PushEndpointStore;
  dispose(): Promise<void>;
}

/** The PushEndpointStore contract, run unchanged against every adapter (ids random per test). */
export function pushEndpointStoreContract(name: string, make: () => Promise<PushEndpointStoreHandle>): void {
  describe(`PushEndpointStore contract: ${name}`, function () {
    this.timeout(20_000);
    let h: PushEndpointStoreHandle;
    let store: PushEndpointStore;
    beforeEach(async () => {
      h = await make();
      store = h.store;
    });
    afterEach(async () => {
      await h?.dispose();
    });
    const id = () => (BigInt(Math.floor(Math.random() * 2 ** 31)) << 32n) | BigInt(Math.floor(Math.random() * 2 ** 32));
    const web = (userId: bigint, deviceId: bigint, address = `https://push.example/${id()}`): PushEndpoint => ({
      userId,
      deviceId,
      kind: "web_push",
      address,
      p256dh: "BPk",
      auth: "AUTH",
      apnsTopic: "",
      hidePreview: false,
      muted: false,
      updatedAtMs: 1000,
    });

    it("keeps one endpoint per device and lists a user's endpoints by device", async () => {
      const u = id();
      const a = web(u, 2n);
      const b: PushEndpoint = { ...web(u, 1n), kind: "apns", address: "ab".repeat(32), p256dh: "", auth: "", apnsTopic: "com.example.chat" };
      await store.put(a);
      await store.put(b);
      assert.deepEqual(await store.get(u, 2n), a);
      assert.deepEqual(await store.listForUser(u), [b, a]);
      const replaced = { ...a, address: `https://push.example/${id()}`, hidePreview: true, updatedAtMs: 2000 };
      await store.put(replaced);
      assert.deepEqual(await store.listForUser(u), [b, replaced]);
      assert.equal(await store.get(u, 9n), undefined);
      assert.deepEqual(await store.listForUser(id()), []);
    });

    it("moves an address to the device that registered it last", async () => {
      const [u1, u2] = [id(), id()];
      const shared = `https://push.example/${id()}`;
      await store.put(web(u1, 1n, shared));
      await store.put(web(u2, 5n, shared));
      assert.equal(await store.get(u1, 1n), undefined, "the old account no longer gets it");
      assert.equal((await store.get(u2, 5n))?.address, shared);
    });

    it("removes endpoints, and removeIfAddress only while the address is current", async () => {
      const u = id();
      const e = web(u, 1n);
      await store.put(e);
      assert.equal(await store.removeIfAddress(u, 1n, "https://push.example/old"), false);
      assert.ok(await store.get(u, 1n));
      assert.equal(await store.removeIfAddress(u, 1n, e.address), true);
      assert.equal(await store.get(u, 1n), undefined);
      await store.put(e);
      assert.equal(await store.remove(u, 1n), true);
      assert.equal(await store.remove(u, 1n), false);
    });

    it("removes an endpoint found gone only while it is still the registration the send used: the same address registered again stays", async () => {
      const u = id();
      const e = { ...web(u, 1n), kind: "apns" as const, address: "cd".repeat(32), p256dh: "", auth: "", apnsTopic: "com.example.chat" };
      await store.put(e);
      // The app registered its token again after APNs called it inactive, between the send and the removal.
      const again = { ...e, updatedAtMs: 5000 };
      await store.put(again);
      assert.equal(await store.removeIfAddress(u, 1n, e.address, { updatedAtMs: e.updatedAtMs }), false);
      assert.deepEqual(await store.get(u, 1n), again);
      // So with a failing streak: both must match.
      await store.markFailing(u, 1n, e.address, 9000);
      assert.equal(await store.removeIfAddress(u, 1n, e.address, { updatedAtMs: e.updatedAtMs, failingSinceMs: 9000 }), false);
      assert.equal(await store.removeIfAddress(u, 1n, e.address, { updatedAtMs: 5000, failingSinceMs: 7000 }), false);
      assert.ok(await store.get(u, 1n));
      assert.equal(await store.removeIfAddress(u, 1n, e.address, { updatedAtMs: 5000, failingSinceMs: 9000 }), true);
      assert.equal(await store.get(u, 1n), undefined);
      await store.put(again);
      assert.equal(await store.removeIfAddress(u, 1n, e.address, { updatedAtMs: 5000 }), true);
      assert.equal(await store.get(u, 1n), undefined);
    });

    it("removes an endpoint for its failures only while its failing streak is the one named", async () => {
      const u = id();
      const e = web(u, 1n);
      await store.put(e);
      // Not failing at all (a delivery ended the streak), or failing since another time (a new streak): kept.
      assert.equal(await store.removeIfAddress(u, 1n, e.address, { failingSinceMs: 7000 }), false);
      await store.markFailing(u, 1n, e.address, 9000);
      assert.equal(await store.removeIfAddress(u, 1n, e.address, { failingSinceMs: 7000 }), false);
      assert.equal(await store.removeIfAddress(u, 1n, "https://push.example/old", { failingSinceMs: 9000 }), false);
      assert.deepEqual(await store.get(u, 1n), { ...e, failingSinceMs: 9000, failedSends: 1 });
      assert.equal(await store.removeIfAddress(u, 1n, e.address, { failingSinceMs: 9000 }), true);
      assert.equal(await store.get(u, 1n), undefined);
    });

    it("updates settings of a registered device only", async () => {
      const u = id();
      await store.put(web(u, 1n));
      assert.equal(await store.updateSettings(u, 1n, { hidePreview: true, muted: true }, 5000), true);
      const got = await store.get(u, 1n);
      assert.equal(got?.hidePreview, true);
      assert.equal(got?.muted, true);
      assert.equal(got?.updatedAtMs, 5000);
      assert.equal(await store.updateSettings(u, 2n, { hidePreview: true, muted: false }, 5000), false);
    });

    it("remembers since when an endpoint's sends fail, from the first failure, until one goes through or it is registered again", async () => {
      const u = id();
      const e = web(u, 1n);
      await store.put(e);
      assert.equal((await store.get(u, 1n))?.failingSinceMs, undefined);
      // Only for the address the failure was of: a device registered anew since is not blamed.
      await store.markFailing(u, 1n, "https://push.example/old", 7000);
      assert.deepEqual(await store.get(u, 1n), e);
      await store.markFailing(u, 1n, e.address, 7000);
      await store.markFailing(u, 1n, e.address, 9000);
      assert.deepEqual(await store.get(u, 1n), { ...e, failingSinceMs: 7000, failedSends: 2 });
      assert.deepEqual(await store.listForUser(u), [{ ...e, failingSinceMs: 7000, failedSends: 2 }]);
      await store.clearFailing(u, 1n, e.address);
      assert.deepEqual(await store.get(u, 1n), e);
      await store.markFailing(u, 1n, e.address, 11_000);
      await store.put({ ...e, updatedAtMs: 12_000 });
      assert.deepEqual(await store.get(u, 1n), { ...e, updatedAtMs: 12_000 });
      // Neither makes an endpoint for a device without one.
      await store.markFailing(u, 2n, e.address, 7000);
      await store.clearFailing(u, 3n, e.address);
      assert.deepEqual(await store.listForUser(u), [{ ...e, updatedAtMs: 12_000 }]);
    });

    it("counts the failed sends of a streak, from one at its start, until one goes through or it is registered again", async () => {
      const u = id();
      const e = web(u, 1n);
      await store.put(e);
      for (const at of [7000, 8000, 9000]) await store.markFailing(u, 1n, e.address, at);
      assert.deepEqual(await store.get(u, 1n), { ...e, failingSinceMs: 7000, failedSends: 3 });
      await store.markFailing(u, 1n, "https://push.example/old", 9500);
      assert.equal((await store.get(u, 1n))?.failedSends, 3, "a failure of another address is not this one's");
      await store.clearFailing(u, 1n, e.address);
      await store.markFailing(u, 1n, e.address, 10_000);
      assert.deepEqual(await store.get(u, 1n), { ...e, failingSinceMs: 10_000, failedSends: 1 }, "a new streak counts from one");
      await store.markFailing(u, 1n, e.address, 11_000);
      await store.put(e);
      await store.markFailing(u, 1n, e.address, 12_000);
      assert.deepEqual(await store.get(u, 1n), { ...e, failingSinceMs: 12_000, failedSends: 1 }, "a registration forgets the count");
    });

    it("keeps 64-bit ids exact", async () => {
      const u = (1n << 63n) - 5n;
      await store.put(web(u, (1n << 62n) + 1n));
      assert.deepEqual((await store.listForUser(u)).map((e) => e.deviceId), [(1n << 62n) + 1n]);
      await store.remove(u, (1n << 62n) + 1n);
    });
  });
}
