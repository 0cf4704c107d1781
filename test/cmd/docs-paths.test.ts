import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

// The docs point readers at the code by path (`internal/storage/cassandra/session.ts`,
// `cmd/chatd/old-pipeline.ts`): a file moved or renamed leaves them pointing at nothing.
const ROOT = join(import.meta.dirname, "../..");
const DOCS = ["README.md", "docs/architecture.md"];

/** Every backticked path of a source, script or proto file (a lone name, `change-cell.ts`, is read beside the paths before it). */
function namedPaths(doc: string): string[] {
  const text = readFileSync(join(ROOT, doc), "utf8");
  return [...text.matchAll(/`([\w./-]+\/[\w.-]+\.(?:ts|proto|sh))`/g)].map((m) => m[1]);
}

describe("the docs' paths", () => {
  for (const doc of DOCS) {
    it(`${doc} names only files that exist`, () => {
      const paths = namedPaths(doc);
      assert.ok(paths.length > 3, `${doc}: found only ${paths.length} paths`);
      assert.deepEqual(paths.filter((p) => !existsSync(join(ROOT, p))), []);
    });
  }
});
