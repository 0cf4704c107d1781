import { createRequire } from "node:module";
import kafkajs from "kafkajs";
import type { LogEntry } from "kafkajs";
import type { Logger } from "pino";

const { logLevel: KafkaLogLevel } = kafkajs;

/**
 * kafkajs logs every error response at error level, also those it answers
 * itself by refreshing metadata and asking again: a partition whose leader has
 * not taken over yet (topics another process created a moment ago, which a
 * pipeline or notifier started beside the api meets at every start; a leader
 * moving) answers NOT_LEADER_FOR_PARTITION for a few tries; and a group
 * rebalancing answers every member's heartbeat with REBALANCE_IN_PROGRESS, on
 * which it rejoins (kafkajs says so at warn). Those go to debug. One that
 * lasts ends in an error of its own, which is still logged (a consumer crash,
 * a publish that fails, a start-up step that gives up).
 */
const REFRESHED_TYPES = ["UNKNOWN_TOPIC_OR_PARTITION", "LEADER_NOT_AVAILABLE", "NOT_LEADER_FOR_PARTITION", "REBALANCE_IN_PROGRESS"];
const { errorCodes } = createRequire(import.meta.url)("kafkajs/src/protocol/error.js") as { errorCodes: { type: string; message: string }[] };
const REFRESHED_MESSAGES = new Set(errorCodes.filter((e) => REFRESHED_TYPES.includes(e.type)).map((e) => e.message));
if (REFRESHED_MESSAGES.size !== REFRESHED_TYPES.length) throw new Error("kafkajs error table changed: see kafkajs-log.ts");

/**
 * An error response kafkajs retries after a metadata refresh or a rejoin, or the refusal of a
 * CreateTopics: only ensureTopics sends one, which takes a lost race (another
 * process created the topics first) as done and throws anything else.
 */
function expectedResponseError(namespace: string, log: { message?: string; error?: unknown }): boolean {
  if (namespace !== "Connection" || !log.message?.startsWith("Response ")) return false;
  return log.message.startsWith("Response CreateTopics(") || REFRESHED_MESSAGES.has(String(log.error));
}

/** kafkajs logCreator writing to pino: the kafkajs namespace and extra fields become log fields. */
export function pinoLogCreator(logger: Logger) {
  return () =>
    ({ namespace, level, log }: LogEntry) => {
      const { message, timestamp: _t, logger: _l, ...extra } = log as LogEntry["log"] & { logger?: string };
      const fields = { kafka: namespace, ...extra };
      if (level <= KafkaLogLevel.ERROR && !expectedResponseError(namespace, log)) logger.error(fields, message);
      else if (level === KafkaLogLevel.WARN) logger.warn(fields, message);
      else if (level === KafkaLogLevel.INFO) logger.info(fields, message);
      else logger.debug(fields, message);
    };
}
