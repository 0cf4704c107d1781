/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`, which `npm run bench --
 * --profile` puts on the server processes): self time by function, by module,
 * and inclusive time of the project's own functions. A .heapprofile (from
 * `npm run bench -- --alloc`) gets the same tables in bytes allocated.
 *
 *   npx tsx bench/profile.ts <file.cpuprofile|file.heapprofile> [--top 40] [--per N] [--from S] [--to S]
 *
 * `--per N` divides the bytes by N (the messages of the step) in a last column.
 * `--from` and `--to` keep a CPU profile's samples taken that many seconds
 * after it started (say the hold of the idle scenario, without the connects
 * before it); the wall and busy times are then the window's.
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

/** A function as the tables name it: name, module or file, line. */
function frameKey(f: Node["callFrame"]): string {
  return `${f.functionName || "(anonymous)"} ${where(f.url)}:${f.lineNumber + 1}`;
}

export function summarizeProfile(file: string, top = 40, window: { fromS?: number; toS?: number } = {}) {
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Self time per node from the samples and their time deltas (microseconds).
  const fromUs = (window.fromS ?? 0) * 1e6;
  const toUs = Math.min((window.toS ?? Infinity) * 1e6, p.endTime - p.startTime);
  const self = new Map<number, number>();
  let atUs = 0;
  for (let i = 0; i < p.samples.length; i++) {
    atUs += p.timeDeltas[i] ?? 0;
    if (atUs < fromUs || atUs > toUs) continue;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const totalUs = toUs - fromUs;
  const idleUs = [...self].filter(([id]) => byId.get(id)!.callFrame.functionName === "(idle)").reduce((a, [, v]) => a + v, 0);
  const busyUs = totalUs - idleUs;

  const fnKey = (n: Node) => frameKey(n.callFrame);
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

interface HeapNode {
  callFrame: Node["callFrame"];
  selfSize: number;
  children: HeapNode[];
}

function heapNodes(file: string): HeapNode[] {
  const out: HeapNode[] = [];
  const stack = [(JSON.parse(readFileSync(file, "utf8")) as { head: HeapNode }).head];
  for (let n = stack.pop(); n; n = stack.pop()) {
    out.push(n);
    stack.push(...n.children);
  }
  return out;
}

const allocated = (nodes: HeapNode[]) => nodes.reduce((a, n) => a + n.selfSize, 0);

/** Bytes allocated while the sampler ran (the sampled sizes are already scaled to estimates of the whole). */
export function heapProfileBytes(file: string): number {
  return allocated(heapNodes(file));
}

export function summarizeHeapProfile(file: string, top = 40) {
  const nodes = heapNodes(file);
  const total = allocated(nodes);
  const fnSelf = new Map<string, number>();
  const modSelf = new Map<string, number>();
  for (const n of nodes) {
    if (!n.selfSize) continue;
    const fn = frameKey(n.callFrame);
    fnSelf.set(fn, (fnSelf.get(fn) ?? 0) + n.selfSize);
    const mod = n.callFrame.url ? where(n.callFrame.url) : n.callFrame.functionName;
    modSelf.set(mod, (modSelf.get(mod) ?? 0) + n.selfSize);
  }
  const sorted = (m: Map<string, number>) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([what, bytes]) => ({ what, bytes, pct: Math.round((1000 * bytes) / total) / 10 }));
  return { file, totalBytes: total, selfByModule: sorted(modSelf), selfByFunction: sorted(fnSelf) };
}

function printHeapProfile(file: string, top: number, per: number) {
  const s = summarizeHeapProfile(file, top);
  process.stdout.write(`\n# ${s.file}\nallocated ${(s.totalBytes / 1e6).toFixed(1)} MB${per > 1 ? `, ${Math.round(s.totalBytes / per)} bytes / ${per}` : ""}\n`);
  for (const [title, rows] of [
    ["bytes allocated by module", s.selfByModule],
    ["bytes allocated by function", s.selfByFunction],
  ] as const) {
    process.stdout.write(`\n## ${title}\n| % | MB | bytes / N | what |\n| --- | --- | --- | --- |\n`);
    for (const r of rows) process.stdout.write(`| ${r.pct} | ${(r.bytes / 1e6).toFixed(1)} | ${Math.round(r.bytes / per)} | ${r.what} |\n`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      top: { type: "string", default: "40" },
      per: { type: "string", default: "1" },
      from: { type: "string" },
      to: { type: "string" },
    },
  });
  for (const f of positionals) {
    if (f.endsWith(".heapprofile")) {
      printHeapProfile(f, Number(values.top), Number(values.per));
      continue;
    }
    const s = summarizeProfile(f, Number(values.top), {
      fromS: values.from === undefined ? undefined : Number(values.from),
      toS: values.to === undefined ? undefined : Number(values.to),
    });
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
