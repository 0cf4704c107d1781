import type { Id } from "../../model/types.js";
import type { PushEndpoint, PushEndpointStore, PushKind, PushSettings, RemovalExpectation } from "../../push/port.js";
import { big, ms, msCell, type Db, type Row } from "./session.js";

const COLUMNS = "user_id, device_id, kind, address, p256dh, auth, apns_topic, hide_preview, muted, updated_at_ms";
/** What a read returns: the columns a registration writes, and the failing streak. */
const READ = `${COLUMNS}, failing_since_ms, failed_sends`;

const toEndpoint = (r: Row): PushEndpoint => ({
  userId: big(r.get("user_id")),
  deviceId: big(r.get("device_id")),
  kind: r.get("kind") as PushKind,
  address: r.get("address") as string,
  p256dh: (r.get("p256dh") as string | null) ?? "",
  auth: (r.get("auth") as string | null) ?? "",
  apnsTopic: (r.get("apns_topic") as string | null) ?? "",
  hidePreview: r.get("hide_preview") === true,
  muted: r.get("muted") === true,
  updatedAtMs: ms(r.get("updated_at_ms")),
  ...(r.get("failing_since_ms") !== null && r.get("failing_since_ms") !== undefined && {
    failingSinceMs: ms(r.get("failing_since_ms")),
    // Marked failing by a build before failed_sends: one failure at least.
    failedSends: r.get("failed_sends") === null || r.get("failed_sends") === undefined ? 1 : Number(r.get("failed_sends")),
  }),
});

/** How often put() retries a compare-and-set that lost a race before giving up. */
const MAX_ROUNDS = 8;

/**
 * PushEndpointStore on Cassandra (distributed mode: written by the api, read
 * and pruned by the notifier).
 *
 * Tables (internal/storage/cassandra/schema.ts):
 *   push_endpoints  ((user_id), device_id)  one endpoint per device; a user's
 *                   endpoints are one partition, which the notifier reads.
 *   push_addresses  ((kind, address))       who owns an address: the claim
 *                   that keeps an address on one device only.
 *
 * Every write to push_endpoints is a lightweight transaction (IF EXISTS,
 * IF NOT EXISTS, IF address = ?): registration and the notifier's removal of
 * a dead address race on the same row from different processes, and mixing
 * Paxos writes with plain ones on a row is unsafe (their timestamps come from
 * different clocks). Registrations are rare, so the Paxos rounds cost nothing
 * that matters; the notifier's reads are plain LOCAL_QUORUM.
 *
 * An address moves to the device that registered it last: put() claims the
 * address (compare-and-set on its owner), deletes the previous owner's row
 * only while that row still has the address, writes its own row, then checks
 * that the claim is still its own (a concurrent registration of the same
 * address that claimed after it wins, and this one backs out). Claims left
 * behind by a changed or removed endpoint are harmless: the conditional
 * delete of a row that no longer has the address does nothing.
 */
export class CassandraPushEndpointStore implements PushEndpointStore {
  private readonly q;

  constructor(private readonly db: Db) {
    const t = (n: string) => db.t(n);
    this.q = {
      get: `SELECT ${READ} FROM ${t("push_endpoints")} WHERE user_id = ? AND device_id = ?`,
      list: `SELECT ${READ} FROM ${t("push_endpoints")} WHERE user_id = ?`,
      update: `UPDATE ${t("push_endpoints")} SET kind = ?, address = ?, p256dh = ?, auth = ?, apns_topic = ?,
               hide_preview = ?, muted = ?, updated_at_ms = ?, failing_since_ms = null, failed_sends = null WHERE user_id = ? AND device_id = ? IF EXISTS`,
      insert: `INSERT INTO ${t("push_endpoints")} (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS`,
      remove: `DELETE FROM ${t("push_endpoints")} WHERE user_id = ? AND device_id = ? IF EXISTS`,
      removeIf: `DELETE FROM ${t("push_endpoints")} WHERE user_id = ? AND device_id = ? IF address = ?`,
      removeIfFailing: `DELETE FROM ${t("push_endpoints")} WHERE user_id = ? AND device_id = ? IF address = ? AND failing_since_ms = ?`,
      // The registration a send found gone, and no newer one of the same address (RemovalExpectation).
      removeIfRegistration: `DELETE FROM ${t("push_endpoints")} WHERE user_id = ? AND device_id = ? IF address = ? AND updated_at_ms = ?`,
      removeIfRegistrationFailing: `DELETE FROM ${t("push_endpoints")} WHERE user_id = ? AND device_id = ?
                                    IF address = ? AND updated_at_ms = ? AND failing_since_ms = ?`,
      removeIfKindAddress: `DELETE FROM ${t("push_endpoints")} WHERE user_id = ? AND device_id = ? IF kind = ? AND address = ?`,
      settings: `UPDATE ${t("push_endpoints")} SET hide_preview = ?, muted = ?, updated_at_ms = ?
                 WHERE user_id = ? AND device_id = ? IF EXISTS`,
      // The first failure only (a missing row's address is null: none made); compare-and-set, as every write of the row.
      markFailing: `UPDATE ${t("push_endpoints")} SET failing_since_ms = ?, failed_sends = 1 WHERE user_id = ? AND device_id = ?
                    IF address = ? AND failing_since_ms = null`,
      // A later failure of the same streak (the one read): a count, compare-and-set on the streak.
      countFailing: `UPDATE ${t("push_endpoints")} SET failed_sends = ? WHERE user_id = ? AND device_id = ?
                     IF address = ? AND failing_since_ms = ?`,
      clearFailing: `UPDATE ${t("push_endpoints")} SET failing_since_ms = null, failed_sends = null WHERE user_id = ? AND device_id = ? IF address = ?`,
      claim: `INSERT INTO ${t("push_addresses")} (kind, address, user_id, device_id) VALUES (?, ?, ?, ?) IF NOT EXISTS`,
      takeOver: `UPDATE ${t("push_addresses")} SET user_id = ?, device_id = ? WHERE kind = ? AND address = ?
                 IF user_id = ? AND device_id = ?`,
      owner: `SELECT user_id, device_id FROM ${t("push_addresses")} WHERE kind = ? AND address = ?`,
      release: `DELETE FROM ${t("push_addresses")} WHERE kind = ? AND address = ? IF user_id = ? AND device_id = ?`,
    };
  }

  async put(e: PushEndpoint): Promise<void> {
    const previous = await this.get(e.userId, e.deviceId);
    // 1. Claim the address; the previous owner (another device) loses its row.
    const owner = await this.claim(e.kind, e.address, e.userId, e.deviceId);
    if (owner && !(owner.userId === e.userId && owner.deviceId === e.deviceId)) {
      await this.db.lwt(this.q.removeIfKindAddress, [owner.userId, owner.deviceId, e.kind, e.address]);
    }
    // 2. Write this device's row (update if it exists, else insert; loop on a lost race).
    const values = [e.kind, e.address, e.p256dh, e.auth, e.apnsTopic, e.hidePreview, e.muted, msCell(e.updatedAtMs)];
    let written = false;
    for (let round = 0; round < MAX_ROUNDS && !written; round++) {
      written = (await this.db.lwt(this.q.update, [...values, e.userId, e.deviceId])).applied;
      if (!written) {
        written = (await this.db.lwt(this.q.insert, [e.userId, e.deviceId, ...values])).applied;
      }
    }
    if (!written) throw new Error("push endpoint registration kept losing races; try again");
    // 3. A registration of the same address that claimed after us wins: back out.
    const now = await this.db.serialOne(this.q.owner, [e.kind, e.address]);
    if (now && !(big(now.get("user_id")) === e.userId && big(now.get("device_id")) === e.deviceId)) {
      await this.db.lwt(this.q.removeIfKindAddress, [e.userId, e.deviceId, e.kind, e.address]);
      return;
    }
    // The old address of this device is no longer its own (best effort: a stale claim is harmless).
    if (previous && (previous.kind !== e.kind || previous.address !== e.address)) {
      await this.release(previous);
    }
  }

  async get(userId: Id, deviceId: Id): Promise<PushEndpoint | undefined> {
    const r = await this.db.one(this.q.get, [userId, deviceId]);
    return r ? toEndpoint(r) : undefined;
  }

  async listForUser(userId: Id): Promise<PushEndpoint[]> {
    // Clustered by device_id: already in device order.
    return (await this.db.rows(this.q.list, [userId])).map(toEndpoint);
  }

  async remove(userId: Id, deviceId: Id): Promise<boolean> {
    const current = await this.get(userId, deviceId);
    const { applied } = await this.db.lwt(this.q.remove, [userId, deviceId]);
    if (applied && current) await this.release(current);
    return applied;
  }

  async removeIfAddress(userId: Id, deviceId: Id, address: string, expect: RemovalExpectation = {}): Promise<boolean> {
    const { updatedAtMs, failingSinceMs } = expect;
    const current = await this.get(userId, deviceId);
    if (!current || current.address !== address) return false;
    if (updatedAtMs !== undefined && current.updatedAtMs !== updatedAtMs) return false;
    if (failingSinceMs !== undefined && current.failingSinceMs !== failingSinceMs) return false;
    // The read above only spares a Paxos round; the condition is the compare-and-set.
    const { applied } =
      updatedAtMs === undefined
        ? failingSinceMs === undefined
          ? await this.db.lwt(this.q.removeIf, [userId, deviceId, address])
          : await this.db.lwt(this.q.removeIfFailing, [userId, deviceId, address, msCell(failingSinceMs)])
        : failingSinceMs === undefined
          ? await this.db.lwt(this.q.removeIfRegistration, [userId, deviceId, address, msCell(updatedAtMs)])
          : await this.db.lwt(this.q.removeIfRegistrationFailing, [userId, deviceId, address, msCell(updatedAtMs), msCell(failingSinceMs)]);
    if (applied) await this.release(current);
    return applied;
  }

  async markFailing(userId: Id, deviceId: Id, address: string, atMs: number): Promise<void> {
    if ((await this.db.lwt(this.q.markFailing, [msCell(atMs), userId, deviceId, address])).applied) return;
    // Already failing: one more, read then written (an LWT cannot add to an int). Two failures
    // counted at once may both read n and write n + 1: a lost increment, accepted, as it only
    // puts a removal off by one more failed send. The condition on the streak keeps a count
    // from landing in a streak a delivery or a registration started since the read.
    const current = await this.get(userId, deviceId);
    if (!current || current.address !== address || current.failingSinceMs === undefined) return;
    await this.db.lwt(this.q.countFailing, [(current.failedSends ?? 1) + 1, userId, deviceId, address, msCell(current.failingSinceMs)]);
  }

  async clearFailing(userId: Id, deviceId: Id, address: string): Promise<void> {
    await this.db.lwt(this.q.clearFailing, [userId, deviceId, address]);
  }

  async updateSettings(userId: Id, deviceId: Id, settings: PushSettings, atMs: number): Promise<boolean> {
    const r = await this.db.lwt(this.q.settings, [settings.hidePreview, settings.muted, msCell(atMs), userId, deviceId]);
    return r.applied;
  }

  /** Makes (userId, deviceId) the owner of the address; returns the owner before, if any. */
  private async claim(kind: PushKind, address: string, userId: Id, deviceId: Id): Promise<{ userId: Id; deviceId: Id } | undefined> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const first = await this.db.lwt(this.q.claim, [kind, address, userId, deviceId]);
      if (first.applied) return undefined;
      const before = { userId: big(first.row.get("user_id")), deviceId: big(first.row.get("device_id")) };
      if (before.userId === userId && before.deviceId === deviceId) return before;
      const taken = await this.db.lwt(this.q.takeOver, [userId, deviceId, kind, address, before.userId, before.deviceId]);
      if (taken.applied) return before;
      // The owner changed (or the claim was released) under us: look again.
    }
    throw new Error("push address claim kept losing races; try again");
  }

  private async release(e: Pick<PushEndpoint, "kind" | "address" | "userId" | "deviceId">): Promise<void> {
    await this.db.lwt(this.q.release, [e.kind, e.address, e.userId, e.deviceId]).catch(() => undefined);
  }
}
