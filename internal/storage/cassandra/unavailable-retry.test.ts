import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import cassandra from "cassandra-driver";
import { ErrorCode } from "../../../gen/es/chat/v1/types_pb.js";
import { RETRY_AFTER_HEADER, toConnectError } from "../../api/errors.js";
import { errorCodeOf } from "../../chatserver/errors.js";
import { ENGINE_RETRY_AFTER_MS } from "../../model/engine-errors.js";
import { Db, StorageUnavailable, type Client } from "./session.js";

/** A Db whose every request the driver fails with `err`: no cluster needed to see how the refusal leaves. */
function failingDb(err: () => Error): Db {
  return new Db({
    options: { encoding: { useBigIntAsLong: true } },
    execute: () => Promise.reject(err()),
    batch: () => Promise.reject(err()),
  } as unknown as Client, "ks");
}

describe("StorageUnavailable: Cassandra's refusal carries the retry time of any engine outage", () => {
  const c = cassandra.types.responseErrorCodes;
  const failures: [string, () => Error][] = [
    ["no host answered", () => new cassandra.errors.NoHostAvailableError({})],
    ["a request timed out", () => new cassandra.errors.OperationTimedOutError("timed out", "127.0.0.1:9042")],
    ["a replica refused (unavailable)", () => new cassandra.errors.ResponseError(c.unavailableException, "not enough replicas")],
    ["a write timed out", () => new cassandra.errors.ResponseError(c.writeTimeout, "write timeout")],
  ];

  for (const [what, err] of failures) {
    it(`${what}: UNAVAILABLE with a retry of ${ENGINE_RETRY_AFTER_MS} ms, on the api and in a session's Error frame`, async () => {
      const e = await failingDb(err).rows("SELECT v FROM ks.t WHERE k = ?", [1]).catch((x: unknown) => x);
      assert.ok(e instanceof StorageUnavailable, String(e));
      // A session's Error frame carries retryAfterMs as the ChatError has it (Session.sendError).
      assert.equal(e.retryAfterMs, ENGINE_RETRY_AFTER_MS);
      assert.equal(errorCodeOf[e.code], ErrorCode.UNAVAILABLE);
      const rpc = toConnectError(e);
      assert.equal(rpc.code, Code.Unavailable);
      // Before, the api's answer had no retry time: an engine's untranslated error got 1 s, Cassandra's none.
      assert.equal(rpc.metadata.get(RETRY_AFTER_HEADER), String(ENGINE_RETRY_AFTER_MS));
    });
  }
});
