import { createLogger } from "../../internal/observability/logger.js";
import { ConfigError } from "../../internal/config/env.js";
import { loadChatdConfig } from "./config.js";
import { startChatd } from "./app.js";

let config;
try {
  config = loadChatdConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`chatd: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
const logger = createLogger("chatd", config.logLevel);
const chatd = await startChatd(config, logger);
logger.info({ http: chatd.httpUrl, grpc: chatd.grpcUrl, ws: chatd.wsUrl, dataDir: config.dataDir }, "chatd listening");
// For the person who ran `npm start`; stdout carries the JSON logs.
{
  process.stderr.write(
    `\nchatd is running, data in ${config.dataDir}\n` +
      `  API (Connect, gRPC-Web): ${chatd.httpUrl}\n` +
      `  API (gRPC, h2c):         ${chatd.grpcUrl}\n` +
      `  WebSocket:               ${chatd.wsUrl}\n` +
      `Stop it with Ctrl+C.\n\n`,
  );
}

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "chatd stopping");
    chatd.close().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, "chatd did not stop cleanly");
        process.exit(1);
      },
    );
  });
}
