import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { waitFor } from "../support/wait.js";

const ROOT = resolve(import.meta.dirname, "../..");
const ENGINES = ["etcd", "redis", "kafka", "cassandra"] as const;
type State = "up" | "starting" | "down";

// Stands in for scripts/engines.sh: each engine's state in $STUB_DIR/<engine>, every call in
// $STUB_DIR/calls. A starting engine has a pid and no port yet, as in the real status.
const ENGINES_STUB = `#!/usr/bin/env bash
cmd=$1; shift
engines=("$@"); ((\${#engines[@]})) || engines=(etcd redis kafka cassandra)
echo "$cmd \${engines[*]}" >>"$STUB_DIR/calls"
case $cmd in
  status)
    rc=0
    echo "ENGINE PID PORT STATE RSS_MB VERSION"
    for e in "\${engines[@]}"; do
      case $(cat "$STUB_DIR/$e") in
        up) echo "$e 100 1 up 1 x" ;;
        starting) echo "$e 101 1 starting 1 x"; rc=1 ;;
        *) echo "$e - 1 down - x"; rc=1 ;;
      esac
    done
    exit $rc ;;
  up)
    [ -n "\${STUB_UP_FAILS:-}" ] && exit 1
    for e in "\${engines[@]}"; do echo up >"$STUB_DIR/$e"; done ;;
  down)
    for e in "\${engines[@]}"; do echo down >"$STUB_DIR/$e"; done ;;
esac
`;

// Stands in for \`npx mocha\`: records its arguments (one line per run) and the CHAT_*
// variables it got, then either waits to be signalled (STUB_MOCHA_WAIT) or prints the
// summary (STUB_SUMMARY_<n> for its n-th run, else STUB_SUMMARY) and exits
// STUB_MOCHA_STATUS_<n>, else STUB_MOCHA_STATUS. STUB_LEAK leaves a role bundle running.
const NPX_STUB = `#!/bin/bash
echo "$*" >>"$STUB_DIR/mocha-calls"
n=$(wc -l <"$STUB_DIR/mocha-calls")
env | grep '^CHAT_' | sort >"$STUB_DIR/env"
if [ -n "\${STUB_MOCHA_WAIT:-}" ]; then
  touch "$STUB_DIR/mocha-running"
  exec sleep 60
fi
if [ -n "\${STUB_LEAK:-}" ]; then
  mkdir -p node_modules/.cache/chat-role-tests
  echo "setTimeout(() => {}, 60000);" >node_modules/.cache/chat-role-tests/gateway-1.mjs
  setsid node "$PWD/node_modules/.cache/chat-role-tests/gateway-1.mjs" </dev/null >/dev/null 2>&1 &
  until pgrep -f "$PWD/node_modules/.cache/chat-role-tests/" >/dev/null; do sleep 0.1; done
fi
summary_n=STUB_SUMMARY_$n status_n=STUB_MOCHA_STATUS_$n
summary=\${!summary_n-\${STUB_SUMMARY:-}}
[ -n "$summary" ] && echo "$summary"
exit "\${!status_n:-\${STUB_MOCHA_STATUS:-0}}"
`;

interface Sandbox {
  dir: string;
  stub: string;
  env: NodeJS.ProcessEnv;
}

/** A copy of scripts/test.sh next to the stub engines.sh, with the stub npx first on PATH. */
function sandbox(states: Partial<Record<(typeof ENGINES)[number], State>>, env: Record<string, string> = {}, files: Record<string, string> = {}): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), "chatd-test-sh-"));
  const stub = join(dir, "stub");
  mkdirSync(join(dir, "scripts"));
  mkdirSync(join(dir, "bin"));
  mkdirSync(stub);
  copyFileSync(join(ROOT, "scripts/test.sh"), join(dir, "scripts/test.sh"));
  writeFileSync(join(dir, "scripts/engines.sh"), ENGINES_STUB);
  writeFileSync(join(dir, "bin/npx"), NPX_STUB);
  chmodSync(join(dir, "bin/npx"), 0o755);
  for (const e of ENGINES) writeFileSync(join(stub, e), `${states[e] ?? "up"}\n`);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  // Nothing of the environment this suite runs in (npm test exports the engines' CHAT_* addresses).
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CHAT_")));
  return { dir, stub, env: { ...clean, PATH: `${join(dir, "bin")}:${process.env.PATH}`, STUB_DIR: stub, STUB_SUMMARY: "3 passed, 0 failed", ...env } };
}

function run(s: Sandbox): { status: number | null; lines: string[] } {
  const r = spawnSync("bash", [join(s.dir, "scripts/test.sh")], { env: s.env, encoding: "utf8", timeout: 30_000 });
  return { status: r.status, lines: r.stdout.trimEnd().split("\n") };
}

/** The up and down calls test.sh made, in order. */
function upsAndDowns(s: Sandbox): string[] {
  const calls = existsSync(join(s.stub, "calls")) ? readFileSync(join(s.stub, "calls"), "utf8").trim().split("\n") : [];
  return calls.filter((c) => /^(up|down)\b/.test(c));
}

/** The arguments of each mocha run test.sh made, in order. */
function mochaRuns(s: Sandbox): string[] {
  const file = join(s.stub, "mocha-calls");
  return existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").map((a) => a.replace(/^mocha /, "")) : [];
}

function state(s: Sandbox, engine: string): string {
  return readFileSync(join(s.stub, engine), "utf8").trim();
}

describe("scripts/test.sh (against a stub engines.sh and mocha)", function () {
  this.timeout(60_000);
  const sandboxes: Sandbox[] = [];
  const make = (...args: Parameters<typeof sandbox>) => {
    const s = sandbox(...args);
    sandboxes.push(s);
    return s;
  };
  after(() => {
    for (const s of sandboxes) rmSync(s.dir, { recursive: true, force: true });
  });

  it("touches no engine when all four are up, and ends with the summary line and mocha's status", () => {
    const s = make({}, { STUB_SUMMARY: "2 passed, 1 failed", STUB_MOCHA_STATUS: "1" });
    const r = run(s);
    assert.deepEqual(upsAndDowns(s), []);
    assert.equal(r.lines.at(-1), "2 passed, 1 failed");
    assert.equal(r.status, 1);
  });

  it("brings up only the engines that were down, and stops only those", () => {
    const s = make({ redis: "down", kafka: "down" });
    const r = run(s);
    assert.deepEqual(upsAndDowns(s), ["up redis kafka", "down redis kafka"]);
    assert.equal(state(s, "etcd"), "up");
    assert.equal(state(s, "cassandra"), "up");
    assert.equal(r.lines.at(-1), "3 passed, 0 failed");
    assert.equal(r.status, 0);
  });

  it("waits for an engine another run is starting, but never stops it", () => {
    const s = make({ etcd: "down", cassandra: "starting" });
    run(s);
    assert.deepEqual(upsAndDowns(s), ["up etcd cassandra", "down etcd"]);
    assert.equal(state(s, "cassandra"), "up");
  });

  it("leaves the engines it started running with CHAT_KEEP_ENGINES=1", () => {
    const s = make({ kafka: "down" }, { CHAT_KEEP_ENGINES: "1" });
    run(s);
    assert.deepEqual(upsAndDowns(s), ["up kafka"]);
    assert.equal(state(s, "kafka"), "up");
  });

  it("stops what it started when the engines do not come up, and reports a failure", () => {
    const s = make({ cassandra: "down" }, { STUB_UP_FAILS: "1" });
    const r = run(s);
    assert.deepEqual(upsAndDowns(s), ["up cassandra", "down cassandra"]);
    assert.equal(r.lines.at(-1), "0 passed, 1 failed");
    assert.equal(r.status, 1);
  });

  it("counts mocha dying before its summary as a failure", () => {
    const s = make({}, { STUB_SUMMARY: "" });
    const r = run(s);
    assert.equal(r.lines.at(-1), "0 passed, 1 failed");
    assert.equal(r.status, 1);
  });

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`stops the engines it started on ${signal} to its process group (Ctrl+C, a CI cancel)`, async () => {
      const s = make({ redis: "down", cassandra: "down" }, { STUB_MOCHA_WAIT: "1" });
      const child = spawn("bash", [join(s.dir, "scripts/test.sh")], { env: s.env, stdio: "ignore", detached: true });
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
      try {
        await waitFor(() => existsSync(join(s.stub, "mocha-running")), "the stub mocha to start", 20_000);
        process.kill(-child.pid!, signal);
        assert.notEqual(await exited, 0);
      } finally {
        if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, "SIGKILL");
      }
      assert.deepEqual(upsAndDowns(s), ["up redis cassandra", "down redis cassandra"]);
      assert.equal(state(s, "redis"), "down");
      assert.equal(state(s, "cassandra"), "down");
      assert.equal(state(s, "etcd"), "up");
    });
  }

  it("reads the engines' addresses from CHAT_ENGINES_DIR, and variables already set win", () => {
    const enginesDir = join(tmpdir(), `chatd-test-sh-engines-${process.pid}`);
    mkdirSync(enginesDir, { recursive: true });
    try {
      writeFileSync(
        join(enginesDir, "engines.env"),
        "# Variables already set in the environment win over these.\nCHAT_REDIS_URL=redis://from-file:1\nCHAT_KAFKA_BROKERS=from-file:2\n",
      );
      const s = make({}, { CHAT_ENGINES_DIR: enginesDir, CHAT_REDIS_URL: "redis://from-env:3" });
      // The default place holds other addresses: it must not be read.
      mkdirSync(join(s.dir, ".engines"));
      writeFileSync(join(s.dir, ".engines/engines.env"), "CHAT_ETCD_ENDPOINTS=wrong:4\n");
      const r = run(s);
      assert.equal(r.status, 0);
      const seen = readFileSync(join(s.stub, "env"), "utf8").trim().split("\n");
      assert.ok(seen.includes("CHAT_REDIS_URL=redis://from-env:3"), seen.join("\n"));
      assert.ok(seen.includes("CHAT_KAFKA_BROKERS=from-file:2"), seen.join("\n"));
      assert.ok(!seen.some((l) => l.startsWith("CHAT_ETCD_ENDPOINTS=")), seen.join("\n"));
    } finally {
      rmSync(enginesDir, { recursive: true, force: true });
    }
  });

  const SUITES = {
    "test/system/restarts.test.ts": "// Runs alone (scripts/test.sh): it restarts the shared Redis.\nit('x', () => {});\n",
    "internal/a/a.test.ts": "it('a', () => {});\n",
    "test/system/b.test.ts": "it('b', () => {}); // Runs alone? No: the mark is a line of its own.\n",
  };

  it("runs the suites CHAT_TEST_JOBS at a time, then those that say they run alone, one by one, and sums both summaries", () => {
    const s = make({}, { CHAT_TEST_JOBS: "3", STUB_SUMMARY_1: "5 passed, 0 failed", STUB_SUMMARY_2: "2 passed, 0 failed" }, SUITES);
    const r = run(s);
    const runs = mochaRuns(s);
    assert.equal(runs.length, 2, runs.join("\n"));
    assert.match(runs[0]!, /^--parallel --jobs 3 --reporter \S+ internal\/\*\*\/\*\.test\.ts gateway\/\*\*\/\*\.test\.ts test\/\*\*\/\*\.test\.ts --ignore test\/system\/restarts\.test\.ts$/);
    assert.match(runs[1]!, /^--reporter \S+ test\/system\/restarts\.test\.ts$/);
    assert.equal(r.lines.at(-1), "7 passed, 0 failed");
    assert.equal(r.status, 0);
  });

  it("runs two at a time by default, and hands its own arguments to both runs", () => {
    const s = make({}, {}, SUITES);
    const r = spawnSync("bash", [join(s.dir, "scripts/test.sh"), "--grep", "x y"], { env: s.env, encoding: "utf8", timeout: 30_000 });
    const runs = mochaRuns(s);
    assert.match(runs[0]!, /^--parallel --jobs 2 .* --grep x y$/);
    assert.match(runs[1]!, /restarts\.test\.ts --grep x y$/);
    assert.equal(r.stdout.trimEnd().split("\n").at(-1), "6 passed, 0 failed");
  });

  it("fails when either run fails, with both runs' counts", () => {
    const s = make({}, { STUB_SUMMARY_2: "1 passed, 1 failed", STUB_MOCHA_STATUS_2: "1" }, SUITES);
    const r = run(s);
    assert.equal(mochaRuns(s).length, 2);
    assert.equal(r.lines.at(-1), "4 passed, 1 failed");
    assert.equal(r.status, 1);
  });

  it("counts a run that died before its summary as a failure, and still runs the other", () => {
    const s = make({}, { STUB_SUMMARY_1: "" }, SUITES);
    const r = run(s);
    assert.equal(mochaRuns(s).length, 2);
    assert.equal(r.lines.at(-1), "3 passed, 1 failed");
    assert.equal(r.status, 1);
  });

  it("runs everything in one serial mocha with CHAT_TEST_JOBS=1", () => {
    const s = make({}, { CHAT_TEST_JOBS: "1" }, SUITES);
    const r = run(s);
    assert.deepEqual(
      mochaRuns(s).map((a) => a.replace(/--reporter \S+ /, "")),
      ["internal/**/*.test.ts gateway/**/*.test.ts test/**/*.test.ts"],
    );
    assert.equal(r.lines.at(-1), "3 passed, 0 failed");
  });

  for (const jobs of ["0", "two", "-1", "1.5"]) {
    it(`refuses CHAT_TEST_JOBS="${jobs}", naming the variable, and starts nothing`, () => {
      const s = make({ redis: "down" }, { CHAT_TEST_JOBS: jobs });
      const r = run(s);
      assert.deepEqual(mochaRuns(s), []);
      assert.deepEqual(upsAndDowns(s), []);
      assert.ok(r.lines.some((l) => l.includes("CHAT_TEST_JOBS")), r.lines.join("\n"));
      assert.equal(r.lines.at(-1), "0 passed, 1 failed");
      assert.notEqual(r.status, 0);
    });
  }

  it("names and stops a role a suite left running, and fails the run", () => {
    const s = make({}, { STUB_LEAK: "1" });
    const r = run(s);
    const at = r.lines.findIndex((l) => l.includes("left these processes running"));
    assert.ok(at >= 0, r.lines.join("\n"));
    assert.match(r.lines[at + 1]!, /chat-role-tests\/gateway-1\.mjs/);
    assert.equal(r.lines.at(-1), "3 passed, 1 failed");
    assert.equal(r.status, 1);
    const left = spawnSync("pgrep", ["-f", join(s.dir, "node_modules/.cache/chat-role-tests/")]);
    assert.equal(left.status, 1, "the leaked role is still running");
  });
});
