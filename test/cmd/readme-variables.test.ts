import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CLUSTER_ROLES, variablesReadBy } from "../../cmd/variables.js";

// The README is the operator's only list of settings: a variable the code reads
// and the README leaves out cannot be found, and one the README names that no
// code reads is set in vain.
const ROOT = join(import.meta.dirname, "../..");

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: "utf8" })
    // cmd/variables.ts lists the CLI's and the development tools' names to know them, not to read them.
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts") && !f.includes("testdata") && !f.endsWith("-probe.ts") && join(dir, f) !== join("cmd", "variables.ts"))
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

/** Each variable's defaults as the code writes them: literal ones, and whether any is computed (not checked then). */
function defaultsRead(): Map<string, { literal: Set<string>; computed: boolean }> {
  const found = new Map<string, { literal: Set<string>; computed: boolean }>();
  for (const file of ["cmd", "internal", "gateway"].flatMap(sources)) {
    for (const m of readFileSync(file, "utf8").matchAll(/\.(int|string|oneOf|list)\(\s*"(CHAT_\w+)",\s*([^,]*),?/g)) {
      const entry = found.get(m[2]) ?? { literal: new Set<string>(), computed: false };
      found.set(m[2], entry);
      const arg = m[3].trim();
      const literal = /^[\d_ *]+$/.test(arg)
        ? String(arg.replaceAll("_", "").split("*").reduce((a, b) => a * Number(b), 1))
        : (/^"([^"]*)"$/.exec(arg) ?? /^\["([^"]*)"\]$/.exec(arg))?.[1];
      if (literal === undefined) entry.computed = true;
      else entry.literal.add(literal);
    }
  }
  return found;
}

/** The tables' rows whose defaults are plain values: [variable, default] (`A` / `B` | `1` / `2` pairs them up). */
function documentedDefaults(): [string, string][] {
  const pairs: [string, string][] = [];
  for (const line of readme.split("\n").filter((l) => l.startsWith("| `CHAT_"))) {
    const cells = line.split("|").map((c) => c.trim());
    const defaults = (cells.length > 5 ? cells[3] : cells[2]).replace(/\s*\(.*\)$/, "").split(" / ");
    const names = cells[1].split(" / ");
    const value = (cell: string) => /^`([^`]*)`$/.exec(cell)?.[1];
    if (names.length !== defaults.length || !names.every(value) || !defaults.every(value)) continue;
    const group = value(names[0])!.split("_").slice(0, 2).join("_");
    names.forEach((n, i) => {
      const name = value(n)!.startsWith("_") ? group + value(n) : value(n)!;
      if (!name.includes("*")) pairs.push([name, value(defaults[i])!]);
    });
  }
  return pairs;
}

describe("README: the configuration tables", () => {
  it("give each variable a default the code has", () => {
    const code = defaultsRead();
    const documented = documentedDefaults();
    const checked = documented.filter(([name]) => code.has(name) && !code.get(name)!.computed);
    assert.ok(checked.length > 30, `checked only ${checked.length} defaults: the README's tables or the readers moved`);
    const wrong = checked.filter(([name, value]) => !code.get(name)!.literal.has(value));
    assert.deepEqual(wrong.map(([name, value]) => `${name}: README ${value}, code ${[...code.get(name)!.literal].join(" or ")}`), []);
  });

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

// The same readers and recording that tell each process which CHAT_* names are known
// (cmd/variables.ts): a name this table gives a role is one no process warns about.
const ROLES = CLUSTER_ROLES;
const readBy = variablesReadBy;
type Role = keyof typeof ROLES;
const ALL_ROLES = Object.keys(ROLES) as Role[];

/** The cluster table's rows: each named variable (or group, ending in `*`) with the roles its row gives it. */
function documentedRoles(): [string, Role[]][] {
  const rows: [string, Role[]][] = [];
  let previous: Role[][] = [];
  for (const line of readme.split("\n").filter((l) => l.startsWith("| `CHAT_"))) {
    const cells = line.split("|").map((c) => c.trim());
    if (cells.length <= 5) continue; // chatd's table: no roles column
    const names = [...cells[1].matchAll(/`([A-Z0-9_*]+)`/g)].map((m) => m[1]);
    const group = names[0].split("_").slice(0, 2).join("_");
    const full = names.map((n) => (n.startsWith("_") ? group + n : n));
    const parse = (cell: string): Role[] => {
      const text = cell.replace(/\s*\(.*\)$/, "");
      if (text === "all") return ALL_ROLES;
      if (text === "all but gateway") return ALL_ROLES.filter((r) => r !== "gateway");
      const roles = text.split(/[,;]/).map((r) => r.trim());
      for (const r of roles) assert.ok(r in ROLES, `README: ${JSON.stringify(r)} in the roles of ${full.join(", ")} is no role`);
      return roles as Role[];
    };
    // "chat-server / gateway" pairs up with two names; "same" is the row above's.
    const perName = cells[2] === "same" ? previous : cells[2].includes(" / ") ? cells[2].split(" / ").map(parse) : [parse(cells[2])];
    previous = perName;
    full.forEach((n, i) => rows.push([n, perName.length === full.length ? perName[i] : perName[0]]));
  }
  return rows;
}

describe("README: the cluster table's roles column", () => {
  // The roles that serve no TLS read CHAT_TLS_* only to refuse it (the row says so).
  const readOnlyToRefuse = new Set(["CHAT_TLS_CERT", "CHAT_TLS_KEY"]);

  it("names, for each variable, exactly the roles whose configuration reads it", () => {
    const rows = documentedRoles();
    assert.ok(rows.length > 40, `found only ${rows.length} rows: the README's cluster table moved`);
    const documentedFor = (name: string) => new Set(rows.filter(([n]) => n === name || (n.endsWith("*") && name.startsWith(n.slice(0, -1)))).flatMap(([, roles]) => roles));
    const wrong: string[] = [];
    for (const role of ALL_ROLES) {
      const read = readBy(ROLES[role]);
      for (const name of read) {
        if (!documentedFor(name).has(role) && !readOnlyToRefuse.has(name)) wrong.push(`${role} reads ${name}; the README does not say so`);
      }
      for (const [name, roles] of rows) {
        if (!roles.includes(role)) continue;
        const reads = name.endsWith("*") ? [...read].some((n) => n.startsWith(name.slice(0, -1))) : read.has(name);
        if (!reads) wrong.push(`the README says ${role} reads ${name}; it does not`);
      }
    }
    assert.deepEqual(wrong, []);
  });
});
