import { CliError, describe, isDeadline } from "./client.js";
import { warn } from "./output.js";

/** A shell's exit code for a process a signal ended: 128 plus its number. */
export function exitCodeOf(signal: NodeJS.Signals): number {
  return signal === "SIGINT" ? 130 : 143;
}

/**
 * `fn`, a change asked of the server, with Ctrl+C and SIGTERM before its answer said as such: `unknown`
 * tells what may have been made or not and where to look (exit 130 or 143). So does a call given up at
 * its deadline (exit 1): the server may have made it and its answer been lost.
 */
export async function unsureIfInterrupted<T>(unknown: string, fn: () => Promise<T>): Promise<T> {
  // Killed by the signal in silence, it left the person (and a script, with no exit code) not knowing
  // whether the server took it, and a second `send` to be sure made the message twice when it had.
  const interrupted = (signal: NodeJS.Signals) => {
    warn(`chat-cli: interrupted before the server answered: ${unknown}`);
    process.exit(exitCodeOf(signal));
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  try {
    return await fn();
  } catch (err) {
    if (isDeadline(err)) throw new CliError(`${describe(err)}: ${unknown}`);
    throw err;
  } finally {
    process.off("SIGINT", interrupted);
    process.off("SIGTERM", interrupted);
  }
}
