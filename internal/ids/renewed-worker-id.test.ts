// RenewedWorkerId against the real etcd of scripts/engines.sh (fails, never skips, when it
// is unreachable), and its retry loop against an allocator that refuses on purpose.
import assert from "node:assert/strict";
import type { Etcd3 } from "etcd3";
import { engineConfig, uniqueName, withTimeout } from "../../test/support/engines.js";
import { waitFor } from "../../test/support/wait.js";
import { createEtcdClient } from "../etcd/client.js";
import { EtcdWorkerIds } from "./etcd-lease.js";
import type { WorkerIdAllocator, WorkerIdLease } from "./lease.js";
import { RenewedWorkerId } from "./renewed-worker-id.js";

const unavailable = (e: Error & { code?: string }) => e.code === "unavailable";

describe("RenewedWorkerId", function () {
  this.timeout(30_000);
  let admin: Etcd3;
  let prefix: string;
  let allocator: EtcdWorkerIds;
  const held: RenewedWorkerId[] = [];

  beforeEach(async () => {
    admin = createEtcdClient({ endpoints: engineConfig().etcdEndpoints });
    await withTimeout(admin.maintenance.status(), 5_000, "etcd (start it: bash scripts/engines.sh up etcd)");
    prefix = uniqueName("test/renewed");
    allocator = new EtcdWorkerIds({ endpoints: engineConfig().etcdEndpoints, prefix, ttlSeconds: 2 });
  });

  afterEach(async () => {
    await Promise.all(held.splice(0).map((w) => w.release()));
    await allocator.close();
    await admin.delete().prefix(allocator.dir).exec();
    admin.close();
  });

  it("a lost lease stops the ids at once, then a new number is leased and ids flow again above the last", async () => {
    const w = new RenewedWorkerId(allocator, await allocator.acquire(), { retryFirstMs: 50 });
    held.push(w);
    const before = w.ids.next();
    // Another process takes number 0 the moment it is free, so the renewal must get another.
    const squatter = new EtcdWorkerIds({ endpoints: engineConfig().etcdEndpoints, prefix, ttlSeconds: 2 });
    const renewed = new Promise<number>((resolve) => w.onRenewed(resolve));
    const kv = (await admin.get(allocator.keyOf(w.workerId)).exec()).kvs[0]!;
    await admin.leaseClient.leaseRevoke({ ID: kv.lease });
    await waitFor(() => !w.live, "the loss seen", 5_000);
    assert.throws(() => w.ids.next(), unavailable, "nothing minted under a number that may be someone else's");
    try {
      const taken = await squatter.acquire();
      const number = await renewed;
      assert.ok(w.live);
      assert.notEqual(number, taken.workerId);
      assert.equal(w.workerId, number);
      const after = w.ids.next();
      assert.ok(after > before);
      assert.equal(Number((after >> 12n) & 0x3ffn), number, "minted under the new number");
      const holder = (await admin.get(allocator.keyOf(number)).exec()).kvs[0];
      assert.ok(holder, "the new number is held in etcd");
    } finally {
      await squatter.close();
    }
  });

  it("keeps trying with backoff while no number can be leased, and stops trying once released", async () => {
    let attempts = 0;
    let lose: () => void = () => {};
    const lease = (workerId: number): WorkerIdLease => ({
      workerId,
      live: true,
      onLost: (l) => (lose = l),
      release: async () => {},
    });
    const refusing: WorkerIdAllocator = {
      acquire: async () => {
        attempts++;
        if (attempts < 3) throw new Error("etcd unreachable");
        return lease(7);
      },
    };
    const w = new RenewedWorkerId(refusing, lease(1), { retryFirstMs: 10, retryMaxMs: 20 });
    const renewed = new Promise<number>((resolve) => w.onRenewed(resolve));
    lose();
    assert.equal(w.live, false);
    assert.equal(await renewed, 7);
    assert.equal(attempts, 3);
    assert.ok(w.live);

    // Released while an attempt is on its way: what that attempt leases is given back at once.
    let answer: (l: WorkerIdLease) => void = () => {};
    let lateReleased = false;
    refusing.acquire = () => new Promise<WorkerIdLease>((resolve) => (answer = resolve));
    lose();
    await waitFor(() => !w.live, "the second loss seen", 2_000);
    await w.release();
    answer({ ...lease(9), release: async () => void (lateReleased = true) });
    await waitFor(() => lateReleased, "the late lease given back", 2_000);
    assert.equal(w.live, false);
    assert.throws(() => w.ids.next(), unavailable);
  });
});
