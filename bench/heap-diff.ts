/**
 * What a session costs on the heap, by kind of object: the difference of two
 * V8 heap snapshots (taken with `node --heapsnapshot-signal=SIGUSR2` and
 * `kill -USR2 <pid>`, before and after N sessions connect), divided by N.
 *
 *   npx tsx bench/heap-diff.ts before.heapsnapshot after.heapsnapshot <N> [--top 30]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size and count by "type:name" (constructor name for objects, "(closure) fn" etc.). */
export function tally(file: string): Map<string, { size: number; count: number }> {
  const s = JSON.parse(readFileSync(file, "utf8")) as Snapshot;
  const f = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const stride = f.length;
  const iType = f.indexOf("type");
  const iName = f.indexOf("name");
  const iSize = f.indexOf("self_size");
  const out = new Map<string, { size: number; count: number }>();
  for (let i = 0; i < s.nodes.length; i += stride) {
    const type = types[s.nodes[i + iType]!]!;
    let name = s.strings[s.nodes[i + iName]!]!;
    // Strings and code are many distinct names: bucket them by type only.
    if (type === "string" || type === "concatenated string" || type === "sliced string" || type === "number" || type === "code" || type === "hidden") name = "";
    if (type === "array" || type === "object shape") name = name.startsWith("(") ? name : "";
    const key = `${type}:${name.slice(0, 60)}`;
    const t = out.get(key) ?? { size: 0, count: 0 };
    t.size += s.nodes[i + iSize]!;
    t.count++;
    out.set(key, t);
  }
  return out;
}

export type Tally = ReturnType<typeof tally>;

/** What grew from one tally to the next, per unit of `n` (a session), by kind, most bytes first. */
export function growthPer(before: Tally, after: Tally, n: number): { kind: string; bytes: number; objects: number }[] {
  const rows = [...new Set([...before.keys(), ...after.keys()])].map((kind) => {
    const x = before.get(kind) ?? { size: 0, count: 0 };
    const y = after.get(kind) ?? { size: 0, count: 0 };
    return { kind, bytes: (y.size - x.size) / n, objects: (y.count - x.count) / n };
  });
  return rows.sort((p, q) => q.bytes - p.bytes);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "30" } } });
  const [before, after, nArg] = positionals;
  const n = Number(nArg);
  const rows = growthPer(tally(before!), tally(after!), n);
  const total = rows.reduce((acc, r) => acc + r.bytes, 0);
  process.stdout.write(`heap growth per session: ${total.toFixed(0)} bytes over ${n} sessions\n\n| bytes / session | objects / session | type:name |\n| --- | --- | --- |\n`);
  for (const r of rows.slice(0, Number(values.top))) process.stdout.write(`| ${r.bytes.toFixed(0)} | ${r.objects.toFixed(2)} | ${r.kind} |\n`);
}
