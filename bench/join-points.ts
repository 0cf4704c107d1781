/**
 * What moving the join points of an add's joiners (ChannelStore.markJoined)
 * takes on the local Cassandra, for adds of 1, 10 and 100 users: the Sequencer
 * does it inside its batch, so every channel of the Kafka partition waits for it.
 *
 *   bash scripts/engines.sh up && npx tsx bench/join-points.ts [--rounds 20] [--sizes 1,10,100]
 *
 * Uses its own keyspace (bench_join_points_<pid>, dropped at the end).
 */
import { parseArgs } from "node:util";
import { dropKeyspace } from "../test/support/cassandra.js";
import { engineConfig } from "../test/support/engines.js";
import { openCassandraStorage } from "../internal/storage/cassandra/index.js";
import type { MemberRecord } from "../internal/model/types.js";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "20" }, sizes: { type: "string", default: "1,10,100" } } });
const rounds = Number(values.rounds);
const sizes = values.sizes.split(",").map(Number);
const engines = engineConfig();
const keyspace = `bench_join_points_${process.pid}`;
const storage = await openCassandraStorage({ contactPoints: engines.cassandraContactPoints, localDataCenter: engines.cassandraDc, keyspace });
let nextId = 1n;
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;

try {
  console.log(`markJoined on ${engines.cassandraContactPoints.join(",")}, ${rounds} adds per size (a new group each)`);
  console.log("joiners  median ms  p90 ms  max ms");
  for (const n of sizes) {
    const took: number[] = [];
    for (let r = 0; r < rounds + 2; r++) {
      const channelId = nextId++;
      const users = Array.from({ length: n + 1 }, () => nextId++);
      const members: MemberRecord[] = users.map((userId, i) => ({ channelId, userId, role: i === 0 ? "owner" : "member", joinedAtMs: 1 + i, readSeq: 0n }));
      await storage.channels.createGroup({ channelId, kind: "group", title: "bench", createdAtMs: 1, createdBy: users[0]! }, members);
      const t0 = performance.now();
      await storage.channels.markJoined(channelId, users.slice(1), 7n);
      // The first two warm the statements' preparation and the connections.
      if (r >= 2) took.push(performance.now() - t0);
      const moved = (await storage.channels.listMembers(channelId)).filter((m) => m.joinedSeq === 7n).length;
      if (moved !== n) throw new Error(`${moved} of ${n} join points moved`);
    }
    took.sort((a, b) => a - b);
    console.log(`${String(n).padStart(7)}  ${pct(took, 0.5).toFixed(1).padStart(9)}  ${pct(took, 0.9).toFixed(1).padStart(6)}  ${took.at(-1)!.toFixed(1).padStart(6)}`);
  }
} finally {
  await dropKeyspace(storage.client, keyspace, () => storage.close());
}
