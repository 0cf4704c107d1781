/**
 * What one presence sweep costs the embedded store when nobody is due: the
 * event loop is held for that long once a second in chatd, whatever the load.
 *
 *   npx tsx bench/presence-sweep.ts [--users 50000] [--sweeps 200]
 */
import { parseArgs } from "node:util";
import { MemoryPresenceStore } from "../internal/presence/memory.js";
import { summarize } from "./lib/stats.js";

const { values } = parseArgs({ options: { users: { type: "string", default: "50000" }, sweeps: { type: "string", default: "200" } } });
const users = Number(values.users);
const sweeps = Number(values.sweeps);
const store = new MemoryPresenceStore();
const now = Date.now();
// User ids as chatd's are: 64-bit snowflakes.
const base = 7_300_000_000_000_000_000n;
for (let i = 0; i < users; i++) await store.touch(base + BigInt(i) * 4_194_304n, 1n, now, now + 60_000);
const times: number[] = [];
for (let i = 0; i < sweeps; i++) {
  const t0 = performance.now();
  const flips = await store.expire(now + 1_000, 500);
  times.push(performance.now() - t0);
  if (flips.length > 0) throw new Error("nobody should be due");
}
const t = summarize(times);
console.log(`${users} users online, ${sweeps} sweeps: median ${t.p50.toFixed(3)} ms, p90 ${t.p90.toFixed(3)} ms, max ${t.max.toFixed(3)} ms per sweep`);
