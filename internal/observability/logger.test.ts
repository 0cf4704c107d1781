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

  it("redacts the refresh tokens, new passwords, search words and push keys of a request logged whole, down to a frame's message", () => {
    const { logger, lines } = capture();
    logger.info({ request: { refreshToken: "rt-1" } }, "refresh");
    logger.info({ request: { currentPassword: "old-pw", newPassword: "new-pw" } }, "change password");
    logger.info({ request: { channelId: "7", query: "secret words" } }, "search");
    logger.info({ request: { endpoint: { case: "webPush", value: { p256dh: "key-1", auth: "auth-1" } } } }, "register");
    logger.info({ request: { endpoint: { case: "fcm", value: { registrationToken: "fcm-1" } } } }, "register");
    logger.info({ credentials: { accessToken: "at-1" } }, "credentials");
    logger.info({ frame: { kind: { case: "message", value: { entry: { message: { text: "deep words" } } } } } }, "frame");
    const out = JSON.stringify(lines);
    for (const secret of ["rt-1", "old-pw", "new-pw", "secret words", "key-1", "auth-1", "fcm-1", "at-1", "deep words"]) assert.ok(!out.includes(secret), `${secret} in ${out}`);
    assert.ok(out.includes('"channelId":"7"'), "the rest stays");
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
