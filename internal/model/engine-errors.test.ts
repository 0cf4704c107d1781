import assert from "node:assert/strict";
import cassandra from "cassandra-driver";
import Database from "better-sqlite3";
import { KafkaJSConnectionError, KafkaJSNonRetriableError, KafkaJSNumberOfRetriesExceeded, KafkaJSProtocolError } from "kafkajs";
import { ReplyError } from "ioredis";
import { MaxRetriesPerRequestError } from "ioredis/built/errors/index.js";
import { ChatError } from "./errors.js";
import { engineOutageError, isEngineOutage } from "./engine-errors.js";

const { errors, types } = cassandra;

describe("isEngineOutage: what the engines throw when they do not answer", () => {
  it("takes cassandra-driver's timeouts, unreachable hosts and outage response codes", () => {
    assert.ok(isEngineOutage(new errors.NoHostAvailableError({ "10.0.0.1:9042": new Error("ECONNREFUSED") })));
    assert.ok(isEngineOutage(new errors.OperationTimedOutError("read timed out after 12000 ms", "10.0.0.1:9042")));
    assert.ok(isEngineOutage(new errors.ResponseError(types.responseErrorCodes.writeTimeout, "write timeout")));
    assert.ok(isEngineOutage(new errors.ResponseError(types.responseErrorCodes.readTimeout, "read timeout")));
    assert.ok(isEngineOutage(new errors.ResponseError(types.responseErrorCodes.unavailableException, "not enough replicas")));
    // A bad statement is a bug, asked again it fails again.
    assert.ok(!isEngineOutage(new errors.ResponseError(types.responseErrorCodes.syntaxError, "line 1:0 no viable alternative")));
    assert.ok(!isEngineOutage(new errors.ResponseError(types.responseErrorCodes.invalid, "Undefined column name x")));
  });

  it("takes SQLite's locked, I/O and full-disk errors, not a constraint", () => {
    const db = new Database(":memory:");
    try {
      db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY)");
      db.exec("INSERT INTO t VALUES (1)");
      let constraint: unknown;
      try {
        db.exec("INSERT INTO t VALUES (1)");
      } catch (e) {
        constraint = e;
      }
      assert.ok(!isEngineOutage(constraint));
      const SqliteError = (constraint as Error).constructor as new (message: string, code: string) => Error;
      assert.ok(isEngineOutage(new SqliteError("database is locked", "SQLITE_BUSY")));
      assert.ok(isEngineOutage(new SqliteError("disk I/O error", "SQLITE_IOERR_WRITE")));
      assert.ok(isEngineOutage(new SqliteError("database or disk is full", "SQLITE_FULL")));
    } finally {
      db.close();
    }
  });

  it("takes kafkajs's retriable errors and its retries used up, not a non-retriable one", () => {
    const lost = new KafkaJSConnectionError("Connection error: connect ECONNREFUSED 127.0.0.1:9092");
    assert.ok(isEngineOutage(lost));
    assert.ok(isEngineOutage(new KafkaJSNumberOfRetriesExceeded(lost, { retryCount: 5, retryTime: 3000 })));
    assert.ok(isEngineOutage(new KafkaJSProtocolError(Object.assign(new Error("leader not available"), { type: "LEADER_NOT_AVAILABLE", code: 5, retriable: true }))));
    assert.ok(!isEngineOutage(new KafkaJSNonRetriableError("Invalid topic")));
  });

  it("takes ioredis's connection failures and a Redis that cannot serve now, not a wrong command", () => {
    assert.ok(isEngineOutage(new MaxRetriesPerRequestError(2)));
    assert.ok(isEngineOutage(new Error("Connection is closed.")));
    assert.ok(isEngineOutage(new Error("Command timed out")));
    assert.ok(isEngineOutage(new ReplyError("LOADING Redis is loading the dataset in memory")));
    assert.ok(isEngineOutage(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:6379"), { code: "ECONNREFUSED" })));
    assert.ok(!isEngineOutage(new ReplyError("WRONGTYPE Operation against a key holding the wrong kind of value")));
  });

  it("takes none of a bug's errors, and a wrapped outage by its cause", () => {
    assert.ok(!isEngineOutage(new TypeError("Cannot read properties of undefined (reading 'x')")));
    assert.ok(!isEngineOutage(new Error("internal")));
    assert.ok(!isEngineOutage("ECONNREFUSED"));
    assert.ok(isEngineOutage(new Error("push lookup failed", { cause: new errors.OperationTimedOutError("timed out") })));
  });

  it("answers an outage UNAVAILABLE with a retry time", () => {
    const e = engineOutageError(new errors.NoHostAvailableError({}));
    assert.ok(e instanceof ChatError);
    assert.equal(e.code, "unavailable");
    assert.ok((e.retryAfterMs ?? 0) > 0);
    assert.equal(engineOutageError(new Error("bug")), undefined);
  });
});
