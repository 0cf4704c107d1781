import { ConfigError } from "../internal/config/env.js";

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
