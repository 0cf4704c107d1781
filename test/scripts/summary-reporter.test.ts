import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");

/** Runs mocha with the project's summary reporter on one spec file; its exit status and output. */
async function runSpec(spec: string, env: Record<string, string> = {}): Promise<{ code: number | null; out: string; ms: number }> {
  const dir = mkdtempSync(join(tmpdir(), "chat-reporter-"));
  const file = join(dir, "spec.cjs");
  writeFileSync(file, spec);
  const started = performance.now();
  try {
    const child = spawn(process.execPath, [join(ROOT, "node_modules/mocha/bin/mocha.js"), "--no-config", "--reporter", join(ROOT, "scripts/summary-reporter.cjs"), file], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => (out += String(d)));
    child.stderr.on("data", (d) => (out += String(d)));
    const code = await new Promise<number | null>((r) => child.once("exit", r));
    return { code, out, ms: performance.now() - started };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const lastLine = (out: string) => out.trim().split("\n").at(-1);

// mocha runs without --exit: a suite that leaves a socket open would hold the run (and CI) for ever.
describe("scripts/summary-reporter.cjs", function () {
  this.timeout(60_000);

  it("ends with the plain summary and exits as mocha does when nothing is left running", async () => {
    const { code, out } = await runSpec(`it("passes", () => {});`, { CHAT_TEST_LINGER_MS: "500" });
    assert.equal(code, 0);
    assert.equal(lastLine(out), "1 passed, 0 failed");
  });

  it("fails a run still held open after its last test, naming what holds it, with the summary last", async () => {
    const leaky = `it("leaves a server listening", (done) => { require("node:net").createServer().listen(0, "127.0.0.1", done); });`;
    const { code, out } = await runSpec(leaky, { CHAT_TEST_LINGER_MS: "500" });
    assert.equal(code, 1);
    assert.match(out, /still held open 500 ms after its last test \(by: [^)]*TCPServerWrap/);
    assert.equal(lastLine(out), "1 passed, 1 failed");
  });
});
