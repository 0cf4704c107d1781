import { median, round } from "./stats.js";

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any;

const fmt = (v: unknown): string => {
  if (typeof v === "number") {
    if (!Number.isFinite(v)) return "–";
    if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
    return String(round(v, Math.abs(v) < 10 ? 2 : 1));
  }
  return v === undefined || v === null ? "–" : String(v);
};

const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : "–");

function table(head: string[], rows: unknown[][]): string {
  const lines = [`| ${head.join(" | ")} |`, `| ${head.map(() => "---").join(" | ")} |`];
  for (const r of rows) lines.push(`| ${r.map(fmt).join(" | ")} |`);
  return lines.join("\n");
}

/** Results of one (scenario, rate, target) over its repeats: median of every figure, sums of losses. */
export function aggregate(rows: Any[]): Any[] {
  const groups = new Map<string, Any[]>();
  for (const r of rows) {
    const k = `${r.scenario}|${r.offeredMsgsPerSec}|${r.target}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(r);
  }
  return [...groups.values()].map((g) => {
    const m = (f: (r: Any) => number) => median(g.map(f));
    return {
      scenario: g[0].scenario,
      target: g[0].target,
      rate: g[0].offeredMsgsPerSec,
      repeats: g.length,
      ackP50: m((r) => r.ackMs.p50),
      ackP99: m((r) => r.ackMs.p99),
      ackP999: m((r) => r.ackMs.p999),
      ackMax: m((r) => r.ackMs.max),
      p50: m((r) => r.deliveryMs.p50),
      p99: m((r) => r.deliveryMs.p99),
      p999: m((r) => r.deliveryMs.p999),
      max: m((r) => r.deliveryMs.max),
      deliveriesPerSec: m((r) => r.deliveriesPerSec),
      ackedPerSec: m((r) => r.ackedMsgsPerSec),
      cpuMsPerMsg: m((r) => r.serverCpuMsPerMessage),
      // Only with --alloc.
      allocKBPerMsg: g.some((r) => r.serverAllocKBPerMessage !== undefined) ? m((r) => r.serverAllocKBPerMessage) : undefined,
      busyCores: m((r) => r.machineBusyCores),
      load1: m((r) => r.loadavgAtStart[0]),
      lost: g.reduce((a, r) => a + r.lostMessages, 0),
      unacked: g.reduce((a, r) => a + r.unacked, 0),
      dup: g.reduce((a, r) => a + r.dupMessages, 0),
      saturated: g.filter((r) => r.saturated).length,
    };
  });
}

/** A table with the "server alloc KB/msg" column after the CPU one, when the run sampled allocations. */
function withAlloc(rows: Any[], header: string[], cells: (r: Any) => unknown[]): string {
  const at = header.indexOf("server CPU ms/msg") + 1;
  if (!rows.some((r) => r.allocKBPerMsg !== undefined)) return table(header, rows.map(cells));
  const splice = <T,>(a: T[], v: T) => [...a.slice(0, at), v, ...a.slice(at)];
  return table(splice(header, "server alloc KB/msg"), rows.map((r) => splice(cells(r), r.allocKBPerMsg ?? "")));
}

export function renderMarkdown(res: Any): string {
  const out: string[] = [];
  const m = res.machine;
  out.push(`# Benchmark ${res.label}, ${res.stamp}`);
  out.push("");
  out.push(
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memTotalMiB} MiB, Linux ${m.kernel}, Node ${m.node}; open files limit ${m.openFilesLimit}. ` +
      `Load average at start ${res.loadavgAtStart?.join(" / ")}, at end ${res.loadavgAtEnd?.join(" / ")} (the machine is shared: other test runs were going on). ` +
      `Commit ${res.versions?.commit} (+${res.versions?.dirtyFiles} uncommitted files in the tree); ws ${res.versions?.ws}, better-sqlite3 ${res.versions?.["better-sqlite3"]}, ` +
      `@bufbuild/protobuf ${res.versions?.["@bufbuild/protobuf"]}. Wall time ${res.wallSeconds} s.`,
  );
  const s = res.settings;
  out.push("");
  out.push(
    `Settings: ${s.workers} load-generator processes, source addresses ${s.localAddresses?.[0]}..${s.localAddresses?.at(-1)}, ` +
      `${s["phase-s"]} s per step, ${s.repeats} repeats per step (tables show the median of the repeats; losses are summed), ` +
      `texts of ${s["text-bytes"]} bytes, delivery acks coalesced over ${s["ack-delay-ms"]} ms, server rate limit lifted to 1000 frames/s.`,
  );
  if (res.error) out.push("", `**The run failed:** \`${String(res.error).split("\n")[0]}\``);

  const idle: Any[] = res.results?.idle ?? [];
  if (idle.length) {
    const relay = idle.find((r) => r.target === "relay");
    // --heap-snapshots: the live bytes a session adds (second half, from snapshots).
    const live = idle.some((r) => r.liveHeapMarginalBytes !== undefined);
    const withLive = (head: string[], rows: unknown[][], of: Any[]) =>
      live ? table([...head, "live heap / session (B)"], rows.map((row, i) => [...row, of[i].liveHeapMarginalBytes ?? ""])) : table(head, rows);
    out.push("", "## 1. Idle sessions", "");
    out.push(
      withLive(
        ["target", "sessions open after hold", "failed", "connect all (s)", "connects/s", "RSS / session (KiB)", "heap / session (KiB)", "marginal RSS / heap (KiB)", "RSS ÷ relay", "CPU while held (% of a core)", "accounts", "load (1 min)"],
        idle.map((r) => [
          r.target,
          r.openAfterHold,
          r.failed,
          r.connectSeconds,
          r.connectsPerSecond,
          r.rssPerSessionKiB,
          r.heapPerSessionKiB,
          `${fmt(r.rssMarginalKiB)} / ${fmt(r.heapMarginalKiB)}`,
          relay && r !== relay ? ratio(r.rssPerSessionKiB, relay.rssPerSessionKiB) : "",
          r.holdCpuPercent ?? "",
          r.accounts,
          r.loadavgAtStart?.[0],
        ]),
        idle,
      ),
    );
    if (live) {
      out.push(
        "",
        "Live heap: from V8 heap snapshots (each after a full collection) at half and at the end, per session of the second half (`--heap-snapshots`). " +
          "RSS in this run includes what writing the first snapshot left behind: take RSS from a run without snapshots.",
      );
    }
    const held = idle.filter((r) => r.holdCpuSeconds);
    if (held.length) {
      const byRole = (r: Any) => Object.entries(r.holdCpuSeconds as Record<string, number>).map(([role, s]) => `${role} ${s} s`).join(", ");
      out.push(
        "",
        `CPU while held: every process of the target (engines included), over the hold, as a percentage of one core: ` +
          `${held.map((r) => `${r.target} ${byRole(r)}`).join("; ")} in ${held[0].holdSeconds} s.`,
      );
    }
    for (const r of idle) {
      out.push("", `Per process (${r.target}):`, "");
      out.push(
        withLive(
          ["role", "pid", "RSS before→half→after (MiB)", "heap before→half→after (MiB)", "RSS / session (KiB)", "heap / session (KiB)", "marginal RSS / heap (KiB)"],
          r.perProcess.map((p: Any) => [p.role, p.pid, `${p.rssBeforeMiB}→${p.rssMiddleMiB}→${p.rssAfterMiB}`, `${p.heapBeforeMiB}→${p.heapMiddleMiB}→${p.heapAfterMiB}`, p.rssPerSessionKiB, p.heapPerSessionKiB, `${fmt(p.rssMarginalKiB)} / ${fmt(p.heapMarginalKiB)}`]),
          r.perProcess,
        ),
      );
    }
  }

  const lat = aggregate(res.results?.latency ?? []);
  if (lat.length) {
    out.push("", "## 2. 1:1 latency (open loop), milliseconds", "");
    out.push(
      withAlloc(
        lat,
        ["msgs/s", "target", "ack p50", "ack p99", "ack p99.9", "ack max", "deliv p50", "deliv p99", "deliv p99.9", "deliv max", "deliveries/s", "lost", "unacked", "server CPU ms/msg", "p99 ÷ relay", "saturated", "load"],
        (r) => {
          const relay = lat.find((x) => x.target === "relay" && x.rate === r.rate);
          return [r.rate, r.target, r.ackP50, r.ackP99, r.ackP999, r.ackMax, r.p50, r.p99, r.p999, r.max, r.deliveriesPerSec, r.lost, r.unacked, r.cpuMsPerMsg, relay && r !== relay ? ratio(r.p99, relay.p99) : "", r.saturated ? `${r.saturated}/${r.repeats}` : "no", r.load1];
        },
      ),
    );
  }

  const fan = aggregate(res.results?.fanout ?? []);
  if (fan.length) {
    out.push("", `## 3. Group fan-out (groups of ${s["group-size"]}, ${s["group-senders"]} senders per group, ${s.groups} groups), milliseconds`, "");
    out.push(
      withAlloc(
        fan,
        ["msgs/s", "target", "deliveries/s", "deliv p50", "deliv p99", "deliv p99.9", "deliv max", "ack p99", "lost", "server CPU ms/msg", "deliveries/s ÷ relay", "p99 ÷ relay", "saturated", "load"],
        (r) => {
          const relay = fan.find((x) => x.target === "relay" && x.rate === r.rate);
          return [r.rate, r.target, r.deliveriesPerSec, r.p50, r.p99, r.p999, r.max, r.ackP99, r.lost, r.cpuMsPerMsg, relay && r !== relay ? ratio(r.deliveriesPerSec, relay.deliveriesPerSec) : "", relay && r !== relay ? ratio(r.p99, relay.p99) : "", r.saturated ? `${r.saturated}/${r.repeats}` : "no", r.load1];
        },
      ),
    );
    const best = new Map<string, number>();
    const peak = new Map<string, number>();
    for (const r of fan) {
      if (!r.saturated) best.set(r.target, Math.max(best.get(r.target) ?? 0, r.deliveriesPerSec));
      peak.set(r.target, Math.max(peak.get(r.target) ?? 0, r.deliveriesPerSec));
    }
    out.push(
      "",
      `Highest unsaturated step: ${[...best].map(([t, v]) => `${t} ${fmt(v)} deliveries/s`).join(", ")}. ` +
        `Most deliveries/s in any step (median of its repeats, saturated or not): ${[...peak].map(([t, v]) => `${t} ${fmt(v)}`).join(", ")}` +
        (peak.has("relay") ? `; ratio to the relay ${[...peak].filter(([t]) => t !== "relay").map(([t, v]) => `${t} ${ratio(v, peak.get("relay")!)}`).join(", ")}.` : "."),
    );
  }

  const storm: Any[] = res.results?.storm ?? [];
  if (storm.length) {
    out.push("", "## 4. Reconnect storm (every session dropped at once, reconnected, caught up)", "");
    out.push(
      table(
        ["target", "sessions", "all back (s)", "all synced (s)", "synced p50 (ms)", "synced p99 (ms)", "failed", "not synced", "messages acked", "lost", "duplicates", "background msgs/s", "load"],
        storm.map((r) => [
          r.target,
          r.storm?.sessions,
          r.storm?.allBackS,
          r.storm?.allSyncedS,
          r.storm?.syncedMs?.p50,
          r.storm?.syncedMs?.p99,
          r.storm?.failed,
          r.storm?.notSynced,
          r.acked,
          r.target === "relay" ? `${r.lostMessages} (no persistence)` : r.lostMessages,
          r.dupMessages,
          r.offeredMsgsPerSec,
          r.loadavgAtStart?.[0],
        ]),
      ),
    );
  }
  out.push("");
  return out.join("\n");
}
