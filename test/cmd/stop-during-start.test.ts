import assert from "node:assert/strict";
import { execFileSync, type ChildProcess } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, mkdtempSync } from "node:fs";
import { open } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { loadOrCreateKeys, PRIVATE_KEY_FILE } from "../../internal/auth/tokens.js";
import { createEtcdClient, normalizePrefix } from "../../internal/etcd/client.js";
import { encodeSubmitted } from "../../internal/pipeline/records.js";
import { ConsumerGroups, topicSpecs, Topics } from "../../internal/pipeline/topics.js";
import { SqliteQueue } from "../../internal/queue/sqlite.js";
import { openSqliteStorage } from "../../internal/storage/sqlite/index.js";
import { engineConfig } from "../support/engines.js";
import { holdGroup } from "../support/kafka-groups.js";
import { freePort } from "../support/ports.js";
import { runToExit, useDeployment } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

/** Holds a role's start-up where it cannot go on alone, until `release`. */
interface Gate {
  env: Record<string, string>;
  /** Resolves once the role waits at the gate. */
  reached: Promise<void>;
  release(): Promise<void>;
  close(): Promise<void>;
}

/**
 * etcd behind a proxy that holds every connection (bytes buffered) until released, then
 * passes them on: every engine role reads the chat servers or leases a worker id from etcd
 * before it listens.
 */
async function etcdGate(env: Record<string, string>): Promise<Gate> {
  const [host, port] = env.CHAT_ETCD_ENDPOINTS!.split(",")[0]!.replace(/^[a-z]+:\/\//, "").split(":") as [string, string];
  const held: net.Socket[] = [];
  const sockets = new Set<net.Socket>();
  let open = false;
  let reached!: () => void;
  const pass = (client: net.Socket) => {
    const upstream = net.connect(Number(port), host);
    sockets.add(upstream);
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      a.on("error", () => b.destroy());
      a.on("close", () => b.destroy());
      a.pipe(b);
    }
  };
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("error", () => {});
    if (open) return pass(client);
    held.push(client);
    reached();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    env: { ...env, CHAT_ETCD_ENDPOINTS: `127.0.0.1:${(server.address() as net.AddressInfo).port}` },
    reached: new Promise((r) => (reached = r)),
    async release() {
      open = true;
      for (const client of held.splice(0)) if (!client.destroyed) pass(client);
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A port on 127.0.0.1 (the roles' CHAT_HOST) something else listens on. */
async function holdPort(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/**
 * The tests of a group each run a role process of their own to its exit, independent of the
 * others, and most of their time is that process's start (node, tsx): a test starts its own run
 * and the next test's, so two run at once, and awaits its own. after() awaits a run started for a
 * test that did not run (--grep), which stops its process as a test's does.
 */
function twoAtATime<T>(names: readonly string[], run: (name: string) => Promise<T>): (name: string) => Promise<T> {
  const runs = new Map<string, Promise<T>>();
  const start = (name: string) => {
    let r = runs.get(name);
    if (!r) {
      r = run(name);
      // Its own test awaits it; this only keeps a failure of a run started ahead from going unhandled meanwhile.
      r.catch(() => {});
      runs.set(name, r);
    }
    return r;
  };
  after(() => Promise.allSettled(runs.values()));
  return (name) => {
    const own = start(name);
    const next = names[names.indexOf(name) + 1];
    if (next !== undefined) start(next);
    return own;
  };
}

/** chatd needs no engine: its token key is a FIFO, which its read waits on until the test writes the key. */
async function keyFileGate(dataDir: string): Promise<Gate> {
  mkdirSync(join(dataDir, "keys"), { recursive: true });
  const fifo = join(dataDir, "keys", PRIVATE_KEY_FILE);
  execFileSync("mkfifo", [fifo]);
  // Opening a FIFO for writing waits for its reader: chatd reading its key.
  const writer = open(fifo, "w");
  return {
    env: { CHAT_DATA_DIR: dataDir, CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0" },
    reached: writer.then(() => {}),
    async release() {
      const pem = generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" });
      const w = await writer;
      // EPIPE: chatd died of the signal, which the test then reports.
      await w.writeFile(pem).catch(() => {});
      await w.close();
    },
    async close() {},
  };
}

// api, gateway, chat-server, presence and chatd installed their signal handling once they
// listened, pipeline and notifier once they had opened their engines: a SIGTERM during start-up
// (a deploy rolled back, a pod deleted while it waited on an engine) killed them by the signal
// (status 143) instead of a stop.
describe("a SIGTERM during start-up: a clean stop, exit 0, never 'listening'", function () {
  this.timeout(120_000);
  const deployment = useDeployment("sigstart");
  const { scope, dir, keysDir } = deployment;
  const common = { ...deployment.env, CHAT_OPS_PORT: "0" };
  // The gateway waits for the api's public key before anything else.
  before(() => loadOrCreateKeys(keysDir));

  const cases: Record<string, () => Promise<Gate>> = {
    chatd: () => keyFileGate(mkdtempSync(join(dir, "chatd-"))),
    api: () => etcdGate(common),
    gateway: () => etcdGate(common),
    "chat-server": () => etcdGate(common),
    presence: () => etcdGate(common),
    // Also pinned while they join their consumer groups (pipeline-start, notifier-start).
    pipeline: () => etcdGate(common),
    notifier: () => etcdGate(common),
  };
  /** Runs `role` to its gate, sends SIGTERM, lets the start-up go on and resolves with its exit. */
  async function stopAtGate(role: string, gate: Gate): Promise<{ code: number | null; stdout: string; stderr: string }> {
    let child: ChildProcess | undefined;
    let stdout = "";
    try {
      const exited = runToExit(role, { CHAT_LOG_LEVEL: "info", ...gate.env }, (c) => {
        child = c;
        c.stdout!.on("data", (d) => (stdout += String(d)));
      });
      await Promise.race([gate.reached, exited.then((r) => assert.fail(`${role} exited before the gate: ${r.stderr}`))]);
      child!.kill("SIGTERM");
      // Taken (its "stopping" line) or not (dead of it) before the start-up may go on.
      await waitFor(() => /"msg":"stopping"/.test(stdout) || child!.exitCode !== null || child!.signalCode !== null, `${role} to take the signal`);
      await gate.release();
      const { code, stderr } = await exited;
      assert.equal(child!.signalCode, null, `${role} was killed by ${child!.signalCode}`);
      return { code, stdout, stderr };
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await gate.close();
    }
  }

  // It went on to register in etcd and deregistered as it stopped: gateways were told of a
  // server that was going, and sent it sessions they then moved away.
  it("chat-server: never registers in etcd", async () => {
    const etcd = createEtcdClient({ endpoints: engineConfig().etcdEndpoints });
    const seen: string[] = [];
    try {
      const watcher = await etcd.watch().prefix(`${normalizePrefix(scope.env.CHAT_ETCD_PREFIX!)}servers/`).create();
      watcher.on("put", (kv) => seen.push(kv.key.toString()));
      const { code, stdout, stderr } = await stopAtGate("chat-server", await etcdGate(common));
      assert.equal(code, 0, stderr);
      assert.doesNotMatch(stdout, /chat-server listening/);
      // A put reaches this watcher before the process that made it has deleted the key and exited.
      await etcd.get("sync").exec();
      assert.deepEqual(seen, [], "the stopped chat server registered");
      await watcher.cancel();
    } finally {
      etcd.close();
    }
  });

  // It joined its consumer group and left it again: every member of the group rebalanced twice.
  it("notifier: never joins its consumer group", async () => {
    const holder = await holdGroup(scope.env.CHAT_KAFKA_NAMESPACE!, ConsumerGroups.notifier, Topics.notifications);
    try {
      const joinsBefore = holder.joins();
      // Had it joined, it would wait for the holder's batch to exit: let the batch go then, and fail below.
      holder.revoked.addEventListener("abort", () => holder.release());
      const { code, stdout, stderr } = await stopAtGate("notifier", await etcdGate(common));
      assert.equal(code, 0, stderr);
      assert.doesNotMatch(stdout, /notifier listening/);
      assert.equal(holder.revoked.aborted, false, "the stopped notifier joined the group (the holder's partitions were revoked)");
      assert.equal(holder.joins(), joinsBefore);
    } finally {
      holder.release();
      await holder.close();
    }
  });

  // They listened on every port for the moment between the start-up's end and the stop it ran
  // at once: a balancer probing them counted a process in that was going. Held here, a port the
  // role tries to listen on ends it with status 1 and the setting named, a certain sign. (The
  // chat server, the pipeline, presence and the notifier read CHAT_HTTP_PORT not at all, and
  // only the chat server CHAT_GRPC_PORT.)
  const listeners = ["api", "gateway", "chat-server", "pipeline", "presence", "notifier", "chatd"];
  const stoppedHoldingPorts = twoAtATime(listeners, async (role) => {
    const held = await Promise.all([0, 1, 2].map(() => holdPort()));
    try {
      const [http, grpc, ops] = held.map((h) => String(h.port)) as [string, string, string];
      const ports = { CHAT_HTTP_PORT: http, CHAT_GRPC_PORT: grpc, CHAT_OPS_PORT: ops };
      if (role !== "chatd") return await stopAtGate(role, await etcdGate({ ...common, ...ports }));
      const gate = await keyFileGate(mkdtempSync(join(dir, "chatd-")));
      return await stopAtGate("chatd", { ...gate, env: { ...gate.env, ...ports } });
    } finally {
      await Promise.all(held.map((h) => h.close()));
    }
  });
  for (const role of listeners) {
    it(`${role}: never listens on its ports`, async () => {
      const { code, stdout, stderr } = await stoppedHoldingPorts(role);
      assert.equal(code, 0, stderr);
      assert.doesNotMatch(stderr, /CHAT_(HTTP|GRPC|OPS)_PORT/);
      assert.doesNotMatch(stdout, new RegExp(`${role} listening`));
    });
  }

  /** Runs `role` until its log says it waits (`waiting`), sends SIGTERM: its exit, and how long after the signal. */
  async function stopWhileWaiting(role: string, env: Record<string, string>, waiting: RegExp): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
    let child: ChildProcess | undefined;
    let stdout = "";
    try {
      const exited = runToExit(role, { ...env, CHAT_LOG_LEVEL: "info" }, (c) => {
        child = c;
        c.stdout!.on("data", (d) => (stdout += String(d)));
      });
      await Promise.race([
        waitFor(() => waiting.test(stdout), `${role} to wait`, 60_000),
        exited.then((r) => assert.fail(`${role} exited before it waited: ${r.stderr}`)),
      ]);
      const signalledAt = performance.now();
      child!.kill("SIGTERM");
      const { code, stderr } = await exited;
      return { code, stdout, stderr, ms: performance.now() - signalledAt };
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  }

  // A role waiting on an engine that is down went on trying for CHAT_START_TIMEOUT_S after the
  // signal, past the stop's own 25 s bound, on which it then exited 1 ("did not stop").
  const waiting = ["api", "gateway", "chat-server", "presence", "pipeline", "notifier", "gateway-key", "chatd-stuck"];
  const stoppedWhileWaiting = twoAtATime(waiting, async (name) => {
    if (name === "gateway-key") {
      const env = { ...common, CHAT_KEYS_DIR: mkdtempSync(join(dir, "no-keys-")) };
      return stopWhileWaiting("gateway", env, /waiting for the api to write its token key/);
    }
    if (name === "chatd-stuck") {
      const dataDir = mkdtempSync(join(dir, "chatd-stuck-"));
      const storage = openSqliteStorage(join(dataDir, "chat.db"));
      // The send's channel exists: the Sequencer drops a record for one that does not, storing nothing.
      await storage.channels.createGroup({ channelId: 2n, kind: "group", title: "g", createdAtMs: 1, createdBy: 3n }, [
        { channelId: 2n, userId: 3n, role: "owner", joinedAtMs: 1, readSeq: 0n },
      ]);
      // Every store of a message fails, as on a chat.db that keeps failing that write.
      storage.db.exec("CREATE TRIGGER stuck BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'stuck for the test'); END");
      await storage.close();
      const queue = new SqliteQueue({ path: join(dataDir, "queue.db") });
      await queue.ensureTopics(topicSpecs(8));
      const acked = { messageId: 1n, clientMsgId: "old-1", channelId: 2n, senderUserId: 3n, senderDeviceId: 4n, text: "acked, not stored", sentAtMs: Date.now() };
      await queue.publish(Topics.submitted, [{ key: "2", value: encodeSubmitted(acked) }]);
      await queue.close();
      const env = { CHAT_DATA_DIR: dataDir, CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0" };
      return stopWhileWaiting("chatd", env, /finishing the sends an older chatd acked/);
    }
    // Nothing listens there: Cassandra for those that open it first, etcd for the gateway.
    const [cassandra, etcd] = await Promise.all([freePort(), freePort()]);
    const env = { ...common, CHAT_CASSANDRA_CONTACT_POINTS: `127.0.0.1:${cassandra}`, CHAT_ETCD_ENDPOINTS: `127.0.0.1:${etcd}` };
    return stopWhileWaiting(name, env, /failed; trying again/);
  });
  for (const role of waiting.slice(0, 6)) {
    it(`${role}: while it waits on an engine that is down, stops at once, exit 0`, async () => {
      const { code, stdout, stderr, ms } = await stoppedWhileWaiting(role);
      assert.equal(code, 0, stderr);
      assert.ok(ms < 10_000, `stopped ${Math.round(ms)} ms after the signal`);
      assert.match(stderr, new RegExp(`^${role}: stopped during start-up \\(.*not tried again, the process is stopping`, "m"));
      assert.doesNotMatch(stdout, /did not stop/);
    });
  }

  it("gateway: while it waits for the api's token key, stops at once, exit 0", async () => {
    const { code, stderr, ms } = await stoppedWhileWaiting("gateway-key");
    assert.equal(code, 0, stderr);
    assert.ok(ms < 10_000, `stopped ${Math.round(ms)} ms after the signal`);
    assert.match(stderr, /^gateway: stopped during start-up \(waiting for the token key at /m);
  });

  // Its step finishing the sends an older chatd left in queue.db waits, while they make no
  // progress, 30 s before it serves: a SIGTERM then ran into the stop's 25 s bound, exit 1.
  it("chatd: while the sends an older chatd left are stuck, stops at once, exit 0", async () => {
    const { code, stdout, stderr, ms } = await stoppedWhileWaiting("chatd-stuck");
    assert.equal(code, 0, stderr);
    assert.ok(ms < 10_000, `stopped ${Math.round(ms)} ms after the signal`);
    assert.doesNotMatch(stdout, /did not stop|chatd listening/);
  });

  const stoppedAtGate = twoAtATime(Object.keys(cases), async (role) => stopAtGate(role, await cases[role]!()));
  for (const role of Object.keys(cases)) {
    it(role, async () => {
      const { code, stdout, stderr } = await stoppedAtGate(role);
      assert.equal(code, 0, stderr);
      assert.doesNotMatch(stdout, new RegExp(`${role} listening`));
    });
  }
});
