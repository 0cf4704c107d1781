import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");
const BUF = join(ROOT, "node_modules/.bin/buf");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

describe("protobuf contracts", function () {
  this.timeout(120_000);

  it("pass buf lint", () => {
    execFileSync(BUF, ["lint"], { cwd: ROOT, stdio: "pipe" });
  });

  it("are exactly what buf generate and buf build make of proto/", () => {
    const tmp = mkdtempSync(join(tmpdir(), "chat-gen-"));
    try {
      cpSync(join(ROOT, "proto"), join(tmp, "proto"), { recursive: true });
      cpSync(join(ROOT, "buf.yaml"), join(tmp, "buf.yaml"));
      cpSync(join(ROOT, "buf.gen.yaml"), join(tmp, "buf.gen.yaml"));
      symlinkSync(join(ROOT, "node_modules"), join(tmp, "node_modules"));
      execFileSync(BUF, ["generate"], { cwd: tmp, stdio: "pipe" });
      execFileSync(BUF, ["build", "-o", "gen/descriptor.binpb"], { cwd: tmp, stdio: "pipe" });
      const fresh = files(join(tmp, "gen")).map((f) => relative(tmp, f)).sort();
      const committed = files(join(ROOT, "gen")).map((f) => relative(ROOT, f)).sort();
      assert.deepEqual(committed, fresh, "gen/ has other files than buf makes: run npm run generate");
      for (const f of fresh) {
        assert.ok(readFileSync(join(tmp, f)).equals(readFileSync(join(ROOT, f))), `${f} is stale: run npm run generate`);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
