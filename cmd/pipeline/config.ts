import { readCassandraEndpoints, readClusterEndpoints, readInboxRetention, readKafkaEndpoints, readRedisEndpoint } from "../../internal/config/engines.js";
import { refuseTls } from "../../internal/config/tls.js";
import { EnvReader } from "../../internal/config/env.js";
import { readLogLevel } from "../shared.js";

export const STAGES = ["sequencer", "inbox-writer"] as const;

/** The pipeline worker's configuration; throws a ConfigError naming every variable that is wrong. */
export function readPipelineConfig(env: NodeJS.ProcessEnv = process.env) {
  const r = new EnvReader(env);
  const stages = r.list("CHAT_PIPELINE_STAGES", [...STAGES]);
  for (const s of stages) {
    if (!(STAGES as readonly string[]).includes(s)) r.problems.push(`CHAT_PIPELINE_STAGES: unknown stage ${JSON.stringify(s)} (expected ${STAGES.join(", ")})`);
  }
  // A worker with no stage consumes nothing yet reports healthy: surely a typo.
  if (stages.length === 0) r.problems.push(`CHAT_PIPELINE_STAGES: names no stage (expected one or more of ${STAGES.join(", ")})`);
  const c = {
    engines: { ...readClusterEndpoints(r), ...readRedisEndpoint(r), ...readKafkaEndpoints(r), ...readCassandraEndpoints(r), ...readInboxRetention(r) },
    stages,
    host: r.string("CHAT_HOST", "127.0.0.1"),
    opsPort: r.int("CHAT_OPS_PORT", 0, 0, 65535),
    logLevel: readLogLevel(r),
    // Failing this long (every batch, or a consumer) fails /healthz: under it, a blip or a rebalance is no stall.
    stallMs: r.int("CHAT_PIPELINE_STALL_MS", 30_000, 1_000, 3_600_000),
  };
  refuseTls(r, "pipeline worker");
  r.done();
  return c;
}
