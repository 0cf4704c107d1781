// EtcdServerRegistry against the real etcd of scripts/engines.sh: the contract suite, then
// what only a real etcd can show — a killed process's entry vanishing within its TTL, and a
// process cut off from etcd fencing itself before its entry vanishes, then coming back.
// Fails (never skips) when etcd is unreachable.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Etcd3 } from "etcd3";
import pino from "pino";
import { engineConfig, uniqueName, withTimeout } from "../../test/support/engines.js";
import { TcpProxy } from "../../test/support/tcp-proxy.js";
import { waitFor } from "../../test/support/wait.js";
import { createEtcdClient } from "../etcd/client.js";
import { serverRegistryContract } from "./contract.js";
import { EtcdServerRegistry } from "./etcd.js";
import type { ServerWatch } from "./port.js";

const TTL = 2; // etcd's smallest lease TTL with default election settings

async function probe(client: Etcd3): Promise<void> {
  const endpoints = engineConfig().etcdEndpoints.join(",");
  await withTimeout(client.maintenance.status(), 5_000, `etcd at ${endpoints} (start it: bash scripts/engines.sh up etcd)`);
}

serverRegistryContract("etcd", async () => {
  const endpoints = engineConfig().etcdEndpoints;
  const prefix = uniqueName("test/registry");
  const admin = createEtcdClient({ endpoints });
  await probe(admin);
  const registry = new EtcdServerRegistry({ endpoints, prefix, ttlSeconds: TTL, loadIntervalMs: 50 });
  const observer = new EtcdServerRegistry({ endpoints, prefix });
  return {
    registry,
    observer,
    regainWithinMs: 5_000,
    async expire(serverId) {
      // Revoke the entry's lease from outside, as etcd does when a lease runs out.
      const res = await admin.get(registry.keyOf(serverId)).exec();
      const lease = res.kvs[0]?.lease;
      assert.ok(lease && lease !== "0", "entry has a lease");
      await admin.leaseClient.leaseRevoke({ ID: lease });
    },
    async dispose() {
      await registry.close();
      await observer.close();
      await admin.delete().prefix(registry.dir).exec();
      admin.close();
    },
  };
});

describe("EtcdServerRegistry on a real etcd", function () {
  this.timeout(60_000);
  let admin: Etcd3;
  let observer: EtcdServerRegistry;
  let watch: ServerWatch;
  let prefix: string;
  const cleanups: Array<() => Promise<void> | void> = [];

  beforeEach(async () => {
    const endpoints = engineConfig().etcdEndpoints;
    prefix = uniqueName("test/registry");
    admin = createEtcdClient({ endpoints });
    await probe(admin);
    observer = new EtcdServerRegistry({ endpoints, prefix });
    watch = await observer.watch();
  });

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await observer.close();
    await admin.delete().prefix(`/${prefix}/`).exec();
    admin.close();
  });

  /** Resolves with the time the server left the watch. */
  const vanished = (serverId: string) =>
    new Promise<number>((resolve) =>
      watch.onChange((servers) => {
        if (!servers.some((s) => s.serverId === serverId)) resolve(Date.now());
      }),
    );

  it("ignores an entry with an empty address (one no register() writes), read at the start or watched", async () => {
    const entry = (address: string) => JSON.stringify({ address, load: 0 });
    await admin.put(observer.keyOf("empty-before")).value(entry(""));
    const late = await observer.watch();
    cleanups.push(() => late.close());
    await admin.put(observer.keyOf("empty-after")).value(entry(""));
    await admin.put(observer.keyOf("good")).value(entry("127.0.0.1:1"));
    for (const w of [watch, late]) await waitFor(() => w.servers().some((s) => s.serverId === "good"), "the good entry");
    // Taken as a server, it was picked (load 0) and grpc-js threw on its address out of the gateway's upgrade handler.
    assert.deepEqual(watch.servers().map((s) => s.serverId), ["good"]);
    assert.deepEqual(late.servers().map((s) => s.serverId).sort(), ["good"]);
  });

  it("drops a killed server within its TTL plus a little", async () => {
    const serverId = uniqueName("killed");
    const here = dirname(fileURLToPath(import.meta.url));
    const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", join(here, "testdata", "register-child.ts")], {
      env: {
        ...process.env,
        ETCD_ENDPOINTS: engineConfig().etcdEndpoints.join(","),
        REGISTRY_PREFIX: prefix,
        SERVER_ID: serverId,
        TTL_SECONDS: String(TTL),
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    cleanups.push(() => void child.kill("SIGKILL"));
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        child.stdout!.on("data", (d: Buffer) => d.toString().includes("registered") && resolve());
        child.once("exit", (code) => reject(new Error(`child exited early (${code})`)));
      }),
      30_000,
      "child to register",
    );
    await waitFor(() => watch.servers().some((s) => s.serverId === serverId), "child in the watch");
    const gone = vanished(serverId);
    // Its last keepalive went out at most TTL/3 ago; the entry must vanish TTL after it at the latest.
    const killedAt = Date.now();
    child.kill("SIGKILL");
    const goneAt = await withTimeout(gone, TTL * 1000 + 3_000, "the killed server to vanish");
    const ms = goneAt - killedAt;
    console.log(`      killed server vanished from the watch ${ms} ms after SIGKILL (lease TTL ${TTL} s)`);
    // etcd checks for expired leases every 500 ms: TTL + 0.5 s, plus a little for the watch.
    assert.ok(ms <= TTL * 1000 + 1_500, `vanished after ${ms} ms`);
  });

  it("writes its entry again when it is deleted behind its back while its lease lives on", async () => {
    const registry = new EtcdServerRegistry({ endpoints: engineConfig().etcdEndpoints, prefix, ttlSeconds: TTL, loadIntervalMs: 50 });
    cleanups.push(() => registry.close());
    const serverId = uniqueName("deleted");
    const reg = await registry.register({ serverId, address: "127.0.0.1:7020", load: 3 });
    await waitFor(() => watch.servers().some((s) => s.serverId === serverId), "registered");
    const { lease } = (await admin.get(registry.keyOf(serverId)).exec()).kvs[0]!;
    let lost = false;
    reg.onLost(() => (lost = true));
    const gone = vanished(serverId);
    // An operator's `etcdctl del`: the lease is untouched, its load unchanging, so nothing else writes the entry.
    await admin.delete().key(registry.keyOf(serverId)).exec();
    await withTimeout(gone, 5_000, "the deleted entry to leave the watch");
    await waitFor(() => watch.servers().find((s) => s.serverId === serverId), "the entry back in the watch", 5_000);
    assert.deepEqual(watch.servers().find((s) => s.serverId === serverId), { serverId, address: "127.0.0.1:7020", load: 3, registration: lease });
    assert.equal(reg.live, true);
    assert.equal(lost, false, "a registration whose lease lives was never lost");
    await reg.close();
    await waitFor(() => !watch.servers().some((s) => s.serverId === serverId), "closing removes it for good");
  });

  for (const mode of ["blackhole", "reset"] as const) {
    it(`fences a server cut off from etcd (${mode}) before its entry vanishes, then regains it`, async () => {
      const proxy = await TcpProxy.start(engineConfig().etcdEndpoints[0]!);
      cleanups.push(() => proxy.close());
      const client = createEtcdClient({ endpoints: [proxy.address] });
      cleanups.push(() => client.close());
      const registry = new EtcdServerRegistry({ client, prefix, ttlSeconds: TTL, loadIntervalMs: 50 });
      cleanups.push(() => registry.close());
      const serverId = uniqueName("cut");
      const reg = await registry.register({ serverId, address: "127.0.0.1:7010", load: 1 });
      await waitFor(() => watch.servers().some((s) => s.serverId === serverId), "registered");
      let lostAt = 0;
      let regainedAt = 0;
      reg.onLost(() => (lostAt = Date.now()));
      reg.onRegained(() => (regainedAt = Date.now()));

      const gone = vanished(serverId);
      const cutAt = Date.now();
      proxy.cut(mode);
      const goneAt = await withTimeout(gone, TTL * 1000 + 3_000, "the cut-off server to vanish");
      await waitFor(() => lostAt > 0, "onLost", 5_000);
      console.log(
        `      ${mode}: live=false ${lostAt - cutAt} ms after the cut, entry gone from the watch ${goneAt - cutAt} ms after it`,
      );
      assert.equal(reg.live, false);
      assert.ok(lostAt <= goneAt, `the server stopped believing in its lease (${lostAt - cutAt} ms) before etcd dropped it (${goneAt - cutAt} ms)`);
      assert.ok(lostAt - cutAt <= TTL * 1000, `lost within the TTL (${lostAt - cutAt} ms)`);

      await reg.setLoad(7);
      const restoredAt = Date.now();
      proxy.restore();
      await waitFor(() => regainedAt > 0, "onRegained", 15_000);
      await waitFor(() => watch.servers().find((s) => s.serverId === serverId)?.load === 7, "entry back with load 7", 5_000);
      console.log(`      ${mode}: regained ${regainedAt - restoredAt} ms after etcd was reachable again`);
      assert.equal(reg.live, true);
    });
  }

  it("logs an etcd outage of its watch once as it starts and once as it ends (with its length), not once per retry", async () => {
    const proxy = await TcpProxy.start(engineConfig().etcdEndpoints[0]!);
    cleanups.push(() => proxy.close());
    const lines: Array<{ level: number; msg: string; outageMs?: number }> = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const registry = new EtcdServerRegistry({ endpoints: [proxy.address], prefix, logger });
    cleanups.push(() => registry.close());
    const cutWatch = await registry.watch();

    proxy.cut("reset");
    const triedBefore = proxy.accepted;
    // Each try of etcd3's watch reconnect dials through the proxy: several are several retries.
    await waitFor(() => proxy.accepted >= triedBefore + 6, "six tries to reach etcd while it is cut off", 15_000);
    const during = lines.filter((l) => l.level >= 40);
    assert.equal(during.length, 1, `one warning for the outage, got ${during.length}: ${during.map((l) => l.msg).join(" | ")}`);
    assert.match(during[0]!.msg, /registry watch lost etcd/);

    await proxy.restore();
    await waitFor(() => lines.some((l) => l.msg === "registry watch back on etcd"), "the watch back on etcd", 10_000);
    const back = lines.filter((l) => l.msg === "registry watch back on etcd");
    assert.equal(back.length, 1);
    assert.equal(back[0]!.level, 30, "the end of an outage is info");
    assert.ok(back[0]!.outageMs! > 0, `the outage's length: ${back[0]!.outageMs}`);
    // And the watch works again: a server registered now shows up in it.
    const serverId = uniqueName("after-outage");
    const registered = new EtcdServerRegistry({ endpoints: engineConfig().etcdEndpoints, prefix, ttlSeconds: TTL });
    cleanups.push(() => registered.close());
    await registered.register({ serverId, address: "127.0.0.1:7040", load: 0 });
    await waitFor(() => cutWatch.servers().some((s) => s.serverId === serverId), "a new server in the watch that lost etcd", 10_000);
    assert.equal(lines.filter((l) => l.level >= 40).length, 1, "nothing more to warn of");
  });

  it("an entry taken over by another process under the same id is not written over: lost until that one leaves, then regained", async () => {
    const registry = new EtcdServerRegistry({ endpoints: engineConfig().etcdEndpoints, prefix, ttlSeconds: TTL, loadIntervalMs: 10 });
    cleanups.push(() => registry.close());
    const serverId = uniqueName("twin");
    const reg = await registry.register({ serverId, address: "127.0.0.1:7021", load: 0 });
    let lost = 0;
    let regained = 0;
    reg.onLost(() => lost++);
    reg.onRegained(() => regained++);
    // The twin: its own lease, its own address, under our key (as an older build wrote it, blindly).
    const twinLease = admin.lease(TTL * 5, { autoKeepAlive: false });
    await twinLease.put(registry.keyOf(serverId)).value(JSON.stringify({ address: "127.0.0.1:7022", load: 0 }));
    await reg.setLoad(5);
    await waitFor(() => lost === 1, "lost on finding the twin");
    assert.equal(reg.live, false);
    assert.equal(JSON.parse((await admin.get(registry.keyOf(serverId)).string())!).address, "127.0.0.1:7022", "the twin's entry stands");
    await twinLease.revoke();
    await waitFor(() => regained === 1, "regained once the twin left", 10_000);
    await waitFor(() => watch.servers().find((s) => s.serverId === serverId)?.address === "127.0.0.1:7021", "our entry back");
  });

  it("closing leaves standing the entry another process under the same id took over (a restart while the old one still ran)", async () => {
    const registry = new EtcdServerRegistry({ endpoints: engineConfig().etcdEndpoints, prefix, ttlSeconds: TTL, loadIntervalMs: 10 });
    cleanups.push(() => registry.close());
    const serverId = uniqueName("restarted");
    const old = await registry.register({ serverId, address: "127.0.0.1:7023", load: 0 });
    let lost = 0;
    old.onLost(() => lost++);
    const restarted = admin.lease(TTL * 5, { autoKeepAlive: false });
    cleanups.push(() => restarted.revoke().catch(() => {}));
    await restarted.put(registry.keyOf(serverId)).value(JSON.stringify({ address: "127.0.0.1:7024", load: 0 }));
    await old.setLoad(3);
    await waitFor(() => lost === 1, "the old process lost its entry");
    await old.close();
    assert.equal(JSON.parse((await admin.get(registry.keyOf(serverId)).string())!).address, "127.0.0.1:7024", "the restarted process's entry stands");
    await waitFor(() => watch.servers().find((s) => s.serverId === serverId)?.address === "127.0.0.1:7024", "in the watch");
  });

  it("writes a new load within its interval though the wall clock stepped back an hour since the last write", async () => {
    const registry = new EtcdServerRegistry({ endpoints: engineConfig().etcdEndpoints, prefix, ttlSeconds: TTL, loadIntervalMs: 50 });
    cleanups.push(() => registry.close());
    const serverId = uniqueName("stepped");
    const reg = await registry.register({ serverId, address: "127.0.0.1:7031", load: 0 });
    await reg.setLoad(1);
    await waitFor(() => watch.servers().find((s) => s.serverId === serverId)?.load === 1, "the first load");
    const wall = Date.now;
    Date.now = () => wall() - 3_600_000;
    try {
      void reg.setLoad(2);
      await waitFor(() => watch.servers().find((s) => s.serverId === serverId)?.load === 2, "the load written after the step", 5_000);
    } finally {
      Date.now = wall;
    }
  });

  it("tells watches of a registration regained though its entry never left (keepalives heard by etcd, answered too late): a new registration", async () => {
    const proxy = await TcpProxy.start(engineConfig().etcdEndpoints[0]!);
    cleanups.push(() => proxy.close());
    const client = createEtcdClient({ endpoints: [proxy.address] });
    cleanups.push(() => client.close());
    const registry = new EtcdServerRegistry({ client, prefix, ttlSeconds: 5 });
    cleanups.push(() => registry.close());
    const serverId = uniqueName("slow");
    const reg = await registry.register({ serverId, address: "127.0.0.1:7030", load: 0 });
    await waitFor(() => watch.servers().some((s) => s.serverId === serverId), "registered");
    const first = watch.servers().find((s) => s.serverId === serverId)!.registration;
    assert.equal(first, (await admin.get(registry.keyOf(serverId)).exec()).kvs[0]!.lease, "the lease that wrote the entry");
    let left = false;
    watch.onChange((servers) => void (left ||= !servers.some((s) => s.serverId === serverId)));
    let lost = false;
    reg.onLost(() => (lost = true));
    // Past a keepalive's deadline: the server counts its lease lost (and refuses sessions), while etcd keeps it, and the entry.
    proxy.answerDelayMs = 2_000;
    await waitFor(() => lost, "the lease counted lost", 10_000);
    // Healed, the proxy lets what it holds go at once: the new lease's grant, asked as the loss was counted,
    // is answered then, not 2 s later, and the entry rewritten seconds before etcd would let the old lease
    // lapse (a margin a loaded machine does not eat; that lapse would take the entry out of the watch).
    proxy.answerDelayMs = 0;
    await waitFor(() => reg.live, "regained", 10_000);
    await waitFor(() => watch.servers().find((s) => s.serverId === serverId)?.registration !== first, "a new registration in the watch", 10_000);
    assert.equal(left, false, "the entry never left the watch: only its registration tells gateways the server serves again");
  });

  it("a revoked lease vanishes at once and the registration is back within a keepalive interval", async () => {
    const registry = new EtcdServerRegistry({ endpoints: engineConfig().etcdEndpoints, prefix, ttlSeconds: TTL });
    cleanups.push(() => registry.close());
    const serverId = uniqueName("revoked");
    const reg = await registry.register({ serverId, address: "127.0.0.1:7011", load: 0 });
    await waitFor(() => watch.servers().some((s) => s.serverId === serverId), "registered");
    let regainedAt = 0;
    reg.onRegained(() => (regainedAt = Date.now()));
    const gone = vanished(serverId);
    const lease = (await admin.get(registry.keyOf(serverId)).exec()).kvs[0]!.lease;
    const revokedAt = Date.now();
    await admin.leaseClient.leaseRevoke({ ID: lease });
    const goneAt = await withTimeout(gone, 2_000, "revoked entry to vanish");
    await waitFor(() => regainedAt > 0, "regained", TTL * 1000 + 2_000);
    await waitFor(() => watch.servers().some((s) => s.serverId === serverId), "back in the watch");
    console.log(`      revoked: gone from the watch after ${goneAt - revokedAt} ms, regained after ${regainedAt - revokedAt} ms`);
    assert.ok(regainedAt - revokedAt <= TTL * 1000, `regained within the TTL (${regainedAt - revokedAt} ms)`);
  });
});
