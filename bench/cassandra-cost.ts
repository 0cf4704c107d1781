/**
 * What one request costs the local Cassandra in CPU, by kind (plain write,
 * read, lightweight transaction), at full speed and at fixed lower rates.
 * The cluster target's figures are dominated by Cassandra; this separates its
 * price per request from the pipeline's number of requests per message.
 *
 *   bash scripts/engines.sh up && npx tsx bench/cassandra-cost.ts [--ops 20000] [--rates 200,1000,3000]
 *
 * Uses its own keyspace (bench_cassandra_cost, dropped at the end) and reads
 * Cassandra's CPU time from /proc.
 */
import { parseArgs } from "node:util";
import cassandra from "cassandra-driver";
import { cpuSeconds } from "./lib/sysinfo.js";
import { engineConfig } from "../test/support/engines.js";
import { engineProcesses } from "./lib/targets.js";

const { values } = parseArgs({ options: { ops: { type: "string", default: "20000" }, rates: { type: "string", default: "200,1000,3000" } } });
const ops = Number(values.ops);
const engine = engineProcesses().find((p) => p.role === "engine:cassandra");
if (!engine) throw new Error("Cassandra is not running: bash scripts/engines.sh up");
const engines = engineConfig();
const client = new cassandra.Client({
  contactPoints: engines.cassandraContactPoints,
  localDataCenter: engines.cassandraDc,
  encoding: { useBigIntAsLong: true },
  queryOptions: {
    prepare: true,
    consistency: cassandra.types.consistencies.localQuorum,
    serialConsistency: cassandra.types.consistencies.localSerial,
  },
});
const ks = "bench_cassandra_cost";
const text = "x".repeat(64);
const insert = `INSERT INTO ${ks}.t (k, v, s) VALUES (?, ?, ?)`;

/** CPU microseconds of Cassandra per operation while `run` does `n` of them. */
async function measure(n: number, run: () => Promise<void>): Promise<{ usPerOp: number; opsPerSec: number }> {
  const cpu0 = cpuSeconds(engine!.pid);
  const t0 = performance.now();
  await run();
  const seconds = (performance.now() - t0) / 1000;
  return { usPerOp: ((cpuSeconds(engine!.pid) - cpu0) * 1e6) / n, opsPerSec: n / seconds };
}

/** As fast as 32 requests in flight allow. */
function flatOut(n: number, op: (i: number) => Promise<unknown>) {
  return measure(n, async () => {
    let next = 0;
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < n) await op(next++);
    }));
  });
}

/** Open loop at a fixed rate for n requests. */
function paced(n: number, rate: number, op: (i: number) => Promise<unknown>) {
  return measure(n, async () => {
    const start = performance.now();
    const inFlight: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const wait = start + (i * 1000) / rate - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      inFlight.push(op(i));
    }
    await Promise.all(inFlight);
  });
}

await client.connect();
await client.execute(`CREATE KEYSPACE IF NOT EXISTS ${ks} WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`);
await client.execute(`CREATE TABLE IF NOT EXISTS ${ks}.t (k bigint PRIMARY KEY, v bigint, s text)`);
const rows: string[] = ["| load | request | Cassandra CPU per request (µs) | requests/s |", "| --- | --- | --- | --- |"];
const row = (load: string, what: string, r: { usPerOp: number; opsPerSec: number }) =>
  rows.push(`| ${load} | ${what} | ${Math.round(r.usPerOp)} | ${Math.round(r.opsPerSec)} |`);
// The first round warms the JIT; report the second.
for (let round = 0; round < 2; round++) {
  const w = await flatOut(ops, (i) => client.execute(insert, [BigInt(i), 0n, text]));
  const r = await flatOut(ops, (i) => client.execute(`SELECT v FROM ${ks}.t WHERE k = ?`, [BigInt(i)]));
  const l = await flatOut(ops / 4, (i) =>
    client.execute(`UPDATE ${ks}.t SET v = ? WHERE k = ? IF v = ?`, [BigInt(round + 1), BigInt(i), BigInt(round)]),
  );
  if (round === 1) {
    row("32 in flight", "write", w);
    row("32 in flight", "read", r);
    row("32 in flight", "LWT (compare-and-set)", l);
  }
}
for (const rate of values.rates.split(",").map(Number)) {
  row(`${rate}/s`, "write", await paced(rate * 5, rate, (i) => client.execute(insert, [BigInt(i), 0n, text])));
}
await client.execute(`DROP KEYSPACE ${ks}`);
await client.shutdown();
console.log(rows.join("\n"));
