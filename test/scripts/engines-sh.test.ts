import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
    s.on("error", rej);
  });
}

describe("scripts/engines.sh up", function () {
  this.timeout(60_000);
  let dir: string;
  let engine: ChildProcess | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "chatd-engines-sh-"));
  });
  afterEach(() => {
    engine?.kill("SIGKILL");
    engine = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses at once, stopping nothing, when its readiness probe cannot load its clients (a checkout without npm install)", async () => {
    // A copy of the scripts with no node_modules above them, sharing an engines folder
    // where a Kafka this script started is running (here a stand-in with the same pid file).
    cpSync(join(ROOT, "scripts"), join(dir, "checkout/scripts"), { recursive: true });
    const enginesDir = join(dir, "engines");
    mkdirSync(join(enginesDir, "kafka"), { recursive: true });
    engine = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)", join(enginesDir, "kafka")], { stdio: "ignore" });
    writeFileSync(join(enginesDir, "kafka/kafka.pid"), `${engine.pid}\n`);
    const r = spawnSync("bash", [join(dir, "checkout/scripts/engines.sh"), "up", "kafka"], {
      env: { ...process.env, CHAT_ENGINES_DIR: enginesDir, CHAT_KAFKA_PORT: String(await freePort()), CHAT_ENGINES_TIMEOUT: "3" },
      encoding: "utf8",
      timeout: 30_000,
    });
    // Not engine.exitCode: spawnSync held the event loop, so an exit would not be seen yet; a stopped
    // child is a zombie until reaped.
    const state = readFileSync(`/proc/${engine.pid}/stat`, "utf8").split(" ")[2];
    assert.notEqual(state, "Z", "the running engine was left alone");
    assert.notEqual(r.status, 0);
    assert.match(r.stderr + r.stdout, /readiness probe .* cannot load kafkajs and cassandra-driver: run npm install/);
  });
});
