// RenewedWorkerId against the real etcd of scripts/engines.sh (fails, never skips, when it
// is unreachable), and its retry loop against an allocator that refuses on purpose.
import assert from "node:assert/strict";
import type { Etcd3 } from "etcd3";
import pino from "pino";
import { engineConfig, uniqueName, withTimeout } from "../../test/support/engines.js";
import { TcpProxy } from "../../test/support/tcp-proxy.js";
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
    await admin.delete().prefix(`/${prefix}/`).exec();
    admin.close();
  });

  it("a lost lease stops the ids at once, then a new number is leased and ids flow again above the last", async () => {
    // The renewal waits for the test: a renewal quicker than a poll of `live` left no gap to see.
    let letRenew!: () => void;
    const renewAllowed = new Promise<void>((resolve) => (letRenew = resolve));
    const gated: WorkerIdAllocator = { acquire: () => renewAllowed.then(() => allocator.acquire()) };
    const w = new RenewedWorkerId(gated, await allocator.acquire(), { retryFirstMs: 50 });
    held.push(w);
    await w.start();
    const before = w.ids.next();
    // Another process takes number 0 the moment it is free, so the renewal must get another.
    const squatter = new EtcdWorkerIds({ endpoints: engineConfig().etcdEndpoints, prefix, ttlSeconds: 2 });
    const renewed = new Promise<number>((resolve) => w.onRenewed(resolve));
    const kv = (await admin.get(allocator.keyOf(w.workerId)).exec()).kvs[0]!;
    await admin.leaseClient.leaseRevoke({ ID: kv.lease });
    await waitFor(() => !w.live, "the loss seen", 5_000);
    assert.throws(
      () => w.ids.next(),
      (e: Error & { code?: string }) => unavailable(e) && /worker id/.test(e.message) && !/shutting down/.test(e.message),
      "nothing minted under a number that may be someone else's, and said why: the server is not shutting down",
    );
    try {
      const taken = await squatter.acquire();
      letRenew();
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

  it("a holder cut off from etcd past its TTL mints nothing its number's next holder mints, and mints under another number once back", async () => {
    const proxy = await TcpProxy.start(engineConfig().etcdEndpoints[0]!);
    const cutOff = new EtcdWorkerIds({ endpoints: [proxy.address], prefix, ttlSeconds: 2, requestTimeoutMs: 500 });
    let a: RenewedWorkerId | undefined;
    // The minting loop below, stopped in the finally too: left spinning after a failure it kept mocha's process alive for good.
    let minting = false;
    let loop: Promise<void> | undefined;
    try {
      a = new RenewedWorkerId(cutOff, await cutOff.acquire(), { markIntervalMs: 200, retryFirstMs: 50, retryMaxMs: 200 });
      await a.start();
      const number = a.workerId;
      const byA: bigint[] = [];
      const byB: bigint[] = [];
      const mint = (w: RenewedWorkerId, into: bigint[]) => {
        try {
          into.push(w.ids.next());
        } catch (e) {
          if (!unavailable(e as Error & { code?: string })) throw e;
        }
      };
      // A minting all along, as a busy server does, the partition in the middle of it.
      let b: RenewedWorkerId | undefined;
      minting = true;
      loop = (async () => {
        while (minting) {
          mint(a, byA);
          if (b) mint(b, byB);
          await new Promise((r) => setImmediate(r));
        }
      })();
      await waitFor(() => byA.length > 100, "ids minted before the cut");
      proxy.cut("blackhole");
      // etcd lets the lease lapse on its own clock, and another process takes the number.
      await waitFor(async () => (await admin.get(allocator.keyOf(number)).exec()).kvs.length === 0, "the number freed by etcd", 10_000, 50);
      const next = new RenewedWorkerId(allocator, await allocator.acquire());
      held.push(next);
      assert.equal(next.workerId, number, "the number passed on");
      await next.start();
      b = next;
      await waitFor(() => byB.length > 100, "ids minted by the number's next holder");
      assert.equal(a.live, false);
      const mintedCutOff = byA.length;
      const renewing = new Promise<number>((resolve) => a!.onRenewed(resolve));
      await proxy.restore();
      const renewed = await renewing;
      await waitFor(() => byA.length > mintedCutOff + 100, "ids minted again under a new number once etcd is back", 10_000);
      minting = false;
      await loop;
      assert.notEqual(renewed, number);
      const workerOf = (id: bigint) => Number((id >> 12n) & 0x3ffn);
      const aOnNumber = byA.filter((id) => workerOf(id) === number);
      assert.ok(aOnNumber.length > 0 && aOnNumber.length < byA.length);
      const lastA = aOnNumber.reduce((m, id) => (id > m ? id : m));
      assert.ok(byB.every((id) => id > lastA), "every id of the number's next holder above every id its cut-off holder minted under it");
      assert.equal(new Set([...byA, ...byB]).size, byA.length + byB.length, "no id minted twice");
    } finally {
      minting = false;
      await loop?.catch(() => {});
      await a?.release();
      await proxy.close();
      await cutOff.close().catch(() => {});
    }
  });

  it("a number's next holder mints above every id its last holder minted, though its clock is 60 s behind", async () => {
    const ahead = () => Date.now() + 60_000;
    const first = new RenewedWorkerId(allocator, await allocator.acquire(), { now: ahead });
    await first.start();
    first.ids.notBefore(ahead()); // its own clock, a minute ahead of this machine's
    const minted = Array.from({ length: 100 }, () => first.ids.next());
    const number = first.workerId;
    await first.release();

    const next = new RenewedWorkerId(allocator, await allocator.acquire());
    held.push(next);
    assert.equal(next.workerId, number, "the same number, free again");
    assert.throws(() => next.ids.next(), unavailable, "nothing minted before its first mark");
    await next.start();
    const id = next.ids.next();
    assert.ok(id > minted.at(-1)!, "above the last holder's ids");
  });

  it("pauses minting at the last mark etcd took, and goes on once a mark lands again", async () => {
    let failing = false;
    const marks: number[] = [];
    const lease = leaseMarkingWith(async (ms) => {
      if (failing) throw new Error("etcd unreachable");
      marks.push(ms);
    });
    const w = new RenewedWorkerId({ acquire: async () => lease }, lease, { markIntervalMs: 20 });
    await w.start();
    w.ids.next();
    failing = true;
    const refused = () => {
      try {
        w.ids.next();
        return false;
      } catch (e) {
        return unavailable(e as Error & { code?: string });
      }
    };
    await waitFor(refused, "minting paused at the last mark", 5_000);
    const last = marks.at(-1)!;
    assert.ok(Date.now() >= last, "paused only once the clock reached the mark");
    failing = false;
    await waitFor(() => !refused(), "minting again after a mark landed", 5_000);
    await w.release();
    assert.ok(marks.at(-1)! > last);
  });

  it("mints nothing at or past a lower mark (the clock stepped back) from the moment it is sent, before etcd answers", async () => {
    let skewMs = 60_000; // the marks' clock, a minute ahead until it steps back
    let held: Promise<void> | undefined;
    let letMark = () => {};
    const marks: number[] = [];
    const lease = leaseMarkingWith(async (ms) => {
      marks.push(ms);
      await held;
    });
    const w = new RenewedWorkerId({ acquire: async () => lease }, lease, { markIntervalMs: 20, now: () => Date.now() + skewMs });
    await w.start();
    w.ids.next();
    const first = marks.at(-1)!;
    // etcd takes the lower mark, but its answer is slow (a partition, a paused VM): the lease may
    // lapse meanwhile and the next holder start above that mark, not the first one.
    held = new Promise<void>((resolve) => (letMark = resolve));
    skewMs = 0;
    try {
      await waitFor(() => marks.at(-1)! < first, "a lower mark sent", 5_000);
      const lower = marks.at(-1)!;
      await waitFor(() => Date.now() > lower, "the clock past the lower mark", 5_000);
      assert.throws(() => w.ids.next(), unavailable, "an id at or past a mark etcd may already hold");
    } finally {
      letMark();
      held = undefined;
      await w.release();
    }
  });

  it("keeps trying with backoff while no number can be leased, and stops trying once released", async () => {
    let attempts = 0;
    let lose: () => void = () => {};
    const lease = (workerId: number): WorkerIdLease => ({
      workerId,
      live: true,
      mintedBeforeMs: 0,
      onLost: (l) => (lose = l),
      mark: async () => {},
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
    await w.start();
    const renewed = new Promise<number>((resolve) => w.onRenewed(resolve));
    lose();
    assert.equal(w.live, false);
    assert.equal(await renewed, 7);
    assert.equal(attempts, 3);
    assert.ok(w.live);
    w.ids.next();

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

// An etcd outage is tried every few seconds for its whole length (marks every 2 s, leasing again
// every 5 s): each try was a warning, dozens a minute for a single outage.
describe("RenewedWorkerId's logs during an etcd outage", () => {
  const captured = () => {
    const lines: Array<{ level: number; msg: string; failures?: number }> = [];
    return { lines, logger: pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) }) };
  };

  it("one warning as marks start failing and one info line, with the count, when one lands again", async () => {
    const { lines, logger } = captured();
    let failing = false;
    let failed = 0;
    const lease = leaseMarkingWith(async () => {
      if (failing) {
        failed++;
        throw new Error("etcd unreachable");
      }
    });
    const w = new RenewedWorkerId({ acquire: async () => lease }, lease, { markIntervalMs: 5, logger });
    await w.start();
    failing = true;
    try {
      await waitFor(() => failed >= 6, "six marks failed", 5_000);
      const warnings = lines.filter((l) => l.level >= 40);
      assert.equal(warnings.length, 1, `one warning for the outage, got ${warnings.length}: ${warnings.map((l) => l.msg).join(" | ")}`);
      assert.match(warnings[0]!.msg, /marking the worker id failed/);
      failing = false;
      await waitFor(() => lines.some((l) => l.msg === "marking the worker id works again"), "the line saying marks land again", 5_000);
      const back = lines.filter((l) => l.msg === "marking the worker id works again");
      assert.equal(back.length, 1);
      assert.equal(back[0]!.level, 30);
      assert.ok(back[0]!.failures! >= 6, `the failures counted: ${back[0]!.failures}`);
      assert.equal(lines.filter((l) => l.level >= 40).length, 1, "nothing more to warn of");
    } finally {
      failing = false;
      await w.release();
    }
  });

  it("one warning as leasing a number again starts failing, and the count in the line once it is leased", async () => {
    const { lines, logger } = captured();
    let lose: () => void = () => {};
    let attempts = 0;
    const lease = (workerId: number): WorkerIdLease => ({ ...leaseMarkingWith(async () => {}), workerId, onLost: (l) => (lose = l) });
    const refusing: WorkerIdAllocator = {
      acquire: async () => {
        if (++attempts <= 6) throw new Error("etcd unreachable");
        return lease(8);
      },
    };
    const w = new RenewedWorkerId(refusing, lease(3), { retryFirstMs: 1, retryMaxMs: 2, logger });
    await w.start();
    const renewed = new Promise<number>((resolve) => w.onRenewed(resolve));
    lose();
    assert.equal(await renewed, 8);
    try {
      const warnings = lines.filter((l) => l.level === 40);
      assert.equal(warnings.length, 1, `one warning for the outage, got ${warnings.length}: ${warnings.map((l) => l.msg).join(" | ")}`);
      assert.match(warnings[0]!.msg, /leasing a worker id again failed/);
      const back = lines.filter((l) => l.msg === "worker id leased again: minting ids");
      assert.equal(back.length, 1);
      assert.equal(back[0]!.failures, 6);
    } finally {
      await w.release();
    }
  });
});

/** Worker id 5, held for good, each mark going through `mark`. */
function leaseMarkingWith(mark: WorkerIdLease["mark"]): WorkerIdLease {
  return { workerId: 5, live: true, mintedBeforeMs: 0, onLost: () => {}, mark, release: async () => {} };
}
