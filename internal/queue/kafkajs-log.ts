import { createRequire } from "node:module";
import kafkajs from "kafkajs";
import type { LogEntry } from "kafkajs";
import type { Logger } from "pino";

const { logLevel: KafkaLogLevel } = kafkajs;

/** An error code of kafkajs's table: the type, and whether kafkajs retries it. */
interface KafkaError {
  type: string;
  retriable: boolean;
}

// kafkajs logs the error of a response as its message alone; its own table turns
// that back into the type and retriable flag kafkajs itself acts on.
const { errorCodes } = createRequire(import.meta.url)("kafkajs/src/protocol/error.js") as {
  errorCodes: (KafkaError & { message: string })[];
};
const BY_MESSAGE = new Map(errorCodes.map((e) => [e.message, { type: e.type, retriable: e.retriable }]));

/**
 * Conditions every start meets, each answered by kafkajs itself: a cluster just
 * up loads its group and transaction coordinators (GROUP_LOAD_IN_PROGRESS) and
 * creates its offsets topic at the first group (GROUP_COORDINATOR_NOT_AVAILABLE,
 * NOT_COORDINATOR_FOR_GROUP); a partition of a topic another process created a
 * moment ago has no leader yet (the other three); a group forming rebalances
 * (REBALANCE_IN_PROGRESS, MEMBER_ID_REQUIRED). They go to debug, as would the
 * same at every deploy or leader move.
 */
const AT_START = [
  "GROUP_LOAD_IN_PROGRESS",
  "GROUP_COORDINATOR_NOT_AVAILABLE",
  "NOT_COORDINATOR_FOR_GROUP",
  "UNKNOWN_TOPIC_OR_PARTITION",
  "LEADER_NOT_AVAILABLE",
  "NOT_LEADER_FOR_PARTITION",
  "REBALANCE_IN_PROGRESS",
  "MEMBER_ID_REQUIRED",
];
/** Not retriable in kafkajs's table, yet kafkajs mends them by rejoining the group. */
const REJOINED = ["REBALANCE_IN_PROGRESS", "UNKNOWN_MEMBER_ID", "ILLEGAL_GENERATION", "MEMBER_ID_REQUIRED"];
const known = new Set(errorCodes.map((e) => e.type));
for (const t of [...AT_START, ...REJOINED]) if (!known.has(t)) throw new Error(`kafkajs has no error ${t} any more: see kafkajs-log.ts`);

const SEND_FAILED = "Failed to send messages: ";

/**
 * The kafkajs error an error-level entry reports as passing: a response's error
 * (Connection), a member the coordinator dropped (Runner, which rejoins) or a
 * produce kafkajs retries (Producer). Others, a consumer's crash among them
 * (Consumer), stay as kafkajs logs them.
 */
function passingError(namespace: string, log: { message?: string; error?: unknown }): KafkaError | undefined {
  const { error } = log;
  // Where kafkajs gives the error itself as the message (a broker pool's bail), it is not a passing one.
  const message = typeof log.message === "string" ? log.message : "";
  if (error && typeof error === "object" && typeof (error as KafkaError).type === "string" && namespace !== "Consumer") {
    return { type: (error as KafkaError).type, retriable: (error as KafkaError).retriable === true };
  }
  if (namespace === "Connection" && message.startsWith("Response ")) return BY_MESSAGE.get(String(error));
  if (namespace === "Runner") return BY_MESSAGE.get(String(error));
  if (namespace === "Producer" && message.startsWith(SEND_FAILED)) return BY_MESSAGE.get(message.slice(SEND_FAILED.length));
  return undefined;
}

/**
 * The pino level of a kafkajs error-level entry. kafkajs logs at error every
 * error response, also those it answers itself (a metadata refresh and a retry,
 * a rejoin). One that lasts ends in an error of its own: a consumer's crash,
 * logged at error, or the failure of the call that waited (a start-up step, a
 * publish). Refusals no retry mends (authorization, SASL) and a broker not
 * answering stay at error.
 */
function errorLevel(namespace: string, log: { message?: string; error?: unknown }): "error" | "warn" | "debug" {
  // Only ensureTopics sends a CreateTopics, which takes a lost race (another
  // process created the topics first) as done and throws anything else.
  if (namespace === "Connection" && String(log.message).startsWith("Response CreateTopics(")) return "debug";
  const e = passingError(namespace, log);
  if (!e) return "error";
  if (AT_START.includes(e.type)) return "debug";
  return e.retriable || REJOINED.includes(e.type) ? "warn" : "error";
}

/** kafkajs logCreator writing to pino: the kafkajs namespace and extra fields become log fields. */
export function pinoLogCreator(logger: Logger) {
  return () =>
    ({ namespace, level, log }: LogEntry) => {
      const { message, timestamp: _t, logger: _l, ...extra } = log as LogEntry["log"] & { logger?: string };
      const fields = { kafka: namespace, ...extra };
      if (level <= KafkaLogLevel.ERROR) logger[errorLevel(namespace, log)](fields, message);
      else if (level === KafkaLogLevel.WARN) logger.warn(fields, message);
      else if (level === KafkaLogLevel.INFO) logger.info(fields, message);
      else logger.debug(fields, message);
    };
}

export function kafkaLevel(level: "error" | "warn" | "info" | "debug"): number {
  return { error: KafkaLogLevel.ERROR, warn: KafkaLogLevel.WARN, info: KafkaLogLevel.INFO, debug: KafkaLogLevel.DEBUG }[level];
}
