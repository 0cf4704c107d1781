import { ConfigError } from "../internal/config/env.js";
import { MissingKeyError } from "../internal/auth/tokens.js";
import { StartStoppedError, StartTimeoutError, stopStartRetries } from "../internal/cluster/start-retry.js";
import { ListenError } from "../internal/observability/listen.js";
import type { PushConfig } from "../internal/push/config.js";
import type { Logger } from "pino";
import { stopOnSignals, type ProcessStopper } from "../internal/observability/lifecycle.js";

export { readLogLevel } from "../internal/config/env.js";

/**
 * Reads configuration; on a ConfigError prints every problem and exits with
 * status 2, then `hint`'s line: the misspelt variable behind a missing one
 * (CHAT_TLS_KY for CHAT_TLS_KEY), which the warning after start-up never reached.
 */
export function exitOnConfigError<T>(role: string, read: () => T, hint?: () => string | undefined): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof ConfigError) {
      const also = hint?.();
      process.stderr.write(`${role}: ${err.message}\n${also ? `${role}: ${also}\n` : ""}`);
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
    // A signal came while an engine was down: nothing to wait for. What earlier steps took
    // (a worker id) lapses with its lease, as after a crash.
    if (err instanceof StartStoppedError) {
      process.stderr.write(`${role}: stopped during start-up (${err.message})\n`);
      process.exit(0);
    }
    const gaveUp = err instanceof StartTimeoutError || err instanceof MissingKeyError;
    process.stderr.write(gaveUp ? `${role}: ${err.message}\n` : `${role}: uncaught ${err.stack ?? String(err)}\n`);
    process.exit(1);
  });
}

/**
 * Runs a start-up step on files that settings name (token keys, the VAPID
 * pair, push credentials). One missing, unreadable, of the wrong kind or not
 * holding what it should ends the process with status 2 and one line naming
 * the setting, as a bad value does, instead of an uncaught stack trace.
 * `files` maps each setting to its value; the line names those the error
 * mentions, or all of them. Engine waits (StartTimeoutError, MissingKeyError)
 * are left to exitOnStartTimeout, and errors that concern no file to Node.
 */
export async function exitOnFileError<T>(role: string, files: Record<string, string | undefined>, step: () => T | Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (err instanceof StartTimeoutError || err instanceof StartStoppedError || err instanceof MissingKeyError || !(err instanceof Error)) throw err;
    const { code, path } = err as NodeJS.ErrnoException;
    const given = Object.entries(files).filter((f): f is [string, string] => !!f[1]);
    const mentioned = given.filter(([, value]) => `${path ?? ""} ${err.message}`.includes(value));
    if (typeof code !== "string" && !(err instanceof SyntaxError) && mentioned.length === 0) throw err;
    const named = (mentioned.length > 0 ? mentioned : given).map(([name, value]) => `${name}=${JSON.stringify(value)}`);
    process.stderr.write(`${role}: ${named.join(", ")}: ${err.message}\n`);
    process.exit(2);
  }
}

/** The files push notifications are set up from (the VAPID pair when not in CHAT_VAPID_*, APNs and FCM credentials), by setting. */
export function pushFiles(config: { keysDir: string; push: PushConfig }): Record<string, string | undefined> {
  return {
    CHAT_KEYS_DIR: config.push.vapidPublicKey ? undefined : config.keysDir,
    CHAT_APNS_KEY_FILE: config.push.apns?.keyFile,
    CHAT_FCM_SERVICE_ACCOUNT_FILE: config.push.fcm?.serviceAccountFile,
  };
}

/** What stopOnSignalsFromStart gives a role: whether a stop was asked for, and where to hand over its stop. */
export interface StartingRole {
  /** A signal came (or the role failed): the start-up goes on to `started`, and says nothing is listening. */
  readonly stopping: boolean;
  /** Why the role gave up (ProcessStopper.fail), stopping to be restarted: /livez fails from then on. */
  readonly failure?: Error;
  /** The role's stop, once everything it stops exists; it runs at once if a signal came during start-up. */
  started(stop: () => Promise<void>): ProcessStopper;
}

/**
 * stopOnSignals from a role's first await on. Until a process has a handler,
 * SIGTERM ends it by the signal (status 143, as a crash), and the roles
 * installed theirs only once they listened: a stop asked for while one waited
 * on an engine, its keys or its database killed it half-started (a worker id
 * or registration left in etcd, a consumer left in its group). A signal during
 * start-up is taken as the stop it asks for: the start-up goes on to
 * `started` (each engine wait within CHAT_START_TIMEOUT_S, the whole stop
 * within stopOnSignals' bound), the role says nothing of listening, its stop
 * runs and the process exits 0.
 */
export function stopOnSignalsFromStart(logger: Logger): StartingRole {
  let stopping = false;
  let handOver!: (stop: () => Promise<void>) => void;
  const roleStop = new Promise<() => Promise<void>>((resolve) => (handOver = resolve));
  const stopper = stopOnSignals(logger, async () => {
    stopping = true;
    stopStartRetries();
    await (await roleStop)();
  });
  return {
    get stopping() {
      return stopping;
    },
    get failure() {
      return stopper.failure;
    },
    started(stop) {
      handOver(stop);
      return stopper;
    },
  };
}
