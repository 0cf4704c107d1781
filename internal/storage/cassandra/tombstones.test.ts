import assert from "node:assert/strict";
import type cassandra from "cassandra-driver";
import { scratchCassandra } from "../../../test/support/cassandra.js";
import { NO_PLACE } from "../../model/types.js";
import { uniqueId } from "../contract/helpers.js";
import { CassandraChannelStore } from "./index.js";

/**
 * The tombstones a read of a partition meets, as the engine counts them in its
 * trace ("Read n live rows and m tombstone cells"): what slows a partition's
 * reads down, and past 1,000 is logged, past 100,000 refused.
 */
async function tombstonesRead(client: cassandra.Client, query: string, params: unknown[]): Promise<number> {
  const rs = await client.execute(query, params, { prepare: true, traceQuery: true });
  const trace = await client.metadata.getTrace(rs.info.traceId);
  let n = 0;
  for (const e of trace.events) {
    const m = /Read \d+ live rows? and (\d+) tombstone/.exec(e.activity);
    if (m) n += Number(m[1]);
  }
  return n;
}

describe("cassandra: tombstones a path writes", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();
  const T = 1_767_225_600_000;

  it("a user out of channels they never muted or placed leaves no tombstone in their mutes or places; those they had go", async () => {
    const st = storage();
    const channels = new CassandraChannelStore(st.db, st.messages);
    const u = uniqueId();
    const [muted, placed] = [uniqueId(), uniqueId()];
    await channels.setMute(u, muted, T + 3_600_000);
    await channels.changePlace(u, placed, { pinnedAtMs: T });
    // Forgotten as a leave forgets them (api forgetOwnSettings): a mute and a place cleared whole.
    for (let i = 0; i < 5; i++) {
      const c = uniqueId();
      await Promise.all([channels.setMute(u, c, undefined), channels.changePlace(u, c, NO_PLACE)]);
    }
    assert.equal(await tombstonesRead(st.client, `SELECT channel_id FROM ${st.db.t("channel_mutes")} WHERE user_id = ?`, [u]), 0);
    assert.equal(await tombstonesRead(st.client, `SELECT channel_id FROM ${st.db.t("channel_places")} WHERE user_id = ?`, [u]), 0);
    assert.deepStrictEqual(await channels.listMutes(u), new Map([[muted, T + 3_600_000]]));
    assert.deepStrictEqual(await channels.listPlaces(u), new Map([[placed, { pinnedAtMs: T }]]));

    await Promise.all([channels.setMute(u, muted, undefined), channels.changePlace(u, muted, NO_PLACE)]);
    await Promise.all([channels.setMute(u, placed, undefined), channels.changePlace(u, placed, NO_PLACE)]);
    assert.deepStrictEqual(await channels.listMutes(u), new Map());
    assert.deepStrictEqual(await channels.listPlaces(u), new Map());
  });
});
