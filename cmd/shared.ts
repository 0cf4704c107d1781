import { ConfigError } from "../internal/config/env.js";
import { MissingKeyError } from "../internal/auth/tokens.js";
import { StartTimeoutError } from "../internal/cluster/start-retry.js";
import { ListenError } from "../internal/observability/listen.js";

export { readLogLevel } from "../internal/config/env.js";

/** Reads configuration; on a ConfigError prints every problem and exits with status 2. */
export function exitOnConfigError<T>(role: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${role}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/**
 * Starts what `start` starts; when a listener cannot (a port in use), prints
 * why, naming the setting, and exits with status 1 instead of a stack trace.
 */
export async function exitOnListenError<T>(role: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    if (err instanceof ListenError) {
      process.stderr.write(`${role}: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

/**
 * A start-up step that gave up waiting (on an engine: StartTimeoutError; on
 * the api's token key: MissingKeyError), thrown from the role's top level,
 * ends the process with status 1 and one line naming what to fix: a stack
 * trace would only bury it. Anything else left uncaught ends the process as
 * Node would, stack and all.
 */
export function exitOnStartTimeout(role: string): void {
  process.on("uncaughtException", (err) => {
    const gaveUp = err instanceof StartTimeoutError || err instanceof MissingKeyError;
    process.stderr.write(gaveUp ? `${role}: ${err.message}\n` : `${role}: uncaught ${err.stack ?? String(err)}\n`);
    process.exit(1);
  });
}
