import assert from "node:assert/strict";
import { createRequire } from "node:module";
import kafkajs from "kafkajs";
import { pino } from "pino";
import { OwnKafka } from "../../test/support/own-kafka.js";
import { freePort } from "../../test/support/ports.js";
import { waitFor } from "../../test/support/wait.js";
import { KafkaQueue } from "./kafka.js";
import { pinoLogCreator } from "./kafkajs-log.js";

const { errorCodes } = createRequire(import.meta.url)("kafkajs/src/protocol/error.js") as { errorCodes: { type: string; message: string }[] };
/** The message kafkajs gives an error response of this type (all its Connection log says of it). */
const said = (type: string) => errorCodes.find((e) => e.type === type)!.message;

/** A pino logger at debug that keeps its lines parsed. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  return { lines, logger: pino({ level: "debug" }, { write: (l: string) => void lines.push(JSON.parse(l)) }) };
}

describe("kafkajs logs in pino", () => {
  /** The pino level and message each kafkajs entry comes out at. */
  function logged(entries: { namespace: string; level?: number; log: Record<string, unknown> }[]): [number, string][] {
    const { lines, logger } = capture();
    const log = pinoLogCreator(logger)();
    for (const e of entries) log({ level: ERROR, ...e, label: "", log: { timestamp: "", message: "", ...e.log } as kafkajs.LogEntry["log"] });
    return lines.map((r) => [r.level as number, r.msg as string]);
  }
  const { ERROR, WARN } = kafkajs.logLevel;
  const response = (api: string, type: string) => ({ namespace: "Connection", log: { message: `Response ${api}(key: 0, version: 0)`, error: said(type) } });

  it("sends to debug the passing errors every start meets: coordinators loading, an offsets topic being made, leaders not elected yet, a group forming, a lost race to create topics", () => {
    // What a pipeline or notifier started beside a Kafka just up logged at error level, several times.
    const start = [
      response("InitProducerId", "GROUP_LOAD_IN_PROGRESS"),
      response("GroupCoordinator", "GROUP_COORDINATOR_NOT_AVAILABLE"),
      response("OffsetFetch", "NOT_COORDINATOR_FOR_GROUP"),
      response("Metadata", "LEADER_NOT_AVAILABLE"),
      response("ListOffsets", "NOT_LEADER_FOR_PARTITION"),
      response("Metadata", "UNKNOWN_TOPIC_OR_PARTITION"),
      response("Heartbeat", "REBALANCE_IN_PROGRESS"),
      { namespace: "Connection", log: { message: "Response CreateTopics(key: 19, version: 3)", error: "Topic creation errors" } },
      { namespace: "Producer", log: { message: `Failed to send messages: ${said("LEADER_NOT_AVAILABLE")}`, retryCount: 0 } },
    ];
    assert.deepEqual(
      logged(start).map(([level]) => level),
      start.map(() => 20),
    );
  });

  it("sends to warn the other errors kafkajs retries or mends by rejoining", () => {
    const passing = [
      response("Produce", "NOT_ENOUGH_REPLICAS"),
      response("Fetch", "REQUEST_TIMED_OUT"),
      response("OffsetCommit", "ILLEGAL_GENERATION"),
      { namespace: "Runner", log: { message: "The coordinator is not aware of this member, re-joining the group", error: said("UNKNOWN_MEMBER_ID") } },
      { namespace: "Producer", log: { message: `Failed to send messages: ${said("NETWORK_EXCEPTION")}`, retryCount: 1 } },
      { namespace: "Cluster", log: { message: "x", error: { name: "KafkaJSProtocolError", type: "REQUEST_TIMED_OUT", retriable: true } } },
    ];
    assert.deepEqual(
      logged(passing).map(([level]) => level),
      passing.map(() => 40),
    );
  });

  it("keeps at error what no retry mends, a consumer's crash, a broker not answering, and errors it does not know; other levels as they are", () => {
    const lasting = [
      response("JoinGroup", "GROUP_AUTHORIZATION_FAILED"),
      response("Metadata", "TOPIC_AUTHORIZATION_FAILED"),
      { namespace: "Connection", log: { message: "Response Produce(key: 0, version: 7)", error: "something kafkajs has no code for" } },
      { namespace: "SaslAuthenticator-PLAIN", log: { message: "SASL PLAIN authentication failed: SASL Authentication failed" } },
      // A crash reports a passing error that lasted past the retries: it is the error that lasted.
      { namespace: "Consumer", log: { message: "Crash: KafkaJSNumberOfRetriesExceeded: x", error: said("NOT_LEADER_FOR_PARTITION") } },
      { namespace: "Consumer", log: { message: "x", error: { name: "KafkaJSProtocolError", type: "REQUEST_TIMED_OUT", retriable: true } } },
      { namespace: "Connection", log: { message: "Connection error: connect ECONNREFUSED 127.0.0.1:1" } },
      { namespace: "BrokerPool", log: { message: "Failed to connect to seed broker, trying another broker from the list: Connection error", retryCount: 7 } },
      { namespace: "BrokerPool", log: { message: new Error("Not authorized") as unknown as string } },
      { namespace: "ConsumerGroup", log: { message: "Offset out of range, resetting to default offset" } },
    ];
    assert.deepEqual(
      logged(lasting).map(([level]) => level),
      lasting.map(() => 50),
    );
    assert.deepEqual(logged([{ namespace: "Runner", level: WARN, log: { message: "The group is rebalancing, re-joining", error: said("REBALANCE_IN_PROGRESS") } }]), [
      [40, "The group is rebalancing, re-joining"],
    ]);
  });

  describe("from a real client", function () {
    this.timeout(120_000);

    it("logs nothing at error while groups join topics just created on a Kafka just started, and says what it waited out at debug", async () => {
      const kafka = new OwnKafka();
      const { lines, logger } = capture();
      let queue: KafkaQueue | undefined;
      const subs: { stop(): Promise<void> }[] = [];
      try {
        await kafka.start();
        // As the processes make it: kafkajs at its default level, its lines below in pino.
        queue = new KafkaQueue({ brokers: kafka.brokers, clientId: "log-test", logger });
        await queue.connect();
        await queue.ensureTopics([{ topic: "events", partitions: 4 }]);
        const got: unknown[] = [];
        for (const group of ["pipeline", "notifier"]) {
          for (let i = 0; i < 2; i++) subs.push(await queue.subscribe(group, "events", async (batch) => void got.push(...batch)));
        }
        await queue.publish("events", [{ key: "k", value: new TextEncoder().encode("v") }]);
        await waitFor(() => got.length >= 2, "both groups to consume the record", 60_000);
      } finally {
        await Promise.all(subs.map((s) => s.stop()));
        await queue?.close();
        await kafka.stop();
      }
      const kafkajsLines = lines.filter((l) => l.component === "kafkajs");
      const errors = kafkajsLines.filter((l) => (l.level as number) >= 50);
      assert.deepEqual(errors, [], "kafkajs logged at error level");
      // The start did meet the passing errors (the test would prove nothing otherwise).
      const waitedOut = kafkajsLines.filter((l) => l.level === 20 && [said("GROUP_COORDINATOR_NOT_AVAILABLE"), said("GROUP_LOAD_IN_PROGRESS")].includes(l.error as string));
      assert.ok(waitedOut.length > 0, `no coordinator start-up answer seen: ${JSON.stringify(kafkajsLines.map((l) => [l.level, l.msg, l.error]))}`);
    });

    it("still logs at error when no broker answers", async () => {
      const { lines, logger } = capture();
      const dead = new KafkaQueue({ brokers: [`127.0.0.1:${await freePort()}`], logger, retry: { retries: 1, initialRetryTime: 50 } });
      await assert.rejects(dead.connect(), /cannot connect to Kafka/);
      await dead.close();
      const errors = lines.filter((l) => l.component === "kafkajs" && l.level === 50).map((l) => l.msg);
      assert.ok(errors.some((m) => /ECONNREFUSED/.test(String(m))), `no error-level line on the refused connection: ${JSON.stringify(errors)}`);
    });
  });
});
