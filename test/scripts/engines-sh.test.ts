import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { waitFor } from "../support/wait.js";
import { freePort } from "../support/ports.js";

const ROOT = resolve(import.meta.dirname, "../..");

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

  /**
   * `up kafka` from this checkout's scripts into an engines folder of the test's own (the
   * shared engines are never touched), with a stand-in JVM on JAVA_HOME: its storage
   * format hangs (`format`) or finishes, and its broker never opens the port (`mute`) or
   * opens it and never answers (`silent`). Every pid it runs under is listed in `pids`.
   */
  async function fakeKafka(mode: "format" | "mute" | "silent", timeout: string) {
    const jdk = join(dir, "jdk/bin");
    const bin = join(dir, "bin");
    const enginesDir = join(dir, "engines");
    mkdirSync(jdk, { recursive: true });
    mkdirSync(bin, { recursive: true });
    mkdirSync(join(enginesDir, "kafka/lib"), { recursive: true });
    writeFileSync(
      join(jdk, "java"),
      `#!/usr/bin/env bash
case " $* " in
  *" -version "*) echo 'openjdk version "17.0.9" 2023-10-17' >&2; exit 0 ;;
esac
echo $$ >>"${join(dir, "pids")}"
case " $* " in
  *StorageTool*) [[ $FAKE_MODE == format ]] && exec sleep 600; exit 0 ;;
  # As a JVM's, the command line names the engine's folder: engines.sh checks it is its own.
  *kafka.Kafka*) [[ $FAKE_MODE == silent ]] && exec -a "java $*" node -e 'require("net").createServer(() => {}).listen(+process.env.CHAT_KAFKA_PORT, "127.0.0.1")'
    exec -a "java $*" sleep 600 ;;
esac
exit 1
`,
    );
    chmodSync(join(jdk, "java"), 0o755);
    // Maven present, so no apt-get; the jars' hash in place, so it is never run.
    writeFileSync(join(bin, "mvn"), "#!/bin/sh\nexit 1\n");
    chmodSync(join(bin, "mvn"), 0o755);
    const pom = spawnSync("sha256sum", [join(ROOT, "scripts/engines/kafka/pom.xml")], { encoding: "utf8" }).stdout.split(" ")[0]!;
    writeFileSync(join(enginesDir, "kafka/lib/.pom.sha256"), `${pom}\n`);

    return {
      ...process.env,
      PATH: `${bin}:${process.env.PATH}`,
      JAVA_HOME: join(dir, "jdk"),
      FAKE_MODE: mode,
      CHAT_ENGINES_DIR: enginesDir,
      CHAT_KAFKA_PORT: String(await freePort()),
      CHAT_KAFKA_CONTROLLER_PORT: String(await freePort()),
      CHAT_ENGINES_TIMEOUT: timeout,
    };
  }

  async function upKafka(mode: "format" | "mute" | "silent", timeoutS: number) {
    const env = await fakeKafka(mode, String(timeoutS));
    const enginesDir = env.CHAT_ENGINES_DIR!;
    const child = spawn("bash", [join(ROOT, "scripts/engines.sh"), "up", "kafka"], { env, stdio: ["ignore", "pipe", "pipe"] });
    const run = { out: "", code: undefined as number | null | undefined, waitingAt: 0, endedAt: 0 };
    child.stdout!.on("data", (d) => {
      run.out += d;
      if (!run.waitingAt && /waiting for it to answer/.test(run.out)) run.waitingAt = Date.now();
    });
    child.stderr!.on("data", (d) => (run.out += d));
    child.on("close", (code) => {
      run.endedAt = Date.now();
      run.code = code;
    });
    // Well past the budget; a start that has not ended by then (a format that never did) is killed first, so it starts nothing after its stand-ins go.
    await waitFor(() => run.code !== undefined, "engines.sh up kafka to end", (timeoutS + 20) * 1000).catch(() => {
      child.kill("SIGKILL");
      run.out += "\n(killed: still running)";
    });
    return { ...run, enginesDir };
  }

  /** The stand-ins' pids that are still running (a zombie counts as gone). */
  const running = () =>
    (existsSync(join(dir, "pids")) ? readFileSync(join(dir, "pids"), "utf8").split("\n").filter(Boolean).map(Number) : []).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/stat`, "utf8").split(" ")[2] !== "Z" && readFileSync(`/proc/${pid}/cmdline`, "utf8").length > 0;
      } catch {
        return false;
      }
    });
  /** The stand-ins a failing run left behind. */
  const stopLeftovers = () => {
    for (const pid of running()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
  };

  it("counts Kafka's storage format in CHAT_ENGINES_TIMEOUT: one that hangs ends the start, naming kafka, its logs and the variable", async () => {
    try {
      const r = await upKafka("format", 2);
      assert.equal(r.code, 1, r.out);
      const logs = join(r.enginesDir, "kafka/logs");
      assert.ok(
        r.out.includes(`kafka: formatting its storage did not finish within CHAT_ENGINES_TIMEOUT=2s (logs: ${logs}/stdout.log and ${logs}/server.log); raise CHAT_ENGINES_TIMEOUT if it only needs longer`),
        r.out,
      );
      await waitFor(() => running().length === 0, "the hung format to be gone", 10_000);
    } finally {
      stopLeftovers();
    }
  });

  it("stops a broker that does not answer within CHAT_ENGINES_TIMEOUT, naming kafka, its logs and the variable to raise", async () => {
    try {
      const r = await upKafka("mute", 2);
      assert.equal(r.code, 1, r.out);
      const logs = join(r.enginesDir, "kafka/logs");
      assert.match(r.out, new RegExp(`kafka: no answer on port \\d+ from pid \\d+ within CHAT_ENGINES_TIMEOUT=2s, so it is stopped \\(logs: ${logs}/stdout.log and ${logs}/server.log\\); raise CHAT_ENGINES_TIMEOUT if it only needs longer`));
      await waitFor(() => running().length === 0, "the broker to be stopped", 10_000);
    } finally {
      stopLeftovers();
    }
  });

  it("cuts its readiness probe off at the deadline: a broker that takes connections and never answers is given up on in CHAT_ENGINES_TIMEOUT, not the probe's own 5-10 s", async () => {
    try {
      const r = await upKafka("silent", 1);
      assert.equal(r.code, 1, r.out);
      assert.ok(r.waitingAt, r.out);
      // The probe alone (kafkajs' request timeout) took 5 s or more past a budget of 1.
      assert.ok(r.endedAt - r.waitingAt < 4_000, `ended ${r.endedAt - r.waitingAt} ms after it started waiting, with CHAT_ENGINES_TIMEOUT=1: ${r.out}`);
      assert.match(r.out, /kafka: no answer on port \d+ from pid \d+ within CHAT_ENGINES_TIMEOUT=1s, so it is stopped/);
    } finally {
      stopLeftovers();
    }
  });

  it("refuses a CHAT_ENGINES_TIMEOUT that is not a whole number of seconds, before starting anything", async () => {
    // "abc" was taken for 0 (the engine stopped as soon as it started), "90s" for a syntax error.
    try {
      for (const bad of ["90s", "abc", "0"]) {
        const env = await fakeKafka("mute", bad);
        const r = spawnSync("bash", [join(ROOT, "scripts/engines.sh"), "up", "kafka"], { env, encoding: "utf8", timeout: 30_000 });
        assert.equal(r.status, 2, `${bad}: ${r.stdout}${r.stderr}`);
        assert.equal(r.stderr, `engines: CHAT_ENGINES_TIMEOUT must be a whole number of seconds, at least 1, got '${bad}'\n`);
        assert.equal(existsSync(join(dir, "pids")), false, "nothing started");
      }
    } finally {
      stopLeftovers();
    }
  });
});
