import { pino, type Logger } from "pino";

/**
 * Structured logs as JSON lines on stdout. Message texts and tokens are never
 * logged: fields that could hold them are redacted in case one slips in.
 */
export function createLogger(name: string, level = "info"): Logger {
  return pino({
    name,
    level,
    base: { pid: process.pid, role: name },
    redact: { paths: ["text", "*.text", "token", "*.token", "password", "*.password"], censor: "[redacted]" },
  });
}
