import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join, resolve } from "node:path";
import { promisify } from "node:util";

const ROOT = resolve(import.meta.dirname, "../..");
const TSC = join(ROOT, "node_modules/.bin/tsc");
const run = promisify(execFile);

// tsx and esbuild strip types without checking them: every role, test and the web client runs
// whatever the types say, so without this a type error (or an unused import) lands unseen.
describe("the TypeScript sources", function () {
  this.timeout(180_000);

  for (const project of [".", "web"]) {
    it(`type-check (tsc --noEmit -p ${project}, strict, no unused locals)`, async () => {
      try {
        await run(TSC, ["--noEmit", "-p", project], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string };
        assert.fail(`tsc -p ${project} found errors:\n${e.stdout ?? ""}${e.stderr ?? ""}`);
      }
    });
  }
});
