// EtcdWorkerIds against the real etcd of scripts/engines.sh. Fails (never skips) when etcd
// is unreachable. Each test claims numbers under its own prefix, so numbering starts at 0.
import assert from "node:assert/strict";
import type { Etcd3 } from "etcd3";
import { engineConfig, uniqueName, withTimeout } from "../../test/support/engines.js";
import { waitFor } from "../../test/support/wait.js";
import { createEtcdClient } from "../etcd/client.js";
import { EtcdWorkerIds } from "./etcd-lease.js";
import type { WorkerIdLease } from "./lease.js";

describe("EtcdWorkerIds on a real etcd", function () {
  this.timeout(30_000);
  let admin: Etcd3;
  let prefix: string;
  const allocators: EtcdWorkerIds[] = [];
  const make = (extra: Partial<ConstructorParameters<typeof EtcdWorkerIds>[0]> = {}) => {
    const a = new EtcdWorkerIds({ endpoints: engineConfig().etcdEndpoints, prefix, ttlSeconds: 2, ...extra });
    allocators.push(a);
    return a;
  };

  beforeEach(async () => {
    prefix = uniqueName("test/ids");
    admin = createEtcdClient({ endpoints: engineConfig().etcdEndpoints });
    await withTimeout(admin.maintenance.status(), 5_000, "etcd (start it: bash scripts/engines.sh up etcd)");
  });

  afterEach(async () => {
    await Promise.all(allocators.splice(0).map((a) => a.close()));
    await admin.delete().prefix(`/${prefix}/`).exec();
    admin.close();
  });

  it("never gives two allocators the same number, and hands out the lowest free ones", async () => {
    const a = make();
    const b = make();
    const leases = await Promise.all([...Array(12).keys()].map((i) => (i % 2 ? a : b).acquire()));
    const ids = leases.map((l) => l.workerId).sort((x, y) => x - y);
    assert.deepEqual(ids, [...Array(12).keys()], "12 distinct numbers, 0..11");
    const keys = await admin.getAll().prefix(a.dir).keys();
    assert.equal(keys.length, 12, "one key per number");
  });

  it("reuses a released number (the lowest free one comes first)", async () => {
    const a = make();
    const b = make();
    const held: WorkerIdLease[] = [];
    for (let i = 0; i < 4; i++) held.push(await (i % 2 ? a : b).acquire());
    assert.deepEqual(held.map((l) => l.workerId), [0, 1, 2, 3]);
    await held[1]!.release();
    const again = await a.acquire();
    assert.equal(again.workerId, 1, "the released number is reused");
    const next = await b.acquire();
    assert.equal(next.workerId, 4);
  });

  it("reports onLost when the lease is revoked behind its back, and the number becomes free", async () => {
    const a = make();
    const lease = await a.acquire();
    let lost = false;
    lease.onLost(() => (lost = true));
    const kv = (await admin.get(a.keyOf(lease.workerId)).exec()).kvs[0]!;
    await admin.leaseClient.leaseRevoke({ ID: kv.lease });
    await waitFor(() => lost, "onLost", 3_000);
    const other = await make().acquire();
    assert.equal(other.workerId, lease.workerId, "the number was free for another process");
  });

  it("never writes a lost holder's mark over its successor's, even one sent before the holder hears of the loss", async () => {
    // A long TTL: its next keep-alive, which would tell it of the loss, is seconds away.
    const a = make({ ttlSeconds: 30 });
    const lease = await a.acquire();
    const kv = (await admin.get(a.keyOf(lease.workerId)).exec()).kvs[0]!;
    // Revoked behind its back: until that keep-alive the holder still believes the number is its own.
    await admin.leaseClient.leaseRevoke({ ID: kv.lease });
    const successor = await make().acquire();
    assert.equal(successor.workerId, lease.workerId);
    await successor.mark(2_000_000_000_000);
    await assert.rejects(lease.mark(1_000_000_000_000), /no longer held/);
    assert.equal(await admin.get(`${a.marksDir}${lease.workerId}`).string(), "2000000000000");
  });

  it("counts the number lost when its key is deleted behind its back though the lease lives on", async () => {
    const a = make({ ttlSeconds: 30 });
    const lease = await a.acquire();
    let lost = false;
    lease.onLost(() => (lost = true));
    await admin.delete().key(a.keyOf(lease.workerId)).exec();
    const successor = await make().acquire();
    assert.equal(successor.workerId, lease.workerId, "the number is free for another process");
    await assert.rejects(lease.mark(Date.now()), /no longer held/);
    assert.equal(lost, true, "onLost fired, so the holder stops minting and leases another number");
    assert.equal(lease.live, false);
  });

  it("refuses when every number is taken", async () => {
    const a = make({ maxWorkerId: 1 });
    await a.acquire();
    await a.acquire();
    await assert.rejects(a.acquire(), /no free worker id in 0\.\.1/);
    const keys = await admin.getAll().prefix(a.dir).keys();
    assert.equal(keys.length, 2, "the failed attempt left nothing behind");
  });
});
