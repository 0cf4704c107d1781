import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");
const bench = (...args: string[]) =>
  spawnSync(process.execPath, ["--import", "tsx", "bench/run.ts", ...args], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });

describe("npm run bench (its command line)", function () {
  this.timeout(60_000);

  it("lists its options with their defaults on --help, and runs nothing", () => {
    const r = bench("--help");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /see bench\/README\.md/);
    assert.match(r.stdout, /^ {2}--targets \(default relay,chatd\)$/m);
    assert.match(r.stdout, /^ {2}--rates /m);
  });

  it("refuses an unknown option on one line, exit 2", () => {
    const r = bench("--bogus");
    assert.equal(r.status, 2);
    assert.equal(r.stderr, "bench: Unknown option '--bogus'; see npm run bench -- --help\n");
  });
});
