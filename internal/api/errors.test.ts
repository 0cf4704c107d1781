import assert from "node:assert/strict";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { Code } from "@connectrpc/connect";
import Database from "better-sqlite3";
import type { Logger } from "pino";
import { ERROR_CODE_HEADER, RETRY_AFTER_HEADER, toConnectError, withErrorCodeHeader } from "./errors.js";

/** A gRPC-web frame: flags, big-endian length, payload. */
function frame(flags: number, payload: string | Uint8Array): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload, "latin1") : Buffer.from(payload);
  const out = Buffer.alloc(5 + body.length);
  out[0] = flags;
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
}

async function served(chunks: Uint8Array[], header: Record<string, string> = {}): Promise<{ res: UniversalServerResponse; body: Buffer }> {
  const handler = (async () => ({
    status: 200,
    header: new Headers({ "content-type": "application/grpc-web+proto", ...header }),
    body: (async function* () {
      yield* chunks;
    })(),
  })) as unknown as UniversalHandler;
  const res = await withErrorCodeHeader(handler)({} as Parameters<UniversalHandler>[0]);
  const parts: Uint8Array[] = [];
  for await (const c of res.body as AsyncIterable<Uint8Array>) parts.push(c);
  return { res, body: Buffer.concat(parts) };
}

describe("withErrorCodeHeader on gRPC-web", () => {
  it("adds the chat code to an error's trailer frame, also when frames are split across chunks", async () => {
    const data = frame(0, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
    const trailer = frame(0x80, "grpc-status: 8\r\ngrpc-message: too large\r\n");
    const whole = Buffer.concat([data, trailer]);
    // Split inside the data frame's prefix and inside the trailer.
    const { body } = await served([whole.subarray(0, 3), whole.subarray(3, 20), whole.subarray(20)]);
    assert.deepEqual(body.subarray(0, data.length), data, "data frames pass unchanged");
    const stamped = body.subarray(data.length);
    assert.equal(stamped[0], 0x80);
    assert.equal(stamped.readUInt32BE(1), stamped.length - 5);
    assert.equal(stamped.subarray(5).toString("latin1"), "grpc-status: 8\r\ngrpc-message: too large\r\nchat-error-code: ERROR_CODE_FRAME_TOO_LARGE\r\n");
  });

  it("leaves a success, and a trailer that has its code, as they are", async () => {
    const ok = Buffer.concat([frame(0, "x"), frame(0x80, "grpc-status: 0\r\n")]);
    assert.deepEqual((await served([ok])).body, ok);
    const coded = frame(0x80, "grpc-status: 7\r\nchat-error-code: ERROR_CODE_NOT_A_MEMBER\r\n");
    assert.deepEqual((await served([coded])).body, coded);
  });

  it("sets the header of a trailers-only answer", async () => {
    const { res } = await served([], { "grpc-status": "3" });
    assert.equal(res.header?.get("chat-error-code"), "ERROR_CODE_INVALID_ARGUMENT");
  });
});

describe("toConnectError: an engine that did not answer", () => {
  const SqliteError = Database.SqliteError;
  function logs() {
    const lines: [string, string][] = [];
    const at = (level: string) => (_o: unknown, msg: string) => void lines.push([level, msg]);
    return { lines, logger: { warn: at("warn"), error: at("error"), info: () => {}, debug: () => {} } as unknown as Logger };
  }

  // SQLite's locked file (chatd's api) went out INTERNAL, which a client takes as final, where the session answers UNAVAILABLE.
  it("is UNAVAILABLE with chat-retry-after-ms, as the session answers it", () => {
    const { lines, logger } = logs();
    const e = toConnectError(new SqliteError("database is locked", "SQLITE_BUSY"), logger);
    assert.equal(e.code, Code.Unavailable);
    assert.equal(e.metadata.get(ERROR_CODE_HEADER), "ERROR_CODE_UNAVAILABLE");
    assert.ok(Number(e.metadata.get(RETRY_AFTER_HEADER)) > 0);
    assert.deepStrictEqual(lines.filter(([level]) => level === "error"), []);
  });

  it("is warned of once for an outage's RPCs, not once each", () => {
    const { lines, logger } = logs();
    for (let i = 0; i < 20; i++) toConnectError(new Error("Connection is closed."), logger);
    assert.equal(lines.length, 1);
  });

  it("leaves a bug INTERNAL, logged at error", () => {
    const { lines, logger } = logs();
    const e = toConnectError(new TypeError("x is undefined"), logger);
    assert.equal(e.code, Code.Internal);
    assert.deepStrictEqual(lines, [["error", "unexpected error in rpc"]]);
  });
});
