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

// Stands in for \`npx mocha\`: records the CHAT_* variables it got, then either waits to be
// signalled (STUB_MOCHA_WAIT) or prints $STUB_SUMMARY and exits $STUB_MOCHA_STATUS.
const NPX_STUB = `#!/bin/sh
env | grep '^CHAT_' | sort >"$STUB_DIR/env"
if [ -n "\${STUB_MOCHA_WAIT:-}" ]; then
  touch "$STUB_DIR/mocha-running"
  exec sleep 60
fi
[ -n "\${STUB_SUMMARY:-}" ] && echo "$STUB_SUMMARY"
exit "\${STUB_MOCHA_STATUS:-0}"
`;

interface Sandbox {
  dir: string;
  stub: string;
  env: NodeJS.ProcessEnv;
}

/** A copy of scripts/test.sh next to the stub engines.sh, with the stub npx first on PATH. */
function sandbox(states: Partial<Record<(typeof ENGINES)[number], State>>, env: Record<string, string> = {}): Sandbox {
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
});
