import type { Db } from "./session.js";

/**
 * Every statement of CassandraChannelStore and its parts, by name: one set,
 * so that which of them the driver may send again is decided in one place
 * (idempotency.test.ts reads it whole).
 */
export function channelQueries(db: Db) {
  const t = (n: string) => db.t(n);
  const ch = t("channels");
  return {
    channel: `SELECT kind, title, created_at_ms, created_by FROM ${ch} WHERE channel_id = ? LIMIT 1`,
    insertMeta: `INSERT INTO ${ch} (channel_id, kind, title, created_at_ms, created_by, member_count, version)
                   VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS`,
    // A direct chat's candidate, written before its pair is claimed (no
    // Paxos round): at the lowest timestamp, so that every later change of
    // its cells (compare-and-sets, stamped by their ballots, and the
    // deletion of a loser) wins over it whatever the writers' clocks say.
    insertMetaPlain: `INSERT INTO ${ch} (channel_id, kind, title, created_at_ms, created_by, member_count, version)
                        VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP 1`,
    insertMemberPlain: `INSERT INTO ${ch} (channel_id, user_id, role, joined_at_ms, read_seq, join_order, joined_seq)
                          VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP 1`,
    insertMember: `INSERT INTO ${ch} (channel_id, user_id, role, joined_at_ms, read_seq, join_order, joined_seq)
                     VALUES (?, ?, ?, ?, ?, ?, ?)`,
    bump: `UPDATE ${ch} SET version = ?, member_count = ? WHERE channel_id = ? IF version = ?`,
    deleteMember: `DELETE FROM ${ch} WHERE channel_id = ? AND user_id = ?`,
    deleteChannel: `DELETE FROM ${ch} WHERE channel_id = ?`,
    updateTitle: `UPDATE ${ch} SET title = ? WHERE channel_id = ?`,
    member: `SELECT user_id, role, joined_at_ms, read_seq, cleared_seq, joined_seq FROM ${ch} WHERE channel_id = ? AND user_id = ?`,
    memberIn: `SELECT channel_id, user_id, role, joined_at_ms, read_seq, cleared_seq, joined_seq FROM ${ch} WHERE channel_id IN ? AND user_id = ?`,
    members: `SELECT user_id, role, joined_at_ms, read_seq, join_order, cleared_seq, joined_seq FROM ${ch} WHERE channel_id = ?`,
    state: `SELECT user_id, kind, title, version, member_count, invite_code, role, joined_at_ms, read_seq, join_order, cleared_seq, joined_seq
              FROM ${ch} WHERE channel_id = ?`,
    code: `SELECT invite_code FROM ${ch} WHERE channel_id = ? LIMIT 1`,
    setCode: `UPDATE ${ch} SET invite_code = ? WHERE channel_id = ?`,
    // Read apart from `state`: a static column comes back on every member row, and only adds and bars need it.
    barred: `SELECT barred FROM ${ch} WHERE channel_id = ? LIMIT 1`,
    // The removal that bars reads when the others were barred, to lift the oldest past MAX_BARS.
    barredAt: `SELECT barred, barred_at FROM ${ch} WHERE channel_id = ? LIMIT 1`,
    bar: `UPDATE ${ch} SET barred = barred + ?, barred_at[?] = ? WHERE channel_id = ?`,
    liftBar: `UPDATE ${ch} SET barred = barred - ?, barred_at = barred_at - ? WHERE channel_id = ?`,
    count: `SELECT member_count FROM ${ch} WHERE channel_id = ? LIMIT 1`,
    // The static columns, once per partition.
    channelsIn: `SELECT channel_id, kind, title, created_at_ms, created_by, member_count FROM ${ch} WHERE channel_id IN ? PER PARTITION LIMIT 1`,
    membersIn: `SELECT channel_id, user_id, role, joined_at_ms, read_seq, join_order, cleared_seq, joined_seq FROM ${ch} WHERE channel_id IN ?`,
    setRole: `UPDATE ${ch} SET role = ? WHERE channel_id = ? AND user_id = ?`,
    advanceRead: `UPDATE ${ch} SET read_seq = ? WHERE channel_id = ? AND user_id = ? IF read_seq < ?`,
    // read_seq is set on every member row: the condition also refuses to make a row for a non-member.
    clearThrough: `UPDATE ${ch} SET cleared_seq = ? WHERE channel_id = ? AND user_id = ? IF read_seq >= 0 AND cleared_seq = ?`,
    // Conditional: a plain UPDATE of a member gone since would write a row back (an upsert).
    markJoined: `UPDATE ${ch} SET joined_seq = ? WHERE channel_id = ? AND user_id = ? IF joined_seq < ?`,
    // After a batch of markJoined was refused: which joiners are still members behind the note.
    joinPoints: `SELECT user_id, joined_seq FROM ${ch} WHERE channel_id = ? AND user_id IN ?`,
    takeTurn: `INSERT INTO ${t("channel_turns")} (channel_id, holder) VALUES (?, ?) IF NOT EXISTS USING TTL ?`,
    giveTurn: `DELETE FROM ${t("channel_turns")} WHERE channel_id = ? IF holder = ?`,
    keepTurn: `UPDATE ${t("channel_turns")} USING TTL ? SET holder = ? WHERE channel_id = ? IF holder = ?`,
    directOf: `SELECT channel_id FROM ${t("direct_channels")} WHERE user_lo = ? AND user_hi = ?`,
    claimDirect: `INSERT INTO ${t("direct_channels")} (user_lo, user_hi, channel_id) VALUES (?, ?, ?) IF NOT EXISTS`,
    index: `INSERT INTO ${t("user_channels")} (user_id, channel_id) VALUES (?, ?) USING TIMESTAMP ?`,
    unindex: `DELETE FROM ${t("user_channels")} USING TIMESTAMP ? WHERE user_id = ? AND channel_id = ?`,
    memberships: `SELECT channel_id FROM ${t("user_channels")} WHERE user_id = ?`,
    membershipsOf: `SELECT user_id, channel_id FROM ${t("user_channels")} WHERE user_id IN ?`,
    // role: a query of the static kind alone may not name a member.
    kindsAsMember: `SELECT kind, role FROM ${ch} WHERE channel_id IN ? AND user_id = ?`,
    putMute: `INSERT INTO ${t("channel_mutes")} (user_id, channel_id, until_ms) VALUES (?, ?, ?)`,
    deleteMute: `DELETE FROM ${t("channel_mutes")} WHERE user_id = ? AND channel_id = ?`,
    mute: `SELECT until_ms FROM ${t("channel_mutes")} WHERE user_id = ? AND channel_id = ?`,
    mutes: `SELECT channel_id, until_ms FROM ${t("channel_mutes")} WHERE user_id = ?`,
    deletePlace: `DELETE FROM ${t("channel_places")} WHERE user_id = ? AND channel_id = ?`,
    // Any column: a row with a setting, or with the marker of an INSERT (listPlaces), comes back.
    place: `SELECT pinned_at_ms FROM ${t("channel_places")} WHERE user_id = ? AND channel_id = ?`,
    places: `SELECT channel_id, pinned_at_ms, archived_at_ms, marked_unread_at_ms FROM ${t("channel_places")} WHERE user_id = ?`,
    inviteOf: `SELECT code FROM ${t("channel_invites")} WHERE channel_id = ?`,
    putInviteOf: `INSERT INTO ${t("channel_invites")} (channel_id, code) VALUES (?, ?)`,
    dropInviteOf: `DELETE FROM ${t("channel_invites")} WHERE channel_id = ?`,
    putInviteCode: `INSERT INTO ${t("invite_codes")} (code, channel_id) VALUES (?, ?)`,
    dropInviteCode: `DELETE FROM ${t("invite_codes")} WHERE code = ?`,
    channelOfCode: `SELECT channel_id FROM ${t("invite_codes")} WHERE code = ?`,
  };
}

export type ChannelQueries = ReturnType<typeof channelQueries>;
