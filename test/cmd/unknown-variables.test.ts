import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { configVariables, knownVariables, nonConfigVariables } from "../../cmd/variables.js";
import { removeDataDir } from "../support/chatd.js";
import { runToExit, startRole, stopAll } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

const ROOT = join(import.meta.dirname, "../..");

function files(dir: string, keep: (f: string) => boolean): string[] {
  const path = join(ROOT, dir);
  if (statSync(path).isFile()) return [path];
  return readdirSync(path, { recursive: true, encoding: "utf8" })
    .filter(keep)
    .map((f) => join(path, f));
}

/** CHAT_* names as code reads them: a string, or a property of an environment. */
const read = (paths: string[]) =>
  new Set(paths.flatMap((p) => [...readFileSync(p, "utf8").matchAll(/["'](CHAT_[A-Z0-9_]*[A-Z0-9])["']|\benv\.(CHAT_[A-Z0-9_]+)/g)].map((m) => m[1] ?? m[2])));

/** Any CHAT_* word: the shell scripts read theirs as ${CHAT_X:-default}. */
const names = (paths: string[]) => new Set(paths.flatMap((p) => [...readFileSync(p, "utf8").matchAll(/\bCHAT_[A-Z0-9_]*[A-Z0-9]\b/g)].map((m) => m[0])));

/** Every CHAT_* name the processes' and the CLI's code reads, through a reader or not. */
const inCode = () =>
  read(["cmd", "internal", "gateway"].flatMap((d) => files(d, (f) => f.endsWith(".ts") && !f.endsWith(".test.ts") && !f.includes("testdata"))));

/** Every CHAT_* name the development tools (engines, test runner, grpcurl, benchmarks, test harness) mention. */
const inTooling = () =>
  names([
    ...files("scripts", (f) => /\.(sh|cjs|mjs|ts)$/.test(f)),
    ...files("bench", (f) => /\.(ts|mjs|js)$/.test(f)),
    ...files("test/support", (f) => f.endsWith(".ts")),
    ...files(".ci", () => true),
    join(ROOT, "package.json"),
  ]);

describe("the CHAT_* names the processes know", () => {
  it("hold every name the code mentions, so none of theirs is ever warned about", () => {
    const known = knownVariables();
    const missing = [...inCode()].filter((n) => !known.has(n));
    assert.deepEqual(missing, [], "read outside a configuration reader: add it to cmd/variables.ts");
  });

  it("hold every name of the development tools, which share the prefix and the shell", () => {
    const known = knownVariables();
    assert.deepEqual([...inTooling()].filter((n) => !known.has(n)), [], "add it to TOOLING_VARIABLES in cmd/variables.ts");
  });

  it("keep no name that nothing reads any more", () => {
    const code = inCode();
    const tooling = inTooling();
    assert.deepEqual(nonConfigVariables.cli.filter((n) => !code.has(n)), []);
    assert.deepEqual(nonConfigVariables.tooling.filter((n) => !tooling.has(n)), []);
    // The readers found their names: a broken recording would leave every setting unknown.
    assert.ok(configVariables().size > 60, `only ${configVariables().size} names found by running the readers`);
  });
});

function parsed(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined; // stderr, not a log line
  }
}

describe("a misspelt CHAT_* variable at start-up", function () {
  this.timeout(60_000);
  const dirs: string[] = [];
  after(async () => {
    await stopAll();
    for (const dir of dirs) removeDataDir(dir);
  });

  it("is named in one warning with the setting it was meant to be, and the process starts anyway", async () => {
    const dir = mkdtempSync(join(tmpdir(), "chatd-unknown-"));
    dirs.push(dir);
    // CHAT_KAFKA_BROKERS is not chatd's but a cluster role's: a shared environment is no typo.
    const env = { CHAT_DATA_DIR: dir, CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0", CHAT_QUEUE_PARTITION: "4", CHAT_KAFKA_BROKERS: "127.0.0.1:1" };
    const p = await startRole("chatd", env, 60_000);
    const warning = () => p.output.map(parsed).find((l) => Array.isArray(l?.unknownVariables));
    const line = await waitFor(warning, "the unknown-variables warning", 10_000);
    await p.stop();
    assert.equal(line!.level, 40);
    const unknown = line!.unknownVariables as { name: string; closest?: string }[];
    assert.deepEqual(unknown.find((u) => u.name === "CHAT_QUEUE_PARTITION"), { name: "CHAT_QUEUE_PARTITION", closest: "CHAT_QUEUE_PARTITIONS" });
    assert.equal(unknown.find((u) => u.name === "CHAT_KAFKA_BROKERS"), undefined);
  });

  it("is named with the setting it was meant to be when that setting's absence stops the process", async () => {
    // CHAT_TLS_CERT set asks for CHAT_TLS_KEY: the config error names the missing key, the hint the misspelt one.
    const out = await runToExit("gateway", { CHAT_TLS_CERT: "/nonexistent/cert.pem", CHAT_TLS_KY: "/nonexistent/key.pem" });
    assert.equal(out.code, 2, out.stderr);
    assert.match(out.stderr, /^gateway: .*CHAT_TLS_KEY/m);
    assert.match(out.stderr, /^gateway: no process reads CHAT_TLS_KY \(did you mean CHAT_TLS_KEY\?\)$/m);
  });
});
