/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`, which `npm run bench --
 * --profile` puts on the server processes): self time by function, by module,
 * and inclusive time of the project's own functions.
 *
 *   npx tsx bench/profile.ts <file.cpuprofile> [--top 40]
 */
import { readFileSync } from "node:fs";
import { relative, resolve } from "node:path";
import { parseArgs } from "node:util";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const ROOT = resolve(import.meta.dirname, "..");

export function where(url: string): string {
  if (!url) return "(native/vm)";
  const path = url.replace(/^file:\/\//, "");
  const nm = path.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = path.slice(nm + 13).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (path.startsWith("node:")) return path.split("/")[0]!.replace(/^node:internal.*/, "node:internal");
  if (path.startsWith(ROOT)) return relative(ROOT, path);
  return path;
}

export function summarizeProfile(file: string, top = 40) {
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Self time per node from the samples and their time deltas (microseconds).
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  const totalUs = p.endTime - p.startTime;
  const idleUs = [...self].filter(([id]) => byId.get(id)!.callFrame.functionName === "(idle)").reduce((a, [, v]) => a + v, 0);
  const busyUs = totalUs - idleUs;

  const fnKey = (n: Node) => `${n.callFrame.functionName || "(anonymous)"} ${where(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
  const fnSelf = new Map<string, number>();
  const modSelf = new Map<string, number>();
  const fnIncl = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    if (n.callFrame.functionName === "(idle)") continue;
    fnSelf.set(fnKey(n), (fnSelf.get(fnKey(n)) ?? 0) + us);
    const mod = n.callFrame.url ? where(n.callFrame.url) : n.callFrame.functionName;
    modSelf.set(mod, (modSelf.get(mod) ?? 0) + us);
    // Inclusive: charge every distinct project function on the stack once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const c = byId.get(cur)!;
      const url = c.callFrame.url.replace(/^file:\/\//, "");
      if (!url.startsWith(ROOT) || url.includes("node_modules")) continue;
      const k = fnKey(c);
      if (seen.has(k)) continue;
      seen.add(k);
      fnIncl.set(k, (fnIncl.get(k) ?? 0) + us);
    }
  }
  const pct = (us: number) => Math.round((1000 * us) / busyUs) / 10;
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, us]) => ({ what: k, ms: Math.round(us / 1000), pctOfBusy: pct(us) }));
  return {
    file,
    wallS: Math.round(totalUs / 1e5) / 10,
    busyS: Math.round(busyUs / 1e5) / 10,
    selfByFunction: sorted(fnSelf),
    selfByModule: sorted(modSelf),
    inclusiveProjectFunctions: sorted(fnIncl),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "40" } } });
  for (const f of positionals) {
    const s = summarizeProfile(f, Number(values.top));
    process.stdout.write(`\n# ${s.file}\nwall ${s.wallS} s, busy (not idle) ${s.busyS} s\n`);
    for (const [title, rows] of [
      ["self time by module", s.selfByModule],
      ["self time by function", s.selfByFunction],
      ["inclusive time, project functions", s.inclusiveProjectFunctions],
    ] as const) {
      process.stdout.write(`\n## ${title}\n| % of busy | ms | what |\n| --- | --- | --- |\n`);
      for (const r of rows) process.stdout.write(`| ${r.pctOfBusy} | ${r.ms} | ${r.what} |\n`);
    }
  }
}
