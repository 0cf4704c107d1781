import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import http from "node:http";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, ServingStatus } from "../../internal/grpc/health.js";
import { PUBLIC_KEEP_ALIVE_MS } from "../../internal/observability/lifecycle.js";
import { signUp } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { TestDevice } from "../support/device.js";
import { stopAll } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

describe("chatd operations", function () {
  this.timeout(90_000);
  const started: ChatdProcess[] = [];
  const dirs: string[] = [];
  const tempDir = (prefix: string) => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };
  afterEach(async () => {
    for (const c of started.splice(0)) await c.stop();
    for (const d of dirs.splice(0)) removeDataDir(d);
  });
  // A chatd a failing test started and lost track of (a second one that was not refused).
  after(() => stopAll());

  it("keeps an idle keep-alive connection on the public port 65 s and says so, longer than Node's agent keeps one (5 s, the server's default: a tie that fails requests with 'socket hang up')", async () => {
    const chatd = await startChatd();
    started.push(chatd);
    dirs.push(chatd.dataDir);
    const agent = new http.Agent({ keepAlive: true });
    try {
      const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(`${chatd.httpUrl}/healthz`, { agent }, resolve).on("error", reject));
      res.resume();
      assert.equal(res.headers["keep-alive"], `timeout=${PUBLIC_KEEP_ALIVE_MS / 1000}`);
      assert.ok(PUBLIC_KEEP_ALIVE_MS > 60_000, "past a load balancer's usual 60 s idle timeout");
    } finally {
      agent.destroy();
    }
  });

  it("serves /metrics on CHAT_OPS_PORT's listener and not on the public port, whose /healthz stays; without it, both on the public port", async () => {
    const split = await startChatd({ env: { CHAT_OPS_PORT: "0" } });
    started.push(split);
    dirs.push(split.dataDir);
    assert.ok(split.opsPort, "the ops port in the listening line");
    const ops = `http://127.0.0.1:${split.opsPort}`;
    const scraped = await fetch(`${ops}/metrics`);
    assert.equal(scraped.status, 200);
    assert.match(await scraped.text(), /^chat_sessions /m);
    assert.equal((await fetch(`${ops}/healthz`)).status, 200);
    assert.equal((await fetch(`${split.httpUrl}/metrics`)).status, 404, "the public port keeps its metrics to itself");
    assert.equal((await fetch(`${split.httpUrl}/healthz`)).status, 200, "load balancers still probe the public port");

    const together = await startChatd();
    started.push(together);
    dirs.push(together.dataDir);
    assert.equal(together.opsPort, undefined);
    assert.equal((await fetch(`${together.httpUrl}/metrics`)).status, 200);
  });

  it("stays up while the queue's writes fail (a full disk), /healthz 503 naming storage and gRPC health NOT_SERVING, and 200 once a write goes through", async () => {
    const chatd = await startChatd();
    started.push(chatd);
    dirs.push(chatd.dataDir);
    const alice = await signUp(chatd.httpUrl, "alice");
    const bob = await signUp(chatd.httpUrl, "bob");
    const dm = (await alice.api.channels.openDirect({ userId: bob.userId })).channel!.channelId;
    const sender = await new TestDevice(chatd.wsUrl, alice.devices[0]!.token).connect();
    const health = async () => {
      const res = await fetch(`${chatd.httpUrl}/healthz`);
      return { status: res.status, body: (await res.json()) as { checks: Record<string, string> } };
    };
    // Bob is offline: each message to him publishes a push notification to queue.db.
    // A trigger from another connection fails those writes as SQLITE_FULL would, with no disk to fill.
    const queueDb = new Database(join(chatd.dataDir, "queue.db"));
    const grpcHealth = createClient(Health, createGrpcTransport({ baseUrl: chatd.grpcUrl }));
    try {
      assert.equal((await sender.send(dm, "before")).kind.case, "sendAck");
      assert.equal((await health()).status, 200);
      queueDb.exec("CREATE TRIGGER full BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");
      assert.equal((await sender.send(dm, "while the disk is full")).kind.case, "sendAck", "the message itself is stored");
      const failing = await waitFor(async () => {
        const h = await health();
        return h.status === 503 && h;
      }, "/healthz 503");
      assert.match(failing.body.checks.storage!, /queue writes failing .*database or disk is full/);
      await waitFor(async () => (await grpcHealth.check({ service: "" })).status === ServingStatus.NOT_SERVING, "gRPC health NOT_SERVING", 30_000, 50);
      assert.equal(chatd.child.exitCode, null, "still running");

      queueDb.exec("DROP TRIGGER full");
      assert.equal((await sender.send(dm, "after")).kind.case, "sendAck");
      await waitFor(async () => (await health()).status === 200, "/healthz 200 after a write went through");
      await waitFor(async () => (await grpcHealth.check({ service: "chat.v1.MessageService" })).status === ServingStatus.SERVING, "gRPC health SERVING again", 30_000, 50);
    } finally {
      queueDb.close();
      await sender.close();
    }
    assert.equal(chatd.child.exitCode, null, "still running");
  });

  describe("CHAT_DATA_DIR", () => {
    /** Starting chatd fails with exit 2 and this line, not a stack trace. */
    /** A process that has exited: its pid names nobody (until reused). */
    const exitedProcess = async () => {
      const child = spawn(process.execPath, ["-e", ""]);
      await once(child, "exit");
      return child;
    };
    const refused = async (dataDir: string, line: RegExp) =>
      assert.rejects(startChatd({ dataDir }), (err: Error) => {
        assert.match(err.message, /exited with 2 before listening/);
        assert.match(err.message, line);
        assert.doesNotMatch(err.message, /\n\s+at /, "no stack trace");
        return true;
      });

    it("refuses a second chatd on a directory one uses, exit 2 naming CHAT_DATA_DIR, and frees it on a clean stop", async () => {
      const first = await startChatd({ dataDir: tempDir("chatd-lock-") });
      started.push(first);
      const lock = join(first.dataDir, "chatd.lock");
      assert.equal(readFileSync(lock, "utf8").split("\n")[0], String(first.child.pid));
      await refused(first.dataDir, /CHAT_DATA_DIR=".*": in use by another chatd \(pid \d+/);
      assert.equal((await fetch(`${first.httpUrl}/healthz`)).status, 200, "the first carries on");

      await first.stop();
      started.splice(0);
      assert.ok(!existsSync(lock), "a clean stop removes the lock");
      const second = await startChatd({ dataDir: first.dataDir });
      started.push(second);
    });

    it("keeps its data to its owner: a data directory it creates is 0700, its databases and their WAL files 0600", async () => {
      const dataDir = join(tempDir("chatd-mode-"), "data");
      const chatd = await startChatd({ dataDir });
      started.push(chatd);
      const mode = (name: string) => (statSync(join(dataDir, name)).mode & 0o777).toString(8);
      assert.equal(mode(""), "700");
      const files = readdirSync(dataDir).filter((f) => /^(chat|queue)\.db(-wal|-shm)?$/.test(f)).sort();
      assert.deepEqual(files, ["chat.db", "chat.db-shm", "chat.db-wal", "queue.db", "queue.db-shm", "queue.db-wal"]);
      for (const f of files) assert.equal(mode(f), "600", f);
    });

    it("opens nothing in a directory another live process holds", async () => {
      const dataDir = tempDir("chatd-lock-");
      // This test's process stands in for a running chatd.
      writeFileSync(join(dataDir, "chatd.lock"), `${process.pid}\n`);
      await refused(dataDir, new RegExp(`CHAT_DATA_DIR=".*": in use by another chatd \\(pid ${process.pid}`));
      assert.deepEqual(readdirSync(dataDir), ["chatd.lock"], "no database, no keys");
    });

    it("takes over the lock of a chatd that died without removing it", async () => {
      const dataDir = tempDir("chatd-lock-");
      const gone = await exitedProcess();
      writeFileSync(join(dataDir, "chatd.lock"), `${gone.pid}\n`);
      const chatd = await startChatd({ dataDir });
      started.push(chatd);
      assert.equal(readFileSync(join(dataDir, "chatd.lock"), "utf8").split("\n")[0], String(chatd.child.pid));
    });

    it("takes over a lock whose pid now names a process started after the lock was written (a reboot)", async () => {
      const dataDir = tempDir("chatd-lock-");
      const other = spawn(process.execPath, ["-e", "setTimeout(() => {}, 120_000)"], { stdio: "ignore" });
      try {
        const lock = join(dataDir, "chatd.lock");
        writeFileSync(lock, `${other.pid}\n`);
        // Written an hour ago, by a chatd of the last boot that never removed it.
        const anHourAgo = new Date(Date.now() - 3_600_000);
        utimesSync(lock, anHourAgo, anHourAgo);
        const chatd = await startChatd({ dataDir });
        started.push(chatd);
        assert.equal(readFileSync(lock, "utf8").split("\n")[0], String(chatd.child.pid));
      } finally {
        other.kill();
      }
    });

    it("leaves a dead chatd's lock to the start already taking it over, instead of both removing it and both running", async () => {
      const dataDir = tempDir("chatd-lock-");
      const gone = await exitedProcess();
      const lock = join(dataDir, "chatd.lock");
      writeFileSync(lock, `${gone.pid}\n`);
      // A live start holds the takeover guard: it is between its look at the lock and its own.
      const taker = spawn(process.execPath, ["-e", "setTimeout(() => {}, 120_000)"], { stdio: "ignore" });
      try {
        writeFileSync(`${lock}.takeover`, `${taker.pid}\n`);
        await refused(dataDir, new RegExp(`in use by another chatd \\(pid ${taker.pid}, .*chatd\\.lock\\.takeover\\)`));
        assert.equal(readFileSync(lock, "utf8").trim(), String(gone.pid), "the lock left to the taker");
      } finally {
        taker.kill();
      }
    });

    it("removes a takeover guard left by a start that died during its takeover", async () => {
      const dataDir = tempDir("chatd-lock-");
      const gone = await exitedProcess();
      const lock = join(dataDir, "chatd.lock");
      writeFileSync(lock, `${gone.pid}\n`);
      writeFileSync(`${lock}.takeover`, `${gone.pid}\n`);
      const chatd = await startChatd({ dataDir });
      started.push(chatd);
      assert.equal(readFileSync(lock, "utf8").split("\n")[0], String(chatd.child.pid));
      assert.ok(!existsSync(`${lock}.takeover`), "the guard is gone");
    });

    // An empty key file is what a power cut soon after the first start left when the file was not flushed before its link.
    it("refuses a key file it cannot use (empty, damaged), exit 2 naming CHAT_DATA_DIR and the file, not a stack trace", async () => {
      const vapid = tempDir("chatd-vapid-");
      writeFileSync(join(vapid, "vapid.json"), "");
      await refused(vapid, /chatd: CHAT_DATA_DIR=".*": .*vapid\.json is not a VAPID key file \(/);
      const token = tempDir("chatd-token-key-");
      mkdirSync(join(token, "keys"), { mode: 0o700 });
      writeFileSync(join(token, "keys", "token-ed25519.key.pem"), "", { mode: 0o600 });
      await refused(token, /chatd: CHAT_DATA_DIR=".*": .*token-ed25519\.key\.pem is not an Ed25519 private key/);
    });

    it("refuses a path that is a file, exit 2 naming CHAT_DATA_DIR", async () => {
      const file = join(tempDir("chatd-file-"), "not-a-dir");
      writeFileSync(file, "");
      await refused(file, /chatd: invalid configuration:\n\s+- CHAT_DATA_DIR=".*not-a-dir": not a directory/);
    });
  });
});
