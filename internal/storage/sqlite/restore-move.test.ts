import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { moveEntry } from "./restore.js";

// A restore's moves (restore.ts) into or out of a data directory
// that is a mount point cross file systems: each is a copy, then the original's
// removal. Only a copy on the disk may outlive its original.
describe("restore: a move across file systems", () => {
  let base: string;
  beforeEach(() => (base = mkdtempSync(join(tmpdir(), "chatd-move-"))));
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  it("flushes the copy, then its new name, before it removes the original", () => {
    const from = join(base, "data", "keys");
    mkdirSync(join(from, "sub"), { recursive: true });
    writeFileSync(join(from, "signing.key"), "k");
    writeFileSync(join(from, "sub", "x"), "x");
    mkdirSync(join(base, "before"));
    const to = join(base, "before", "keys");
    const steps: string[] = [];
    const crossDevice = (a: string, b: string) => {
      if (a === from) throw Object.assign(new Error("EXDEV: cross-device link not permitted"), { code: "EXDEV" });
      steps.push(`rename ${b}`);
      renameSync(a, b);
    };
    const sync = (path: string) => steps.push(`sync ${path}${existsSync(from) ? "" : " (original gone)"}`);

    moveEntry(from, to, crossDevice, sync);

    assert.equal(readFileSync(join(to, "sub", "x"), "utf8"), "x");
    assert.ok(!existsSync(from));
    const copy = join(base, "before", ".keys.moving");
    assert.deepEqual(steps, [
      `sync ${join(copy, "signing.key")}`,
      `sync ${join(copy, "sub", "x")}`,
      `sync ${join(copy, "sub")}`,
      `sync ${copy}`,
      `rename ${to}`,
      `sync ${join(base, "before")}`,
    ]);
  });

  it("flushes a single file the same way", () => {
    const from = join(base, "chat.db");
    writeFileSync(from, "db");
    const to = join(base, "in", "chat.db");
    mkdirSync(join(base, "in"));
    const steps: string[] = [];
    moveEntry(
      from,
      to,
      (a, b) => {
        if (a === from) throw Object.assign(new Error("EXDEV"), { code: "EXDEV" });
        steps.push(`rename ${b}`);
        renameSync(a, b);
      },
      (path) => steps.push(`sync ${path}`),
    );
    assert.deepEqual(steps, [`sync ${join(base, "in", ".chat.db.moving")}`, `rename ${to}`, `sync ${join(base, "in")}`]);
    assert.equal(readFileSync(to, "utf8"), "db");
    assert.ok(!existsSync(from));
  });
});
