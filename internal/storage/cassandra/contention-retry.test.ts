import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import cassandra from "cassandra-driver";
import { RETRY_AFTER_HEADER, toConnectError } from "../../api/errors.js";
import { CONTENDED_RETRY_AFTER_MS } from "../../model/errors.js";
import { CassandraChannelStore } from "./channel-store.js";
import { Db, type Client } from "./session.js";

/** A row as the driver gives it: `get` by column, null for a column it lacks. */
const row = (cells: Record<string, unknown>) => ({ get: (c: string) => cells[c] ?? null });
const result = (rows: ReturnType<typeof row>[]) => ({ rows, first: () => rows[0] ?? null, pageState: null });

/**
 * A channel store over a Cassandra in which every compare-and-set of the
 * test's loses to another writer (`lost`), every other write applies, and
 * reads answer `reads`: contention without a cluster, as many rounds as the store tries.
 */
function contended(lost: RegExp, reads: (query: string) => Record<string, unknown>[], opts: { claimTimesOut?: boolean } = {}) {
  const answer = (query: string) => {
    if (lost.test(query)) return result([row({ "[applied]": false, holder: "another change", cleared_seq: 1n })]);
    if (/\sIF\s/.test(query)) return result([row({ "[applied]": true })]);
    return result(/^\s*SELECT/.test(query) ? reads(query).map(row) : []);
  };
  const client = {
    options: { encoding: { useBigIntAsLong: true } },
    execute: async (query: string) => {
      // The pair's claim lost in Paxos's contention: it timed out, and the serial read finds no one's applied.
      if (opts.claimTimesOut && /direct_channels.*IF NOT EXISTS/.test(query)) throw new cassandra.errors.OperationTimedOutError("timed out", "127.0.0.1:9042");
      return answer(query);
    },
    batch: async (statements: { query: string }[]) => answer(statements[0]!.query),
  };
  const log = { latest: async (ids: readonly bigint[]) => new Map(ids.map((id) => [id, { seq: 10n }])) };
  return new CassandraChannelStore(new Db(client as unknown as Client, "ks"), log as never, 0.05);
}

/** Group 7 of owner 1: its state (the read with the version) and the owner's member row. */
const group = (query: string) =>
  /\bversion\b/.test(query)
    ? [{ kind: "group", title: "old", version: 3n, member_count: 1, user_id: 1n, role: "owner", join_order: 1n }]
    : [{ user_id: 1n, role: "owner", read_seq: 5n, cleared_seq: 1n }];

describe("channel store (Cassandra): a change that keeps losing to others carries a short retry time", () => {
  const cases: [string, RegExp, () => Promise<unknown>][] = [
    ["a membership or title change, its version always taken", /membership stayed contended/, () => contended(/ks\.channels SET version/, group).updateTitle(7n, "new")],
    ["a history's clear, the cleared position always moved", /kept racing/, () => contended(/SET cleared_seq/, group).clearHistory(7n, 1n, 5n)],
    ["a change waiting for the group's turn, held by another change", /held it too long/, () => contended(/channel_turns.*IF NOT EXISTS/, group).changeInTurn(7n, async () => "done")],
    ["a direct chat whose claim timed out, nobody's landed", /could not open the direct chat/, () => contended(/^$/, () => [], { claimTimesOut: true }).getOrCreateDirect(
      { channelId: 70n, kind: "direct", title: "", createdAtMs: 1, createdBy: 1n }, 1n, 2n)],
  ];
  for (const [what, message, run] of cases) {
    // Refused UNAVAILABLE with no retry time: the api answered no chat-retry-after-ms, a session's Error frame a retry of 0.
    it(`${what}: UNAVAILABLE with a retry of ${CONTENDED_RETRY_AFTER_MS} ms`, async () => {
      const e = await run().then((r) => assert.fail(`not refused: ${String(r)}`), (x: unknown) => x);
      assert.equal((e as { code?: string }).code, "unavailable", String(e));
      assert.match((e as Error).message, message);
      const rpc = toConnectError(e);
      assert.equal(rpc.code, Code.Unavailable);
      assert.equal(rpc.metadata.get(RETRY_AFTER_HEADER), String(CONTENDED_RETRY_AFTER_MS));
    });
  }
});
