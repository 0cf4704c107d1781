import { ConfigError } from "../internal/config/env.js";
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
