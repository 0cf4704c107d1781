import type { ChannelPlace, Id, PlaceChange } from "../../model/types.js";
import type { ChannelQueries } from "./channel-queries.js";
import { big, ms, msCell, type Db } from "./session.js";

/** The settings of a place and their columns in `channel_places`. */
const PLACE_COLUMNS: readonly (readonly [keyof ChannelPlace, string])[] = [
  ["pinnedAtMs", "pinned_at_ms"],
  ["archivedAtMs", "archived_at_ms"],
  ["markedUnreadAtMs", "marked_unread_at_ms"],
];

/** A user's own settings of each of their channels: mutes (`channel_mutes`) and places (`channel_places`). */
export class UserChannelSettings {
  constructor(
    private readonly db: Db,
    private readonly q: ChannelQueries,
  ) {}

  async setMute(userId: Id, channelId: Id, untilMs: number | undefined): Promise<void> {
    // Plain writes: only the user mutes their own channels, so the last write wins.
    if (untilMs !== undefined) return void (await this.db.write(this.q.putMute, [userId, channelId, msCell(untilMs)]));
    // Deleted only when there: every leave unmutes, and a delete of nothing is still a tombstone,
    // read past by every listMutes of the user's partition. A mute that lands after this read is
    // the later write either way; a leave's own racing mute is forgotten by the mute's membership
    // check after its write (api requireStillMember), which reads it.
    if (await this.db.one(this.q.mute, [userId, channelId])) await this.db.write(this.q.deleteMute, [userId, channelId]);
  }

  async listMutes(userId: Id): Promise<Map<Id, number>> {
    const rows = await this.db.rows(this.q.mutes, [userId]);
    return new Map(rows.map((r) => [big(r.get("channel_id")), ms(r.get("until_ms"))]));
  }

  async changePlace(userId: Id, channelId: Id, change: PlaceChange): Promise<void> {
    // Plain writes, as mutes: only the user places their own channels. An
    // UPDATE of the named columns alone, so another device's change of
    // another setting stays (each cell keeps its newest write); the columns
    // of one change share a write time, so of two changes naming the same
    // settings the later wins whole. Nulls are tombstones, on a row rarely
    // written; an UPDATE writes no row marker, so a row left all null is gone.
    const named = PLACE_COLUMNS.filter(([setting]) => change[setting] !== undefined);
    if (named.length === PLACE_COLUMNS.length && named.every(([setting]) => change[setting] === null)) {
      // Only when there, as a mute's (setMute): every leave clears the place.
      if (await this.db.one(this.q.place, [userId, channelId])) await this.db.write(this.q.deletePlace, [userId, channelId]);
      return;
    }
    if (named.length === 0) return;
    const sets = named.map(([, column]) => `${column} = ?`).join(", ");
    const values = named.map(([setting]) => (change[setting] == null ? null : msCell(change[setting])));
    await this.db.write(`UPDATE ${this.db.t("channel_places")} SET ${sets} WHERE user_id = ? AND channel_id = ?`, [...values, userId, channelId]);
  }

  async listPlaces(userId: Id): Promise<Map<Id, ChannelPlace>> {
    const rows = await this.db.rows(this.q.places, [userId]);
    const places = new Map<Id, ChannelPlace>();
    for (const r of rows) {
      const place: ChannelPlace = {};
      for (const [setting, column] of PLACE_COLUMNS) {
        const at = r.get(column);
        if (at != null) place[setting] = ms(at);
      }
      // A row written whole before changes named their columns keeps its row marker when every setting is cleared.
      if (Object.keys(place).length > 0) places.set(big(r.get("channel_id")), place);
    }
    return places;
  }
}
