import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { ROOT } from "./targets.js";

export function machineInfo() {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model ?? "unknown",
    cores: cpus.length,
    memTotalMiB: Math.round(os.totalmem() / 2 ** 20),
    kernel: os.release(),
    node: process.version,
    openFilesLimit: safe(() => execFileSync("bash", ["-c", "ulimit -n"]).toString().trim()),
    ephemeralPorts: safe(() => readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().replace(/\s+/, "-")),
  };
}

export function versions() {
  const pkg = (name: string) => safe(() => (JSON.parse(readFileSync(join(ROOT, "node_modules", name, "package.json"), "utf8")) as { version: string }).version);
  return {
    commit: safe(() => execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT }).toString().trim()),
    dirtyFiles: safe(() => execFileSync("git", ["status", "--porcelain"], { cwd: ROOT }).toString().split("\n").filter(Boolean).length),
    ws: pkg("ws"),
    "better-sqlite3": pkg("better-sqlite3"),
    "@bufbuild/protobuf": pkg("@bufbuild/protobuf"),
    "@connectrpc/connect-node": pkg("@connectrpc/connect-node"),
    kafkajs: pkg("kafkajs"),
    "cassandra-driver": pkg("cassandra-driver"),
    ioredis: pkg("ioredis"),
    "@grpc/grpc-js": pkg("@grpc/grpc-js"),
  };
}

export function loadavg(): [number, number, number] {
  const [a, b, c] = os.loadavg();
  return [round2(a!), round2(b!), round2(c!)];
}

/** Resident set size of a process in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : NaN;
}

const CLK_TCK = 100;

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may hold spaces.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

/** Whole-machine CPU time (all cores, jiffies converted to seconds): busy and total. */
export function machineCpu(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = line[3]! + (line[4] ?? 0);
  const total = line.reduce((a, b) => a + b, 0);
  return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK };
}

/** nodejs_heap_size_used_bytes from a Prometheus /metrics endpoint. */
export async function heapUsedBytes(metricsUrl: string): Promise<number> {
  const res = await fetch(metricsUrl);
  const text = await res.text();
  const m = /^nodejs_heap_size_used_bytes(?:\{[^}]*\})? ([0-9.e+]+)/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

function safe<T>(f: () => T): T | string {
  try {
    return f();
  } catch (err) {
    return `unknown (${(err as Error).message.split("\n")[0]})`;
  }
}

const round2 = (v: number) => Math.round(v * 100) / 100;
