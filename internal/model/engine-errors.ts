import { ChatError } from "./errors.js";

/**
 * How long a client refused for an engine that did not answer waits before
 * it asks again: long enough that a store coming back is not met by every
 * device at once, short enough that a blip costs a second.
 */
export const ENGINE_RETRY_AFTER_MS = 1_000;

/**
 * Whether `err` is an engine's own failure to answer (a timeout, a lost or
 * refused connection, a node overloaded or starting, a database file locked
 * or failing), not a bug: the same request asked again may well succeed.
 * A store layer that translates its engine's errors (Cassandra's
 * StorageUnavailable) throws a ChatError; this is for what reaches an edge
 * untranslated, which answered INTERNAL, a code clients take as final.
 * Told by the errors' names and codes, not their classes: the edges load no
 * engine's client.
 */
export function isEngineOutage(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if (outage(e)) return true;
  }
  return false;
}

/** An engine outage as the retryable refusal the edges answer it with; undefined for anything else. */
export function engineOutageError(err: unknown): ChatError | undefined {
  if (!isEngineOutage(err)) return undefined;
  return new ChatError("unavailable", "a store did not answer; try again shortly", ENGINE_RETRY_AFTER_MS);
}

function outage(e: Error): boolean {
  const { name, message } = e;
  const code = (e as { code?: unknown }).code;
  // Node's sockets and DNS: a peer away, a connection cut.
  if (typeof code === "string" && SOCKET_CODES.has(code)) return true;
  // cassandra-driver (its errors are named after their classes).
  if (CASSANDRA_NAMES.has(name)) return true;
  if (name === "ResponseError" && typeof code === "number") return CASSANDRA_OUTAGE_CODES.has(code);
  if (name === "DriverError" && (e as { isSocketError?: unknown }).isSocketError === true) return true;
  // better-sqlite3: the file locked past busy_timeout, an I/O error, a full disk.
  if (name === "SqliteError" && typeof code === "string") return /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|PROTOCOL)/.test(code);
  // kafkajs: its own retriable flag; retries used up or a timeout hold the retriable failure as their cause.
  if (name.startsWith("KafkaJS")) {
    if ((e as { retriable?: unknown }).retriable === true) return true;
    return KAFKA_EXHAUSTED.has(name);
  }
  // ioredis: its named errors, the plain ones it rejects commands with, and the replies of a Redis that cannot serve now.
  if (REDIS_NAMES.has(name)) return true;
  if (REDIS_MESSAGES.has(message)) return true;
  if (name === "ReplyError") return /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|READONLY|NOREPLICAS|OOM)\b/.test(message);
  return false;
}

const SOCKET_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "ECONNABORTED"]);

const CASSANDRA_NAMES = new Set(["NoHostAvailableError", "OperationTimedOutError", "BusyConnectionError"]);

/** unavailable, overloaded, bootstrapping, truncate, write and read timeouts and failures, CDC and CAS outcome unknown, server error. */
const CASSANDRA_OUTAGE_CODES = new Set([0x1000, 0x1001, 0x1002, 0x1003, 0x1100, 0x1200, 0x1300, 0x1500, 0x1600, 0x1700, 0x0000]);

/** Not retriable themselves (kafkajs retries no more), but each is a try that timed out or ran out of tries. */
const KAFKA_EXHAUSTED = new Set(["KafkaJSNumberOfRetriesExceeded", "KafkaJSTimeout", "KafkaJSLockTimeout", "KafkaJSGroupCoordinatorNotFound"]);

const REDIS_NAMES = new Set(["MaxRetriesPerRequestError", "ClusterAllFailedError"]);

const REDIS_MESSAGES = new Set([
  "Connection is closed.",
  "Command timed out",
  "Stream isn't writeable and enableOfflineQueue options is false",
  "None of startup nodes is available",
]);
