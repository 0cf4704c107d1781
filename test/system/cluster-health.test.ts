import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { loadOrCreateKeys } from "../../internal/auth/tokens.js";
import { Health, ServingStatus } from "../../internal/grpc/health.js";
import { startRole, useDeployment, type RoleProcess } from "../support/processes.js";
import { waitFor } from "../support/wait.js";
import { freePort } from "../support/ports.js";

/**
 * A loopback port in front of etcd that refuses every connection (closes it at
 * once) until `open()`, then forwards to the real etcd: an etcd that is not up
 * yet when a process starts.
 */
async function lateEtcd(etcdEndpoint: string): Promise<{ endpoint: string; refused: () => number; open: () => void; close: () => Promise<void> }> {
  const [host, port] = etcdEndpoint.replace(/^https?:\/\//, "").split(":");
  let forwarding = false;
  let refused = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => {});
    if (!forwarding) {
      refused++;
      client.destroy();
      return;
    }
    const upstream = connect(Number(port), host!);
    sockets.add(upstream);
    upstream.on("close", () => sockets.delete(upstream));
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    endpoint: `127.0.0.1:${(server.address() as { port: number }).port}`,
    refused: () => refused,
    open: () => void (forwarding = true),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function healthClient(grpcUrl: unknown) {
  return createClient(Health, createGrpcTransport({ baseUrl: String(grpcUrl) }));
}

/** grpc.health.v1 Check for the server as a whole, polled until it says `want`. */
async function waitForGrpcHealth(grpcUrl: unknown, want: ServingStatus): Promise<void> {
  const client = healthClient(grpcUrl);
  await waitFor(async () => (await client.check({ service: "" })).status === want, `gRPC health ${ServingStatus[want]} at ${String(grpcUrl)}`, 30_000, 100);
}

describe("distributed mode: health", function () {
  this.timeout(180_000);
  const { scope, keysDir, env } = useDeployment("health");
  const common = { ...env, CHAT_OPS_PORT: "0" };
  // As the first api would: a gateway started alone (--grep) finds the key.
  before(() => loadOrCreateKeys(keysDir));

  it("answers /readyz (and /healthz) 503 naming Redis from the api and the presence sweeper while Redis is away, /livez 200: alive, not ready; all 200 from an api with every engine", async () => {
    const healthy = await startRole("api", common);
    for (const path of ["/healthz", "/readyz", "/livez"]) {
      const ok = await fetch(`${healthy.info.http}${path}`);
      assert.equal(ok.status, 200, `${path}: ${await ok.text()}`);
    }

    const away = { ...common, CHAT_REDIS_URL: `redis://127.0.0.1:${await freePort()}` };
    const api = await startRole("api", away);
    const res = await fetch(`${api.info.http}/healthz`);
    const body = await res.text();
    assert.equal(res.status, 503, body);
    assert.match(body, /redis/);
    // Not ready, and alive: a liveness probe that failed here would restart every api while Redis is away.
    // On the public port, which balancers probe, and on the ops port alike.
    for (const base of [String(api.info.http), `http://127.0.0.1:${api.info.ops}`]) {
      const ready = await fetch(`${base}/readyz`);
      const readyBody = (await ready.json()) as { checks: Record<string, string> };
      assert.equal(ready.status, 503, JSON.stringify(readyBody));
      assert.notEqual(readyBody.checks.redis, "ok", "the failing check names Redis");
      const live = await fetch(`${base}/livez`);
      assert.equal(live.status, 200, `${base}/livez: ${await live.text()}`);
    }

    // gRPC health says the same, for a load balancer that probes gRPC.
    await waitForGrpcHealth(healthy.info.grpc, ServingStatus.SERVING);
    await waitForGrpcHealth(api.info.grpc, ServingStatus.NOT_SERVING);

    const presence = await startRole("presence", away);
    const swept = await fetch(`http://127.0.0.1:${presence.info.ops}/readyz`);
    assert.equal(swept.status, 503);
    assert.match(await swept.text(), /redis/);
    assert.equal((await fetch(`http://127.0.0.1:${presence.info.ops}/livez`)).status, 200);
  });

  it("answers 503 and NOT_SERVING from a gateway that sees no chat server, and keeps running", async () => {
    // No chat server registers under this suite's etcd prefix.
    const gateway = await startRole("gateway", common);
    for (let i = 0; i < 2; i++) {
      // The public port names the failing check, its reason only the ops port (08eda4d).
      const res = await fetch(`${gateway.info.http}/healthz`);
      const body = await res.text();
      assert.equal(res.status, 503, body);
      assert.match(body, /"chat-servers":"unavailable"/);
      const ops = await fetch(`http://127.0.0.1:${gateway.info.ops}/healthz`);
      const opsBody = await ops.text();
      assert.equal(ops.status, 503, opsBody);
      assert.match(opsBody, /chat-servers.*no chat server registered/);
    }
    await waitForGrpcHealth(gateway.info.grpc, ServingStatus.NOT_SERVING);
    assert.equal(gateway.child.exitCode, null, "a failing check is an answer, not a crash");
  });

  it("starts a gateway before etcd answers: it tries again, logging each failure, and serves once etcd is there", async () => {
    const etcd = await lateEtcd(scope.env.CHAT_ETCD_ENDPOINTS!.split(",")[0]!);
    let gateway: RoleProcess | undefined;
    try {
      let retried = false;
      const starting = startRole("gateway", { ...common, CHAT_ETCD_ENDPOINTS: etcd.endpoint }, 90_000, {
        onLine: (line) => {
          if (line.includes('"reading the chat servers from etcd failed; trying again"')) retried = true;
        },
      });
      starting.catch(() => {});
      // The first read failed: without the retry the gateway would have exited with it.
      await waitFor(() => retried, "the gateway's warning that etcd did not answer", 30_000);
      assert.ok(etcd.refused() > 0);
      etcd.open();
      gateway = await starting;
      const res = await fetch(`http://127.0.0.1:${gateway.info.ops}/healthz`);
      assert.match(await res.text(), /no chat server registered/, "it reads the registry through the late etcd");
    } finally {
      await gateway?.stop();
      await etcd.close();
    }
  });

  it("exits 1 naming CHAT_START_TIMEOUT_S when etcd never answers within it", async () => {
    const etcd = await lateEtcd(scope.env.CHAT_ETCD_ENDPOINTS!.split(",")[0]!);
    try {
      await assert.rejects(startRole("gateway", { ...common, CHAT_ETCD_ENDPOINTS: etcd.endpoint, CHAT_START_TIMEOUT_S: "4" }), (err: Error) => {
        assert.match(err.message, /exited with 1 before listening:[^]*gateway: reading the chat servers from etcd: still failing after 4 s \(CHAT_START_TIMEOUT_S\)/);
        assert.doesNotMatch(err.message, /\n\s+at /, "one line that says what to fix, no stack trace");
        return true;
      });
    } finally {
      await etcd.close();
    }
  });

  it("exits 1 with one line naming CHAT_KEYS_DIR when no api wrote the token key within CHAT_START_TIMEOUT_S", async () => {
    const emptyDir = mkdtempSync(join(tmpdir(), "chat-health-nokeys-"));
    try {
      await assert.rejects(startRole("gateway", { ...common, CHAT_KEYS_DIR: emptyDir, CHAT_START_TIMEOUT_S: "1" }), (err: Error) => {
        assert.match(err.message, /exited with 1 before listening:[^]*gateway: no token verification key at .*chat-health-nokeys-.* after 1 s \(CHAT_START_TIMEOUT_S\): start an api process with the same CHAT_KEYS_DIR first/);
        assert.doesNotMatch(err.message, /\n\s+at /, "one line that says what to fix, no stack trace");
        return true;
      });
    } finally {
      rmSync(emptyDir, { recursive: true, force: true });
    }
  });

  it("turns gRPC health NOT_SERVING as soon as the api starts stopping", async () => {
    const api = await startRole("api", common);
    await waitForGrpcHealth(api.info.grpc, ServingStatus.SERVING);
    const seen: ServingStatus[] = [];
    const watching = (async () => {
      try {
        for await (const r of healthClient(api.info.grpc).watch({ service: "chat.v1.AuthService" })) seen.push(r.status);
      } catch {
        // the stream ends with the process
      }
    })();
    await waitFor(() => seen.length > 0, "the first Watch message");
    await api.stop();
    await watching;
    assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
  });
});
