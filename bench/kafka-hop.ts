/**
 * What one hop through Kafka costs in time, through the project's own queue
 * adapter (KafkaQueue: idempotent producer, acks from all in-sync replicas,
 * the pipeline's consumer settings): a publish's ack, a record's way from
 * publish to a subscriber's handler, and two hops chained (a handler that
 * publishes on, as the Sequencer does to the InboxWriter). A message of the
 * cluster crosses two such hops plus its appends to Cassandra, so this is the
 * floor under the cluster's send-to-delivery latency on the machine it runs on.
 *
 *   bash scripts/engines.sh up && npx tsx bench/kafka-hop.ts [--rates 100,500,1000] [--seconds 10]
 *
 * Open loop at each rate, in a namespace of its own, dropped at the end.
 * Prints a markdown table.
 */
import { parseArgs } from "node:util";
import { KafkaQueue } from "../internal/queue/kafka.js";
import { engineScope } from "../test/support/engine-scope.js";
import { engineConfig } from "../test/support/engines.js";
import { summarize } from "./lib/stats.js";
import { loadavg, machineInfo } from "./lib/sysinfo.js";

const { values } = parseArgs({ options: { rates: { type: "string", default: "100,500,1000" }, seconds: { type: "string", default: "10" } } });
const seconds = Number(values.seconds);
const partitions = 12;
const engines = engineConfig();
const scope = engineScope(engines, "kafkahop");
const queue = new KafkaQueue({ brokers: engines.kafkaBrokers, clientId: "bench-kafka-hop", namespace: scope.env.CHAT_KAFKA_NAMESPACE });
const first = "bench.hop.first";
const second = "bench.hop.second";
await queue.ensureTopics([{ topic: first, partitions }, { topic: second, partitions }]);

// Each record carries the time it was published; a round's records carry its number.
let round = -1;
let acks: number[] = [];
let oneHop: number[] = [];
let twoHops: number[] = [];
const stamp = (r: number, t: number) => new TextEncoder().encode(`${r} ${t}`);
const read = (value: Uint8Array) => new TextDecoder().decode(value).split(" ").map(Number) as [number, number];

const subs = [
  await queue.subscribe("bench-hop-first", first, async (records) => {
    const now = performance.now();
    const onward = [];
    for (const r of records) {
      const [rr, t] = read(r.value);
      if (rr === round) oneHop.push(now - t);
      onward.push({ key: r.key, value: r.value });
    }
    await queue.publish(second, onward);
  }),
  await queue.subscribe("bench-hop-second", second, async (records) => {
    const now = performance.now();
    for (const r of records) {
      const [rr, t] = read(r.value);
      if (rr === round) twoHops.push(now - t);
    }
  }),
];

async function paced(rate: number, n: number): Promise<void> {
  const start = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const wait = start + (i * 1000) / rate - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const t = performance.now();
    inFlight.push(queue.publish(first, [{ key: String(i % 10_000), value: stamp(round, t) }]).then(() => void acks.push(performance.now() - t)));
  }
  await Promise.all(inFlight);
}

async function settle(n: number): Promise<void> {
  const until = performance.now() + 30_000;
  while (twoHops.length < n && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
}

const fmt = (v: number) => v.toFixed(v < 10 ? 2 : 1);
const rows = [
  "| records/s | publish ack p50 / p99 | one hop p50 / p99 | two hops p50 / p99 | two hops max | load |",
  "| --- | --- | --- | --- | --- | --- |",
];
// A warm-up round at the lowest rate, as long as a step: group joins and the rebalances after them, metadata, the JIT (3 s left the first step with p99s of hundreds of ms).
const rates = values.rates.split(",").map(Number);
for (const [i, rate] of [rates[0]!, ...rates].entries()) {
  round = i;
  acks = [];
  oneHop = [];
  twoHops = [];
  const n = Math.round(rate * seconds);
  await paced(rate, n);
  await settle(n);
  if (i === 0) continue;
  const [a, o, w] = [summarize(acks), summarize(oneHop), summarize(twoHops)];
  rows.push(`| ${rate} | ${fmt(a.p50)} / ${fmt(a.p99)} ms | ${fmt(o.p50)} / ${fmt(o.p99)} ms | ${fmt(w.p50)} / ${fmt(w.p99)} ms | ${fmt(w.max)} ms | ${loadavg()[0]} |` + (w.count < n ? ` (${n - w.count} not through)` : ""));
}
for (const s of subs) await s.stop();
await queue.close();
await scope.drop();
const m = machineInfo();
console.log(`Kafka hop, ${new Date().toISOString()}: ${m.cpuModel}, ${m.cores} cores, Node ${m.node}; ${partitions} partitions, ${seconds} s per rate, open loop\n`);
console.log(rows.join("\n"));
