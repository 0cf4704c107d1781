import assert from "node:assert/strict";
import kafkajs from "kafkajs";
import { pino } from "pino";
import { pinoLogCreator } from "./kafkajs-log.js";

describe("kafkajs logs in pino", () => {
  /** The pino level and message each kafkajs entry comes out at. */
  function logged(entries: { namespace: string; level: number; log: Record<string, unknown> }[]): [number, string][] {
    const lines: string[] = [];
    const log = pinoLogCreator(pino({ level: "debug" }, { write: (l: string) => void lines.push(l) }))();
    for (const e of entries) log({ ...e, label: "", log: { timestamp: "", message: "", ...e.log } as kafkajs.LogEntry["log"] });
    return lines.map((l) => JSON.parse(l)).map((r) => [r.level, r.msg]);
  }
  const { ERROR, WARN } = kafkajs.logLevel;

  it("sends error responses kafkajs answers itself (a leader not taken over yet, a lost race to create topics, a rebalance) to debug", () => {
    // What a pipeline or notifier started beside the api logged at error level, several times, at every start.
    const notLeader = { message: "Response ListOffsets(key: 2, version: 3)", error: "This server is not the leader for that topic-partition", broker: "127.0.0.1:9092" };
    const noLeader = { message: "Response Metadata(key: 3, version: 6)", error: "There is no leader for this topic-partition as we are in the middle of a leadership election" };
    const lostRace = { message: "Response CreateTopics(key: 19, version: 3)", error: "Topic creation errors" };
    // And every member's heartbeat at each rebalance (a deploy, a scale-out).
    const rebalancing = { message: "Response Heartbeat(key: 12, version: 3)", error: "The group is rebalancing, so a rejoin is needed" };
    assert.deepEqual(logged([notLeader, noLeader, lostRace, rebalancing].map((log) => ({ namespace: "Connection", level: ERROR, log }))), [
      [20, notLeader.message],
      [20, noLeader.message],
      [20, lostRace.message],
      [20, rebalancing.message],
    ]);
  });

  it("keeps other errors at error level, and other levels as they are", () => {
    const denied = { message: "Response JoinGroup(key: 11, version: 5)", error: "Not authorized to access group" };
    const crash = { message: "Crash: KafkaJSNumberOfRetriesExceeded", error: "This server is not the leader for that topic-partition" };
    assert.deepEqual(
      logged([
        { namespace: "Connection", level: ERROR, log: denied },
        { namespace: "Consumer", level: ERROR, log: crash },
        { namespace: "Runner", level: WARN, log: { message: "The group is rebalancing, re-joining" } },
      ]),
      [
        [50, denied.message],
        [50, crash.message],
        [40, "The group is rebalancing, re-joining"],
      ],
    );
  });
});
