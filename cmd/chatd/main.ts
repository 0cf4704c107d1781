import { relative, sep } from "node:path";
import { startRetriesStopped } from "../../internal/cluster/start-retry.js";
import { UnusableDatabaseError } from "../../internal/storage/sqlite/database.js";
import { createLogger } from "../../internal/observability/logger.js";
import { apnsOptionsFromFiles } from "../../internal/push/apns.js";
import { fcmOptionsFromFile } from "../../internal/push/fcm.js";
import { exitOnConfigError, exitOnFileError, exitOnListenError, stopOnSignalsFromStart } from "../shared.js";
import { loadChatdConfig } from "./config.js";
import { startChatd } from "./app.js";
import { lockDataDir } from "../../internal/storage/sqlite/data-dir.js";
import { removeRestoreLeftovers } from "../../internal/storage/sqlite/restore.js";
import { unknownVariablesHint, warnUnknownChatVariables } from "../variables.js";

const config = exitOnConfigError("chatd", () => loadChatdConfig(), unknownVariablesHint);
const logger = createLogger("chatd", config.logLevel);
warnUnknownChatVariables(logger);
const start = stopOnSignalsFromStart(logger);
// Before a database is opened or an id minted: a second chatd on the directory stops here.
const lock = exitOnConfigError("chatd", () => lockDataDir(config.dataDir));
// Every way out (a stop, a listen error, a crash) leaves the directory to the next start.
process.on("exit", () => lock.release());
// The directory is ours, so no restore into it is under way: what one stopped during its copy left goes.
try {
  removeRestoreLeftovers(config.dataDir);
} catch {
  // Best effort: the next restore removes it too, and it must not keep chatd from starting.
}
// Read once here too, as startChatd will: a credential missing or unreadable is told in one line naming it.
await exitOnFileError("chatd", { CHAT_APNS_KEY_FILE: config.push.apns?.keyFile, CHAT_FCM_SERVICE_ACCOUNT_FILE: config.push.fcm?.serviceAccountFile }, () => {
  if (config.push.apns) apnsOptionsFromFiles(config.push.apns);
  if (config.push.fcm) fcmOptionsFromFile(config.push.fcm);
});
const chatd = await exitOnListenError("chatd", async () => {
  try {
    return await startChatd(config, logger, startRetriesStopped);
  } catch (err) {
    // A database from a newer build (a downgrade), damaged, or not writable: one line naming it, as a setting would be.
    if (err instanceof UnusableDatabaseError) {
      process.stderr.write(`chatd: CHAT_DATA_DIR=${JSON.stringify(config.dataDir)}: ${relative(config.dataDir, err.path)}: ${(err.cause as Error).message}\n`);
      process.exit(2);
    }
    // So are the directory's other files (the keys, the VAPID pair): another user's, or no room left to write them.
    if (!isDataDirFileError(err, config.dataDir)) throw err;
    process.stderr.write(`chatd: CHAT_DATA_DIR=${JSON.stringify(config.dataDir)}: ${(err as Error).message}\n`);
    process.exit(2);
  }
});
start.started(() => chatd.close());
if (!start.stopping) {
  logger.info({ http: chatd.httpUrl, grpc: chatd.grpcUrl, ws: chatd.wsUrl, ops: chatd.opsPort, dataDir: config.dataDir }, "chatd listening");
  // For the person who ran `npm start`; stdout carries the JSON logs. With CHAT_OPS_PORT,
  // /metrics is on that plain-HTTP port alone, which the log line gave only as a number.
  const metrics = new URL(chatd.httpUrl);
  if (chatd.opsPort !== undefined) {
    metrics.protocol = "http:";
    metrics.port = String(chatd.opsPort);
  }
  process.stderr.write(
    `\nchatd is running, data in ${config.dataDir}\n` +
      `  Web client:              ${chatd.httpUrl}/\n` +
      `  API (Connect, gRPC-Web): ${chatd.httpUrl}\n` +
      `  API (gRPC over HTTP/2):  ${chatd.grpcUrl.replace(/^https?:\/\//, "")}${chatd.grpcUrl.startsWith("https") ? " (TLS)" : " (plaintext: grpcurl -plaintext)"}\n` +
      `  WebSocket:               ${chatd.wsUrl}\n` +
      `  Probes (ready, alive):   ${chatd.httpUrl}/readyz, ${chatd.httpUrl}/livez\n` +
      `  Metrics:                 ${metrics.origin}/metrics\n` +
      `Stop it with Ctrl+C.\n\n`,
  );
}

/** A file system error on a file under `dataDir`, or a write that found no room (which names no file). */
function isDataDirFileError(err: unknown, dataDir: string): boolean {
  const { code, path } = err as NodeJS.ErrnoException;
  if (!(err instanceof Error) || typeof code !== "string") return false;
  if (typeof path === "string") return path.startsWith(dataDir + sep);
  return ["ENOSPC", "EDQUOT", "EFBIG", "EROFS"].includes(code);
}
