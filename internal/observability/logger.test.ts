import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { createLogger } from "./logger.js";

/** A logger whose lines are kept, parsed. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  return { logger: createLogger("test", "info", sink), lines };
}

describe("createLogger", () => {
  it("redacts message texts, tokens and passwords", () => {
    const { logger, lines } = capture();
    logger.info({ text: "hello", frame: { token: "t0k", text: "hi" }, password: "pw" }, "x");
    const out = JSON.stringify(lines);
    for (const secret of ["hello", "t0k", "\"hi\"", "\"pw\""]) assert.ok(!out.includes(secret), `${secret} in ${out}`);
  });

  it("logs an ioredis error without the arguments of its command: a refused AUTH holds Redis's password", () => {
    // The shape of ioredis's ReplyError when Redis refuses the password (HELLO ... AUTH), which
    // internal/routing/redis.ts logs on every reconnect.
    const err = Object.assign(new Error("WRONGPASS invalid username-password pair or user is disabled."), {
      command: { name: "hello", args: ["3", "AUTH", "default", "s3cret-pass"] },
    });
    const { logger, lines } = capture();
    logger.warn({ err }, "redis connection error");
    logger.warn({ err: new Error("wrapped", { cause: err }) }, "wrapped");
    logger.warn({ err: new AggregateError([err], "all failed") }, "aggregate");
    const out = JSON.stringify(lines);
    assert.ok(!out.includes("s3cret-pass"), out);
    const first = lines[0]!.err as { message: string; command: { name: string; args: unknown } };
    assert.equal(first.message, "WRONGPASS invalid username-password pair or user is disabled.");
    assert.deepEqual(first.command, { name: "hello", args: "[redacted]" });
  });
});
