import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { Registry } from "prom-client";
import { chatServerMetrics } from "../../internal/chatserver/metrics.js";
import { pipelineMetrics } from "../../internal/pipeline/metrics.js";
import { presenceMetrics } from "../../internal/presence/metrics.js";
import { notifierEngineErrors, pushMetrics } from "../../internal/push/metrics.js";
import { WebSocketGateway } from "../../gateway/websocket.js";

// docs/architecture.md's metrics table is what operators build dashboards and alerts
// from: a metric renamed, added or given other labels in the code must show there, and
// a row naming a metric no process registers sends an alert after a series that never
// comes. The names are read from the sources (every `"chat_..."` or `"gateway_..."`
// literal given as a metric's name), so a metric registered anywhere is seen without
// starting the process that registers it.
const ROOT = join(import.meta.dirname, "../..");
const SOURCES = ["internal", "cmd", "gateway"];
const METRIC = /(?:\bname:\s*|\(\s*)"((?:chat|gateway)_[a-z0-9_]+)"/g;

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === "node_modules" ? [] : sourceFiles(path);
    return e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") && !e.name.endsWith(".d.ts") ? [path] : [];
  });
}

const labelList = (s: string): string[] => [...s.matchAll(/"([a-z_]+)"/g)].map((m) => m[1]!).sort();

/**
 * The metrics the code registers, with their label names and the file: the
 * labels are the `labelNames` of the object the name is given in, or, for a
 * name handed to a helper of the file (`counter("chat_append_...")`), those of
 * the helper's own `new Counter({ name, help, labelNames })`.
 */
function registeredMetrics(): Map<string, { labels: string[]; file: string }> {
  const found = new Map<string, { labels: string[]; file: string }>();
  for (const file of SOURCES.flatMap(sourceFiles)) {
    const text = readFileSync(join(ROOT, file), "utf8");
    const helperLabels = /\bname,\s*help,\s*labelNames:\s*\[([^\]]*)\]/.exec(text);
    for (const m of text.matchAll(METRIC)) {
      const name = m[1]!;
      const rest = text.slice(m.index + m[0].length);
      // The object the name is in: up to its `registers`, its close, or the next metric's name.
      const end = rest.search(/\bregisters\b|\}|\bname:|\(\s*"(?:chat|gateway)_/);
      const own = /labelNames:\s*\[([^\]]*)\]/.exec(end < 0 ? rest : rest.slice(0, end));
      const labels = own ? labelList(own[1]!) : m[0].startsWith("(") && helperLabels ? labelList(helperLabels[1]!) : [];
      assert.ok(!found.has(name), `${name} is registered in both ${found.get(name)?.file} and ${file}`);
      found.set(name, { labels, file: relative(ROOT, join(ROOT, file)) });
    }
  }
  return found;
}

function metricsTable(): string[] {
  const doc = readFileSync(join(ROOT, "docs/architecture.md"), "utf8");
  const start = doc.indexOf("| metric | where | what |");
  assert.ok(start >= 0, "docs/architecture.md has no metrics table (| metric | where | what |)");
  const rows = doc.slice(start).split("\n").slice(2);
  const end = rows.findIndex((r) => !r.startsWith("|"));
  return end < 0 ? rows : rows.slice(0, end);
}

/** The metrics table's rows: every backticked name of the first cell, with its `{labels}`. */
function documentedMetrics(): Map<string, string[]> {
  const table = metricsTable();
  const found = new Map<string, string[]>();
  for (const row of table) {
    const first = row.split("|")[1] ?? "";
    for (const m of first.matchAll(/`([a-z_][a-z0-9_]*)(?:\{([a-z_,]*)\})?`/g)) {
      found.set(m[1]!, (m[2] ?? "").split(",").filter(Boolean).sort());
    }
  }
  return found;
}

describe("docs/architecture.md's metrics table", () => {
  const registered = registeredMetrics();
  const documented = documentedMetrics();

  it("finds the metrics in the code and in the doc", () => {
    // A reader that finds nothing would pass every check below.
    assert.ok(registered.size >= 25, `found only ${registered.size} metrics in the code`);
    assert.ok(documented.size >= 25, `found only ${documented.size} rows' metrics in the doc`);
  });

  it("has a row for every metric the code registers", () => {
    const missing = [...registered].filter(([name]) => !documented.has(name)).map(([name, { file }]) => `${name} (${file})`);
    assert.deepEqual(missing, []);
  });

  it("names only metrics the code registers", () => {
    const unknown = [...documented.keys()].filter((name) => /^(chat|gateway)_/.test(name) && !registered.has(name));
    assert.deepEqual(unknown, []);
  });

  it("gives each metric the labels the code gives it", () => {
    const differing = [...registered]
      .filter(([name, { labels }]) => documented.has(name) && documented.get(name)!.join(",") !== labels.join(","))
      .map(([name, { labels }]) => `${name}: doc {${documented.get(name)!.join(",")}}, code {${labels.join(",")}}`);
    assert.deepEqual(differing, []);
  });

  it("names every value of a label the code counts from zero", async () => {
    // Those series exist from a process's start, so they are what alerts are written on.
    const registry = new Registry();
    chatServerMetrics(registry);
    pipelineMetrics(registry);
    presenceMetrics(registry);
    notifierEngineErrors(registry);
    pushMetrics(registry, () => 0);
    const gateway = new WebSocketGateway({
      path: "/ws",
      verifier: { verify: () => assert.fail("no handshake") },
      host: { open: () => assert.fail("no session") },
      maxFrameBytes: 1024,
      registry,
    });
    await gateway.close();
    const table = metricsTable();
    const missing: string[] = [];
    for (const metric of await registry.getMetricsAsJSON()) {
      const row = table.find((r) => (r.split("|")[1] ?? "").includes(`\`${metric.name}{`));
      for (const { labels } of metric.values) {
        for (const [label, value] of Object.entries(labels).filter(([l]) => l !== "le")) {
          if (!row?.includes(`\`${value}\``)) missing.push(`${metric.name}{${label}="${value}"}`);
        }
      }
    }
    assert.deepEqual(missing, []);
  });
});
