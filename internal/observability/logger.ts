import { pino, stdSerializers, type DestinationStream, type Logger } from "pino";

/**
 * Structured logs as JSON lines on stdout. Message texts and tokens are never
 * logged: fields that could hold them are redacted in case one slips in.
 */
export function createLogger(name: string, level = "info", destination?: DestinationStream): Logger {
  return pino(
    {
      name,
      level,
      base: { pid: process.pid, role: name },
      redact: { paths: ["text", "*.text", "token", "*.token", "password", "*.password"], censor: "[redacted]" },
      serializers: { err: (err: Error) => withoutCommandArgs(stdSerializers.err(err)) },
    },
    destination ?? process.stdout,
  );
}

/**
 * ioredis errors carry the command they failed on, arguments and all: a
 * refused connection's is `HELLO 3 AUTH <user> <password>`, Redis's password
 * in clear on every reconnect, and other commands' hold keys and values. The
 * command's name is kept; its arguments go, also in a cause or an aggregate's
 * errors.
 */
function withoutCommandArgs<T>(value: T, depth = 0): T {
  if (depth > 8 || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v) => withoutCommandArgs(v, depth + 1)) as T;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = k === "command" && v !== null && typeof v === "object" && "args" in v ? { ...v, args: "[redacted]" } : withoutCommandArgs(v, depth + 1);
  }
  return out as T;
}
