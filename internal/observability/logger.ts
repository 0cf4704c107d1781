import { pino, stdSerializers, type DestinationStream, type Logger } from "pino";

/**
 * The fields of the api's and the sessions' messages (chat/v1) that hold a
 * message's words (its text, a search's), a password, a token or what
 * addresses and decrypts a device's pushes (a Web Push subscription's keys),
 * redacted at any depth: pino's paths reached `text`, `token` and `password`
 * one level down only (each level more of wildcards costs as much again at
 * every line: 20 times the line at five), so a request logged whole gave away
 * its refresh token, its new password or its push keys.
 */
const SECRET_FIELDS = new Set([
  "text",
  "query",
  "password",
  "currentPassword",
  "newPassword",
  "token",
  "accessToken",
  "refreshToken",
  "deviceToken",
  "registrationToken",
  "authorization",
  "p256dh",
  "auth",
]);

const CENSOR = "[redacted]";

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
      formatters: { log: (fields) => redacted(fields) },
      serializers: { err: (err: Error) => redacted(stdSerializers.err(err)) },
    },
    destination ?? process.stdout,
  );
}

/**
 * A copy of `value` with SECRET_FIELDS censored at any depth. ioredis errors
 * carry the command they failed on, arguments and all: a refused
 * connection's is `HELLO 3 AUTH <user> <password>`, Redis's password in clear
 * on every reconnect, and other commands' hold keys and values; the command's
 * name is kept, its arguments go, also in a cause or an aggregate's errors.
 * Errors are left to the `err` serializer, which comes back here with a
 * plain copy; what has its own JSON (a Date, a Buffer) is left as it is.
 */
function redacted<T>(value: T, depth = 0): T {
  if (depth > 8 || value === null || typeof value !== "object" || value instanceof Error || typeof (value as { toJSON?: unknown }).toJSON === "function") {
    return value;
  }
  if (Array.isArray(value)) return value.map((v) => redacted(v, depth + 1)) as T;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (SECRET_FIELDS.has(k)) out[k] = CENSOR;
    else if (k === "command" && v !== null && typeof v === "object" && "args" in v) out[k] = { ...v, args: CENSOR };
    else out[k] = redacted(v, depth + 1);
  }
  return out as T;
}
