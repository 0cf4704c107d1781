import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { createLogger } from "../observability/logger.js";
import { editDistance, unknownVariables, warnUnknownVariables } from "./unknown.js";

const KNOWN = new Set(["CHAT_KAFKA_BROKERS", "CHAT_KAFKA_PARTITIONS", "CHAT_TLS_CERT", "CHAT_TLS_KEY", "CHAT_PRESENCE_SWEEP_MS", "CHAT_HOST", "CHAT_GRPC_PORT"]);

describe("unknown CHAT_* variables", () => {
  it("measures edits, a swap of two neighbours counting one, and stops past the limit", () => {
    assert.equal(editDistance("CHAT_HOST", "CHAT_HOST", 2), 0);
    assert.equal(editDistance("CHAT_KAFKA_BROKER", "CHAT_KAFKA_BROKERS", 2), 1);
    assert.equal(editDistance("CHAT_GPRC_PORT", "CHAT_GRPC_PORT", 2), 1);
    assert.equal(editDistance("CHAT_TSL_KYE", "CHAT_TLS_KEY", 2), 2);
    assert.equal(editDistance("CHAT_HOST", "CHAT_TLS_CERT", 2), 3);
    assert.equal(editDistance("CHAT_A", "CHAT_ABCDEFG", 2), 3);
  });

  it("finds the CHAT_* names nothing reads, each with the known name it is closest to", () => {
    const env = {
      CHAT_KAFKA_BROKER: "k:9092",
      CHAT_GPRC_PORT: "1",
      CHAT_TLS_CERT_FILE: "/x.pem",
      CHAT_PRESENCE_SWEEP: "5",
      CHAT_SOMETHING_ELSE: "1",
      CHAT_HOST: "0.0.0.0",
      CHAT_KAFKA_PARTITIONS: "3",
      PATH: "/bin",
      chat_host: "lower case is another variable",
    };
    assert.deepEqual(unknownVariables(env, KNOWN), [
      { name: "CHAT_GPRC_PORT", closest: "CHAT_GRPC_PORT" },
      { name: "CHAT_KAFKA_BROKER", closest: "CHAT_KAFKA_BROKERS" },
      { name: "CHAT_PRESENCE_SWEEP", closest: "CHAT_PRESENCE_SWEEP_MS" },
      { name: "CHAT_SOMETHING_ELSE" },
      { name: "CHAT_TLS_CERT_FILE", closest: "CHAT_TLS_CERT" },
    ]);
  });

  it("gives no hint from a prefix as short as CHAT_ and a letter or two", () => {
    assert.deepEqual(unknownVariables({ CHAT_T: "1", CHAT_TL: "1" }, KNOWN), [{ name: "CHAT_T" }, { name: "CHAT_TL" }]);
  });

  it("logs one structured warning naming them all, and nothing when every name is known", () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
        done();
      },
    });
    const logger = createLogger("test", "info", sink);
    warnUnknownVariables(logger, { CHAT_HOST: "x" }, KNOWN);
    assert.equal(lines.length, 0);
    warnUnknownVariables(logger, { CHAT_KAFKA_BROKER: "x", CHAT_ZZZ: "y" }, KNOWN);
    assert.equal(lines.length, 1);
    assert.equal(lines[0].level, 40);
    assert.deepEqual(lines[0].unknownVariables, [{ name: "CHAT_KAFKA_BROKER", closest: "CHAT_KAFKA_BROKERS" }, { name: "CHAT_ZZZ" }]);
    assert.match(String(lines[0].msg), /CHAT_KAFKA_BROKER \(did you mean CHAT_KAFKA_BROKERS\?\), CHAT_ZZZ/);
    assert.ok(!String(lines[0].msg).includes("k:9092") && !JSON.stringify(lines[0]).includes('"x"'), "values stay out: one may be a secret");
  });
});
