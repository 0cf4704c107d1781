import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

// The README is the operator's only list of settings: a variable the code reads
// and the README leaves out cannot be found, and one the README names that no
// code reads is set in vain.
const ROOT = join(import.meta.dirname, "../..");

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts") && !f.includes("testdata") && !f.endsWith("-probe.ts"))
    .map((f) => join(ROOT, dir, f));
}

/** Every CHAT_* name the processes and the CLI read, as the string they read it by. */
function variablesRead(): Set<string> {
  const names = new Set<string>();
  for (const file of ["cmd", "internal", "gateway"].flatMap(sources)) {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/["']((CHAT_[A-Z0-9_]*[A-Z0-9]))["']/g)) names.add(m[1]);
    for (const m of text.matchAll(/process\.env\.(CHAT_[A-Z0-9_]+)/g)) names.add(m[1]);
  }
  return names;
}

const readme = readFileSync(join(ROOT, "README.md"), "utf8");
const backticked = [...readme.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]);

/**
 * Named whole, or in the README's short form: a group (`CHAT_APNS_*`, or a
 * sibling such as `CHAT_PUSH_COLLAPSE_MS`) followed by its suffixes
 * (`_KEY_FILE`, `_TIMEOUT_MS`).
 */
function documented(name: string): boolean {
  if (new RegExp(`\\b${name}\\b`).test(readme)) return true;
  const parts = name.split("_");
  for (let i = 2; i < parts.length; i++) {
    const group = parts.slice(0, i).join("_") + "_";
    const suffix = "_" + parts.slice(i).join("_");
    if (backticked.some((t) => t.startsWith(group)) && backticked.includes(suffix)) return true;
  }
  return false;
}

describe("README: the configuration tables", () => {
  it("documents every variable the code reads", () => {
    const read = variablesRead();
    assert.ok(read.size > 50, `found only ${read.size} variables: the scan is broken`);
    assert.deepEqual([...read].filter((n) => !documented(n)).sort(), []);
  });

  it("documents only variables the code reads (in the tables of cmd/ and internal/ settings)", () => {
    const read = variablesRead();
    const tableNames = readme
      .split("\n")
      .filter((l) => l.startsWith("| `CHAT_"))
      .flatMap((l) => [...l.split("|")[1].matchAll(/`(CHAT_[A-Z0-9_]*[A-Z0-9*])`/g)].map((m) => m[1]));
    assert.ok(tableNames.length > 50, `found only ${tableNames.length} rows: the README's tables moved`);
    const unknown = tableNames.filter((n) => (n.endsWith("*") ? ![...read].some((r) => r.startsWith(n.slice(0, -1))) : !read.has(n)));
    assert.deepEqual(unknown, []);
  });
});
