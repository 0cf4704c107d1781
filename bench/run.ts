/**
 * The benchmark: drives chatd (or the distributed mode, or any running
 * deployment) and, in the same run, the `ws`-only relay ceiling, with the same
 * client code, and writes bench/results/<stamp>-<label>.{json,md}.
 *
 *   npm run bench -- --scenarios idle,latency,fanout,storm --idle-sessions 10000
 *   npm run bench -- --targets cluster,relay          (real engines: scripts/engines.sh up)
 *   npm run bench -- --targets external,relay --api http://h:8080 --ws ws://h:8080/ws --keys-dir .data/keys
 *
 * See bench/README.md for every option and what each figure means.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { KEY_SPAN } from "./loadgen.js";
import { heapProfileBytes } from "./profile.js";
import { growthPer, tally, type Tally } from "./heap-diff.js";
import type { StormReport } from "./lib/ipc.js";
import { renderMarkdown } from "./lib/report.js";
import { now, type SessionSpec } from "./lib/session.js";
import { median, round, summarize, type LatencySummary } from "./lib/stats.js";
import { cpuSeconds, heapUsedBytes, loadavg, machineCpu, machineInfo, rssBytes, versions } from "./lib/sysinfo.js";
import {
  ROOT,
  cpuProfiles,
  startChatdTarget,
  startClusterTarget,
  startExternalTarget,
  startRelayTarget,
  type BenchUser,
  type ServerProcess,
  type Target,
} from "./lib/targets.js";
import { WorkerSet } from "./lib/workers.js";

const options = {
  targets: { type: "string", default: "relay,chatd" },
  scenarios: { type: "string", default: "idle,latency,fanout,storm" },
  label: { type: "string", default: "" },
  workers: { type: "string", default: "2" },
  addresses: { type: "string", default: "8" },
  "idle-sessions": { type: "string", default: "10000" },
  "idle-accounts": { type: "string", default: "mint" },
  "idle-hold-s": { type: "string", default: "30" },
  "connect-concurrency": { type: "string", default: "200" },
  pairs: { type: "string", default: "500" },
  rates: { type: "string", default: "500,1000,2000,5000" },
  "phase-s": { type: "string", default: "10" },
  repeats: { type: "string", default: "3" },
  groups: { type: "string", default: "10" },
  "group-size": { type: "string", default: "100" },
  "group-senders": { type: "string", default: "5" },
  "group-rates": { type: "string", default: "20,50,100,200,400" },
  "storm-rate": { type: "string", default: "200" },
  "storm-concurrency": { type: "string", default: "256" },
  "text-bytes": { type: "string", default: "64" },
  "ack-delay-ms": { type: "string", default: "250" },
  "signup-concurrency": { type: "string", default: "16" },
  profile: { type: "boolean", default: false },
  alloc: { type: "boolean", default: false },
  "heap-snapshots": { type: "boolean", default: false },
  "keep-going": { type: "boolean", default: false },
  "warmup-s": { type: "string", default: "5" },
  // cluster shape (targets=cluster)
  gateways: { type: "string", default: "2" },
  "chat-servers": { type: "string", default: "2" },
  pipelines: { type: "string", default: "2" },
  partitions: { type: "string", default: "12" },
  // an already running deployment (targets=external)
  api: { type: "string" },
  ws: { type: "string" },
  "keys-dir": { type: "string" },
  pids: { type: "string", default: "" },
  help: { type: "boolean", short: "h" },
} as const;

const { values: opt } = (() => {
  try {
    return parseArgs({ options });
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}; see npm run bench -- --help\n`);
    process.exit(2);
  }
})();
if (opt.help) {
  const rows = Object.entries(options)
    .filter(([name]) => name !== "help")
    .map(([name, o]) => `  --${name}${"default" in o && o.default !== "" ? ` (default ${String(o.default)})` : ""}`);
  process.stdout.write(`npm run bench -- [options]: see bench/README.md for what each option and figure means\n${rows.join("\n")}\n`);
  process.exit(0);
}

const int = (k: keyof typeof opt) => Number(opt[k] as string);
const list = (k: keyof typeof opt) => String(opt[k]).split(",").map((s) => s.trim()).filter(Boolean);
const scenarios = new Set(list("scenarios"));
const targetNames = list("targets");
const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
const label = String(opt.label || targetNames.map((t) => t.split("=")[0]).join("-"));
const tmpDir = join(ROOT, "bench/results/tmp", `${stamp}-${label}`);
const profileDir = join(tmpDir, "profiles");
const localAddresses = Array.from({ length: int("addresses") }, (_, i) => `127.0.0.${i + 2}`);
const phaseMs = int("phase-s") * 1000;
const repeats = int("repeats");

const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg} (load ${loadavg().join(" ")})\n`);

// ---------------------------------------------------------------- targets

// --alloc: every server process this run starts loads the sampler, which the
// phases switch on and off by signal (bench/lib/alloc-sampler.mjs).
const allocDir = join(tmpDir, "alloc");
const ALLOC_SAMPLER = join(import.meta.dirname, "lib/alloc-sampler.mjs");
if (opt.alloc) process.env.CHAT_BENCH_ALLOC_DIR = allocDir;

// --heap-snapshots: the idle scenario has every session-holding process write
// a heap snapshot at half and at the end (bench/lib/heap-snapshot.mjs), and
// reports the live bytes a session adds, which no collector timing moves.
const snapshotDir = join(tmpDir, "heap");
const HEAP_SNAPSHOT = join(import.meta.dirname, "lib/heap-snapshot.mjs");
if (opt["heap-snapshots"]) process.env.CHAT_BENCH_SNAPSHOT_DIR = snapshotDir;
if (opt.alloc && opt["heap-snapshots"]) throw new Error("--alloc and --heap-snapshots both answer SIGUSR2: run them one at a time");

async function startTarget(name: string): Promise<Target> {
  const nodeOptions = [
    ...(opt.profile ? ["--cpu-prof", `--cpu-prof-dir=${join(profileDir, name.split("=")[0]!)}`] : []),
    ...(opt.alloc ? ["--import", ALLOC_SAMPLER] : []),
    ...(opt["heap-snapshots"] ? ["--import", HEAP_SNAPSHOT] : []),
  ];
  const dataDir = join(tmpDir, name);
  if (name === "chatd") return startChatdTarget({ dataDir, nodeOptions });
  // "chatd-<label>=<dir>": chatd from another checkout, e.g. the commit before a fix.
  const other = /^(chatd-[\w.-]+)=(.+)$/.exec(name);
  if (other) return startChatdTarget({ dataDir: join(tmpDir, other[1]!), nodeOptions, root: other[2]!, name: other[1]! });
  if (name === "relay") return startRelayTarget({ dataDir, nodeOptions });
  // "cluster" runs this tree; "cluster-<label>=<dir>" another checkout.
  const cluster = /^cluster(?:-([\w.-]+)=(.+))?$/.exec(name);
  if (cluster) {
    return startClusterTarget({
      dataDir: join(tmpDir, name.split("=")[0]!),
      nodeOptions,
      root: cluster[2],
      name: name.split("=")[0]!,
      partitions: int("partitions"),
      shape: { gateways: int("gateways"), chatServers: int("chat-servers"), pipelines: int("pipelines") },
    });
  }
  if (name === "external") return externalTarget();
  throw new Error(`unknown target ${name}`);
}

/** A deployment someone else started: API URL, gateway URLs, and (for memory) role:pid[:metricsUrl] of the processes to watch. */
function externalTarget(): Target {
  if (!opt.api || !opt.ws || !opt["keys-dir"]) throw new Error("--targets external needs --api, --ws (comma-separated gateway URLs) and --keys-dir");
  const processes: ServerProcess[] = String(opt.pids)
    .split(",")
    .filter(Boolean)
    .map((p) => {
      const [role, pid, ...url] = p.split(":");
      return { role: role!, pid: Number(pid), metricsUrl: url.length ? url.join(":") : undefined };
    });
  return startExternalTarget({ apiUrl: opt.api, wsUrls: opt.ws.split(","), keysDir: opt["keys-dir"], processes });
}

// ---------------------------------------------------------------- measurements

interface MemorySample {
  role: string;
  pid: number;
  rssBytes: number;
  heapUsedBytes: number;
}

/** RSS (median of samples) and heap used (minimum of samples: the value right after a GC) of each process. */
async function sampleMemory(procs: ServerProcess[], samples = 5, gapMs = 1000): Promise<MemorySample[]> {
  const rss = procs.map(() => [] as number[]);
  const heap = procs.map(() => [] as number[]);
  for (let i = 0; i < samples; i++) {
    for (const [j, p] of procs.entries()) {
      rss[j]!.push(rssBytes(p.pid));
      if (p.metricsUrl) heap[j]!.push(await heapUsedBytes(p.metricsUrl).catch(() => NaN));
    }
    if (i < samples - 1) await sleep(gapMs);
  }
  return procs.map((p, j) => ({
    role: p.role,
    pid: p.pid,
    rssBytes: median(rss[j]!),
    heapUsedBytes: heap[j]!.length ? Math.min(...heap[j]!.filter(Number.isFinite)) : NaN,
  }));
}

function cpuOf(procs: ServerProcess[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of procs) {
    try {
      out[p.role] = (out[p.role] ?? 0) + cpuSeconds(p.pid);
    } catch {
      // process gone
    }
  }
  return out;
}

const diffCpu = (a: Record<string, number>, b: Record<string, number>) =>
  Object.fromEntries(Object.keys(b).map((k) => [k, round(b[k]! - (a[k] ?? 0), 2)]));

// ---------------------------------------------------------------- scenario 1: idle sessions

const SESSION_ROLES = new Set(["chatd", "relay", "gateway", "chat-server"]);

async function idleScenario(t: Target) {
  const n = int("idle-sessions");
  log(`${t.name}: idle: creating ${n} accounts (${opt["idle-accounts"]})`);
  const created = now();
  const users =
    opt["idle-accounts"] === "signup"
      ? await t.signUpUsers(n, int("signup-concurrency"), (d) => log(`${t.name}: ${d} sign-ups`))
      : await t.mintUsers(n);
  const accountsMs = now() - created;
  const specs: SessionSpec[] = users.map((u, g) => ({ g, userId: u.userId, token: u.token }));
  const workers = Math.max(int("workers"), Math.ceil(n / 15_000));
  const set = await WorkerSet.start(specs, { workers, wsUrls: t.wsUrls, localAddresses, ackDelayMs: int("ack-delay-ms"), connectTimeoutMs: 60_000 });
  try {
    await sleep(2000);
    const before = await sampleMemory(t.processes);
    const load = loadavg();
    // Two halves: the average over all N (before -> after) includes one-off
    // costs (code compiled, pools grown); the second half alone is the marginal cost.
    const half = Math.ceil(n / 2 / set.workers.length);
    const concurrency = Math.ceil(int("connect-concurrency") / set.workers.length);
    log(`${t.name}: idle: connecting ${n} sessions (first half)`);
    const t0 = now();
    const first = await set.all<"connected">({ type: "connect", concurrency, limit: half });
    const firstMs = now() - t0;
    await sleep(2000);
    const middle = await sampleMemory(t.processes);
    // Taken after the RSS sample but before the second half: the RSS after it
    // includes what writing the snapshot left behind (tens of MiB), so a run
    // with --heap-snapshots is for the live heap, and RSS comes from another.
    const liveMiddle = opt["heap-snapshots"] ? await liveHeaps(t.processes) : undefined;
    const openMiddle = first.reduce((a, r) => a + r.report.connected, 0);
    log(`${t.name}: idle: ${openMiddle} open; second half`);
    const t1 = now();
    const second = await set.all<"connected">({ type: "connect", concurrency });
    const connectMs = firstMs + (now() - t1);
    const reports = [...first, ...second];
    const failed = reports.reduce((a, r) => a + r.report.failed, 0);
    const errors = reports.flatMap((r) => r.report.errors);
    const handshake = summarize(concat(reports.map((r) => r.report.handshakeMs)));
    const connected = (await set.all<"status">({ type: "status" })).reduce((a, s) => a + s.open, 0);
    log(`${t.name}: idle: ${connected} connected in ${(connectMs / 1000).toFixed(1)} s, ${failed} failed; holding ${opt["idle-hold-s"]} s`);
    // CPU while nothing happens but heartbeats: what N idle sessions (and the
    // processes' own timers and engine polling) cost, engines included.
    const holdCpu0 = cpuOf(t.processes);
    const held0 = now();
    await sleep(int("idle-hold-s") * 1000);
    const holdCpu = diffCpu(holdCpu0, cpuOf(t.processes));
    const heldS = (now() - held0) / 1000;
    const after = await sampleMemory(t.processes);
    const status = await set.all<"status">({ type: "status" });
    const open = status.reduce((a, s) => a + s.open, 0);
    const secondHalf = Math.max(1, open - openMiddle);
    const liveAfter = liveMiddle ? await liveHeaps(t.processes) : undefined;
    const perProcess = after.map((a, i) => ({
      role: a.role,
      pid: a.pid,
      rssBeforeMiB: round(before[i]!.rssBytes / 2 ** 20),
      rssMiddleMiB: round(middle[i]!.rssBytes / 2 ** 20),
      rssAfterMiB: round(a.rssBytes / 2 ** 20),
      heapBeforeMiB: round(before[i]!.heapUsedBytes / 2 ** 20),
      heapMiddleMiB: round(middle[i]!.heapUsedBytes / 2 ** 20),
      heapAfterMiB: round(a.heapUsedBytes / 2 ** 20),
      rssPerSessionKiB: round((a.rssBytes - before[i]!.rssBytes) / 1024 / Math.max(1, open)),
      heapPerSessionKiB: round((a.heapUsedBytes - before[i]!.heapUsedBytes) / 1024 / Math.max(1, open)),
      rssMarginalKiB: round((a.rssBytes - middle[i]!.rssBytes) / 1024 / secondHalf),
      heapMarginalKiB: round((a.heapUsedBytes - middle[i]!.heapUsedBytes) / 1024 / secondHalf),
      ...liveGrowth(liveMiddle?.get(a.pid), liveAfter?.get(a.pid), secondHalf),
    }));
    // Session-holding roles only: the api, the pipeline and the engines hold no sessions.
    const sum = (k: "rssPerSessionKiB" | "heapPerSessionKiB" | "rssMarginalKiB" | "heapMarginalKiB") =>
      round(perProcess.filter((p) => SESSION_ROLES.has(p.role)).reduce((a, p) => a + (Number.isFinite(p[k]) ? p[k] : 0), 0));
    return {
      target: t.name,
      sessions: n,
      accounts: opt["idle-accounts"],
      accountsSeconds: round(accountsMs / 1000),
      connected,
      failed,
      errors,
      openAfterHold: open,
      closeCodes: mergeCounts(status.map((s) => s.closeCodes)),
      unexpectedCloses: status.reduce((a, s) => a + s.unexpectedCloses, 0),
      connectSeconds: round(connectMs / 1000),
      connectsPerSecond: round(connected / (connectMs / 1000)),
      handshakeMs: roundSummary(handshake),
      holdSeconds: int("idle-hold-s"),
      holdCpuSeconds: holdCpu,
      holdCpuPercent: round((100 * Object.values(holdCpu).reduce((a, c) => a + c, 0)) / heldS, 1),
      loadavgAtStart: load,
      perProcess,
      rssPerSessionKiB: sum("rssPerSessionKiB"),
      heapPerSessionKiB: sum("heapPerSessionKiB"),
      rssMarginalKiB: sum("rssMarginalKiB"),
      heapMarginalKiB: sum("heapMarginalKiB"),
      liveHeapMarginalBytes: liveMiddle ? Math.round(perProcess.reduce((a, p) => a + (p.liveHeapMarginalBytes ?? 0), 0)) : undefined,
    };
  } finally {
    await set.close();
    await sleep(3000);
  }
}

/** Has each session-holding process this run started write a heap snapshot; returns what each holds, by kind. */
async function liveHeaps(processes: ServerProcess[]): Promise<Map<number, Tally>> {
  const out = new Map<number, Tally>();
  for (const p of processes.filter((p) => p.child && SESSION_ROLES.has(p.role))) {
    const file = nextSignalledFile(snapshotDir, p.pid, "heapsnapshot");
    process.kill(p.pid, "SIGUSR2");
    await signalledFileWritten(file, p, "heap snapshot", 180_000);
    out.set(p.pid, tally(file));
  }
  return out;
}

interface LiveGrowth {
  liveHeapMarginalBytes?: number;
  liveHeapTopKinds?: { kind: string; bytes: number; objects: number }[];
}

/** Live bytes per session added between two snapshots of one process, and the kinds of object that grew most. */
function liveGrowth(before: Tally | undefined, after: Tally | undefined, sessions: number): LiveGrowth {
  if (!before || !after) return {};
  const rows = growthPer(before, after, sessions);
  return {
    liveHeapMarginalBytes: Math.round(rows.reduce((acc, r) => acc + r.bytes, 0)),
    liveHeapTopKinds: rows.slice(0, 12).map((r) => ({ kind: r.kind, bytes: Math.round(r.bytes), objects: round(r.objects, 2) })),
  };
}

// ---------------------------------------------------------------- scenarios 2-4: traffic

interface Prepared {
  t: Target;
  set: WorkerSet;
  users: BenchUser[];
  /** Channel and members (session indices) by sender, per scenario. */
  latencySenders: { g: number; channelId: string }[];
  fanoutSenders: { g: number; channelId: string }[];
  membersOfChannel: Map<string, number[]>;
  saturated: { latency?: string; fanout?: string };
  accountsSeconds: number;
}

async function prepare(t: Target): Promise<Prepared> {
  const pairs = scenarios.has("latency") || scenarios.has("storm") ? int("pairs") : 0;
  const groups = scenarios.has("fanout") ? int("groups") : 0;
  const size = int("group-size");
  const n = Math.max(2 * pairs, groups * size);
  log(`${t.name}: signing up ${n} users`);
  const t0 = now();
  const users = await t.signUpUsers(n, int("signup-concurrency"), (d) => log(`${t.name}: ${d} sign-ups`));
  const accountsSeconds = round((now() - t0) / 1000);
  log(`${t.name}: ${n} users in ${accountsSeconds} s; opening ${pairs} direct channels and ${groups} groups`);
  const membersOfChannel = new Map<string, number[]>();
  const latencySenders: Prepared["latencySenders"] = [];
  const fanoutSenders: Prepared["fanoutSenders"] = [];
  await poolRun(Array.from({ length: pairs }, (_, k) => k), 16, async (k) => {
    const channelId = await t.openDirect(users[2 * k]!, users[2 * k + 1]!);
    membersOfChannel.set(channelId, [2 * k, 2 * k + 1]);
    latencySenders.push({ g: 2 * k, channelId }, { g: 2 * k + 1, channelId });
  });
  latencySenders.sort((a, b) => a.g - b.g);
  for (let j = 0; j < groups; j++) {
    const members = Array.from({ length: size }, (_, i) => j * size + i);
    const channelId = await t.createGroup(users[members[0]!]!, members.slice(1).map((g) => users[g]!));
    membersOfChannel.set(channelId, members);
    for (let s = 0; s < int("group-senders"); s++) fanoutSenders.push({ g: members[s]!, channelId });
  }
  const specs: SessionSpec[] = users.map((u, g) => ({ g, userId: u.userId, token: u.token }));
  const set = await WorkerSet.start(specs, { workers: int("workers"), wsUrls: t.wsUrls, localAddresses, ackDelayMs: int("ack-delay-ms"), connectTimeoutMs: 60_000 });
  const rep = await set.all<"connected">({ type: "connect", concurrency: 50 });
  const failed = rep.reduce((a, r) => a + r.report.failed, 0);
  if (failed > 0) throw new Error(`${t.name}: ${failed} sessions did not connect: ${JSON.stringify(rep.flatMap((r) => r.report.errors))}`);
  log(`${t.name}: ${n} sessions connected`);
  return { t, set, users, latencySenders, fanoutSenders, membersOfChannel, saturated: {}, accountsSeconds };
}

interface PhaseResult {
  target: string;
  scenario: string;
  offeredMsgsPerSec: number;
  repeat: number;
  durationS: number;
  loadavgAtStart: [number, number, number];
  sent: number;
  acked: number;
  unacked: number;
  sendErrors: [string, number][];
  deliveries: number;
  expectedDeliveries: number;
  missingDeliveries: number;
  lostMessages: number;
  dupMessages: number;
  ackMs: LatencySummary;
  deliveryMs: LatencySummary;
  ackedMsgsPerSec: number;
  deliveriesPerSec: number;
  drainMs: number;
  serverCpuSeconds: Record<string, number>;
  /** Server CPU milliseconds per acked message (all server processes). */
  serverCpuMsPerMessage: number;
  /** With --alloc: kilobytes the server processes allocated per acked message (freed or not). */
  serverAllocKBPerMessage?: number;
  machineBusyCores: number;
  unexpectedCloses: number;
  storm?: Record<string, unknown>;
  saturated?: string;
}

async function phase(
  p: Prepared,
  scenario: "latency" | "fanout" | "storm",
  rate: number,
  repeat: number,
  durationMs: number,
  during?: () => Promise<Record<string, unknown>>,
): Promise<PhaseResult> {
  const senders = scenario === "fanout" ? p.fanoutSenders : p.latencySenders;
  const tag = `${scenario[0]}${rate}r${repeat}${Math.random().toString(36).slice(2, 6)}`;
  const byWorker = new Map<number, { g: number; channelId: string }[]>();
  for (const s of senders) {
    const w = p.set.owner.get(s.g)!.workerId;
    if (!byWorker.has(w)) byWorker.set(w, []);
    byWorker.get(w)!.push(s);
  }
  const membersOf = new Map<number, number[]>();
  for (const s of senders) membersOf.set(s.g, p.membersOfChannel.get(s.channelId)!);
  const load = loadavg();
  const sampled = opt.alloc && repeat >= 0 ? startAllocSampling(p.t.processes) : undefined;
  const cpu0 = cpuOf(p.t.processes);
  const m0 = machineCpu();
  const start = now();
  const sending = Promise.all(
    p.set.workers.map((w) =>
      w.request<"phase-sent">({
        type: "phase-start",
        tag,
        rate: (rate * (byWorker.get(w.workerId)?.length ?? 0)) / senders.length,
        durationMs,
        ackTimeoutMs: 30_000,
        textBytes: int("text-bytes"),
        senders: byWorker.get(w.workerId) ?? [],
      }),
    ),
  );
  const extra = during ? await during() : undefined;
  const sent = await sending;
  const acked = sent.reduce((a, s) => a + s.acked, 0);
  const perMsg = membersOf.get(senders[0]!.g)!.length;
  const expected = acked * perMsg;
  // Drain: until every expected delivery is in, or nothing moved for 3 s (bounded by 60 s).
  let last = -1;
  let quietSince = now();
  const drainDeadline = now() + 60_000;
  for (;;) {
    const st = await p.set.all<"status">({ type: "status" });
    const got = st.reduce((a, s) => a + s.deliveries, 0);
    if (got >= expected) break;
    if (got !== last) {
      last = got;
      quietSince = now();
    } else if (now() - quietSince > 3000) break;
    if (now() > drainDeadline) break;
    await sleep(100);
  }
  const cpu1 = cpuOf(p.t.processes);
  const m1 = machineCpu();
  const allocBytes = sampled ? await sampled.stop() : undefined;
  const reports = (await p.set.all<"phase-report">({ type: "phase-report" })).map((r) => r.report);
  const received = new Map<number, Set<number>>();
  for (const r of reports) for (const [g, keys] of r.received) received.set(g, new Set(keys));
  let missing = 0;
  let lostMessages = 0;
  for (const r of reports) {
    for (const key of r.ackedKeys) {
      const sender = Math.floor(key / KEY_SPAN);
      let lost = false;
      for (const m of membersOf.get(sender) ?? []) {
        if (!received.get(m)?.has(key)) {
          missing++;
          lost = true;
        }
      }
      if (lost) lostMessages++;
    }
  }
  const lastDeliveryAt = Math.max(...reports.map((r) => r.lastDeliveryAt));
  const deliveries = reports.reduce((a, r) => a + r.deliveries, 0);
  const serverCpu = diffCpu(cpu0, cpu1);
  const serverCpuTotal = Object.values(serverCpu).reduce((a, b) => a + b, 0);
  const wall = (m1.total - m0.total) / machineInfo().cores;
  const result: PhaseResult = {
    target: p.t.name,
    scenario,
    offeredMsgsPerSec: rate,
    repeat,
    durationS: durationMs / 1000,
    loadavgAtStart: load,
    sent: sent.reduce((a, s) => a + s.sent, 0),
    acked,
    unacked: sent.reduce((a, s) => a + s.unacked, 0),
    sendErrors: mergeStringCounts(reports.map((r) => r.sendErrors)),
    deliveries,
    expectedDeliveries: expected,
    missingDeliveries: missing,
    lostMessages,
    dupMessages: reports.reduce((a, r) => a + r.dupMessages, 0),
    ackMs: roundSummary(summarize(concat(reports.map((r) => r.ackLatency)))),
    deliveryMs: roundSummary(summarize(concat(reports.map((r) => r.deliveryLatency)))),
    ackedMsgsPerSec: round(acked / (durationMs / 1000), 1),
    deliveriesPerSec: round(deliveries / (Math.max(durationMs, lastDeliveryAt - start - 20) / 1000), 1),
    drainMs: round(Math.max(0, lastDeliveryAt - start - 20 - durationMs), 0),
    serverCpuSeconds: serverCpu,
    serverCpuMsPerMessage: round((serverCpuTotal * 1000) / Math.max(1, acked), 3),
    serverAllocKBPerMessage: allocBytes === undefined ? undefined : round(allocBytes / 1000 / Math.max(1, acked), 1),
    machineBusyCores: round((m1.busy - m0.busy) / Math.max(0.001, wall), 2),
    unexpectedCloses: Math.max(...reports.map((r) => r.unexpectedCloses)),
    storm: extra,
  };
  return result;
}

/**
 * Switches the allocation sampler of the processes this run started on; `stop`
 * switches it off and sums what they allocated in between (bytes).
 */
function startAllocSampling(processes: ServerProcess[]): { stop(): Promise<number> } {
  const ours = processes.filter((p) => p.child);
  const next = new Map(ours.map((p) => [p.pid, nextSignalledFile(allocDir, p.pid, "heapprofile")]));
  for (const p of ours) process.kill(p.pid, "SIGUSR2");
  return {
    async stop() {
      for (const p of ours) process.kill(p.pid, "SIGUSR2");
      let total = 0;
      for (const p of ours) {
        const file = next.get(p.pid)!;
        await signalledFileWritten(file, p, "allocation profile", 30_000);
        total += heapProfileBytes(file);
      }
      return total;
    },
  };
}

/**
 * The file the preloaded module (alloc-sampler.mjs, heap-snapshot.mjs) of a
 * server process writes next on SIGUSR2: <dir>/<pid>-<n>.<ext>, n counting
 * from 1 in each process, as the module counts.
 */
function nextSignalledFile(dir: string, pid: number, ext: string): string {
  const key = `${ext}:${pid}`;
  const n = (signalledFiles.get(key) ?? 0) + 1;
  signalledFiles.set(key, n);
  return join(dir, `${pid}-${n}.${ext}`);
}
const signalledFiles = new Map<string, number>();

/** Waits until the process has renamed its file into place (so it is whole). */
async function signalledFileWritten(file: string, p: ServerProcess, what: string, timeoutMs: number): Promise<void> {
  const deadline = now() + timeoutMs;
  while (!existsSync(file)) {
    if (now() > deadline) throw new Error(`${p.role} (pid ${p.pid}) wrote no ${what} ${file}`);
    await sleep(50);
  }
}

/** Saturated when the server no longer keeps up with the offered rate. */
function saturation(r: PhaseResult): string | undefined {
  if (r.unacked > 0.001 * r.sent) return `${r.unacked} of ${r.sent} sends unacked after 30 s`;
  if (r.drainMs > 2000) return `deliveries ended ${(r.drainMs / 1000).toFixed(1)} s after the sends`;
  if (r.deliveryMs.p99 > 1000) return `p99 ${r.deliveryMs.p99} ms > 1 s`;
  return undefined;
}

async function trafficScenario(prepared: Prepared[], scenario: "latency" | "fanout", rates: number[]): Promise<PhaseResult[]> {
  const out: PhaseResult[] = [];
  // Warm-up, not reported: connections to engines, JIT, prepared statements, caches.
  if (int("warmup-s") > 0) {
    for (const p of prepared) {
      log(`${p.t.name}: ${scenario} warm-up, ${rates[0]} msgs/s for ${int("warmup-s")} s`);
      await phase(p, scenario, rates[0]!, -1, int("warmup-s") * 1000);
    }
  }
  for (const rate of rates) {
    for (let r = 0; r < repeats; r++) {
      // Targets alternate within each step, so both see the same machine load.
      for (const p of prepared) {
        if (p.saturated[scenario] && !opt["keep-going"]) continue;
        log(`${p.t.name}: ${scenario} ${rate} msgs/s, repeat ${r + 1}/${repeats}`);
        const res = await phase(p, scenario, rate, r, phaseMs);
        const sat = saturation(res);
        if (sat) res.saturated = sat;
        out.push(res);
        log(
          `${p.t.name}: ${scenario} ${rate}/s: ack p50 ${res.ackMs.p50} p99 ${res.ackMs.p99}; delivery p50 ${res.deliveryMs.p50} p99 ${res.deliveryMs.p99} max ${res.deliveryMs.max}; ` +
            `${res.deliveriesPerSec} deliveries/s; lost ${res.lostMessages}; cpu ${JSON.stringify(res.serverCpuSeconds)}${sat ? `; SATURATED: ${sat}` : ""}`,
        );
        await sleep(1000);
      }
    }
    for (const p of prepared) {
      const mine = out.filter((x) => x.target === p.t.name && x.offeredMsgsPerSec === rate && x.scenario === scenario);
      // Saturated when most repeats at this step were.
      if (mine.length > 0 && mine.filter((x) => x.saturated).length * 2 > mine.length) p.saturated[scenario] = mine.find((x) => x.saturated)!.saturated;
    }
  }
  return out;
}

async function stormScenario(p: Prepared): Promise<PhaseResult> {
  const rate = int("storm-rate");
  const duration = Math.max(20_000, phaseMs * 2);
  log(`${p.t.name}: storm: ${p.users.length} sessions, background ${rate} msgs/s`);
  const res = await phase(p, "storm", rate, 0, duration, async () => {
    await sleep(3000);
    const t0 = now();
    const reps = (await p.set.all<"storm">({ type: "storm", concurrency: Math.ceil(int("storm-concurrency") / p.set.workers.length), syncTimeoutMs: 120_000, persistent: p.t.persistent })).map(
      (r) => r.report as StormReport,
    );
    const welcome = summarize(concat(reps.map((r) => r.welcomeMs)));
    const synced = summarize(concat(reps.map((r) => r.syncedMs)));
    return {
      sessions: reps.reduce((a, r) => a + r.sessions, 0),
      failed: reps.reduce((a, r) => a + r.failed, 0),
      notSynced: reps.reduce((a, r) => a + r.notSynced, 0),
      allBackS: round(welcome.max / 1000),
      allSyncedS: round(synced.max / 1000),
      welcomeMs: roundSummary(welcome),
      syncedMs: roundSummary(synced),
      stormWallS: round((now() - t0) / 1000),
    };
  });
  log(`${p.t.name}: storm: ${JSON.stringify(res.storm)}; lost ${res.lostMessages} (missing deliveries ${res.missingDeliveries})`);
  return res;
}

// ---------------------------------------------------------------- main

async function main() {
  mkdirSync(tmpDir, { recursive: true });
  const result: Record<string, unknown> = {
    stamp,
    label,
    machine: machineInfo(),
    versions: versions(),
    loadavgAtStart: loadavg(),
    settings: { ...opt, localAddresses },
    targets: {} as Record<string, unknown>,
  };
  const targets: Target[] = [];
  const prepared: Prepared[] = [];
  const sections: Record<string, unknown[]> = { idle: [], latency: [], fanout: [], storm: [] };
  result.results = sections;
  const started = Date.now();
  try {
    for (const name of targetNames) {
      log(`starting ${name}`);
      const t = await startTarget(name);
      targets.push(t);
      (result.targets as Record<string, unknown>)[name] = { wsUrls: t.wsUrls, processes: t.processes.map((p) => ({ role: p.role, pid: p.pid })), settings: t.settings };
    }
    if (scenarios.has("idle")) for (const t of targets) sections.idle!.push(await idleScenario(t));
    if (scenarios.has("latency") || scenarios.has("fanout") || scenarios.has("storm")) {
      for (const t of targets) prepared.push(await prepare(t));
      (result.accounts as unknown) = prepared.map((p) => ({ target: p.t.name, users: p.users.length, seconds: p.accountsSeconds }));
    }
    if (scenarios.has("latency")) sections.latency = await trafficScenario(prepared, "latency", list("rates").map(Number));
    if (scenarios.has("fanout")) sections.fanout = await trafficScenario(prepared, "fanout", list("group-rates").map(Number));
    if (scenarios.has("storm")) for (const p of prepared) sections.storm!.push(await stormScenario(p));
  } catch (err) {
    result.error = String((err as Error).stack ?? err);
    log(`FAILED: ${result.error}`);
  } finally {
    for (const p of prepared) await p.set.close();
    for (const t of targets) await t.stop().catch(() => {});
  }
  result.loadavgAtEnd = loadavg();
  result.wallSeconds = round((Date.now() - started) / 1000, 0);
  result.profiles = targets.flatMap((t) => cpuProfiles(join(profileDir, t.name)));
  const base = join(ROOT, "bench/results", `${stamp}-${label}`);
  writeFileSync(`${base}.json`, JSON.stringify(result, null, 1));
  writeFileSync(`${base}.md`, renderMarkdown(result));
  log(`wrote ${base}.json and .md`);
  if (!opt.profile && !opt.alloc && !opt["heap-snapshots"]) rmSync(tmpDir, { recursive: true, force: true });
  else log(`profiles kept in ${tmpDir}`);
  process.stdout.write(renderMarkdown(result));
  if (result.error) process.exitCode = 1;
}

// ---------------------------------------------------------------- helpers

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function concat(arrays: Float64Array[]): Float64Array {
  const out = new Float64Array(arrays.reduce((a, x) => a + x.length, 0));
  let o = 0;
  for (const a of arrays) {
    out.set(a, o);
    o += a.length;
  }
  return out;
}

function roundSummary(s: LatencySummary): LatencySummary {
  return { count: s.count, p50: round(s.p50), p90: round(s.p90), p99: round(s.p99), p999: round(s.p999), max: round(s.max), mean: round(s.mean) };
}

function mergeCounts(lists: [number, number][][]): [number, number][] {
  const m = new Map<number, number>();
  for (const l of lists) for (const [k, v] of l) m.set(k, (m.get(k) ?? 0) + v);
  return [...m];
}

function mergeStringCounts(lists: [string, number][][]): [string, number][] {
  const m = new Map<string, number>();
  for (const l of lists) for (const [k, v] of l) m.set(k, (m.get(k) ?? 0) + v);
  return [...m];
}

async function poolRun<T>(items: T[], limit: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

await main();
// Runs against chatd or the cluster stayed alive after writing their results,
// with nothing in process.getActiveResourcesInfo(); the cause is not found yet,
// and a finished run must not linger on a shared machine.
process.exit();
