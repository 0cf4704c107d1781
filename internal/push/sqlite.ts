import type { Id } from "../model/types.js";
import { prepare, type SqliteDatabase } from "../storage/sqlite/database.js";
import type { PushEndpoint, PushEndpointStore, PushKind, PushSettings, RemovalExpectation } from "./port.js";

type Row = Record<string, unknown>;

const toEndpoint = (r: Row): PushEndpoint => ({
  userId: r.user_id as bigint,
  deviceId: r.device_id as bigint,
  kind: r.kind as PushKind,
  address: r.address as string,
  p256dh: r.p256dh as string,
  auth: r.auth as string,
  apnsTopic: r.apns_topic as string,
  hidePreview: r.hide_preview === 1n,
  muted: r.muted === 1n,
  updatedAtMs: Number(r.updated_at_ms),
  ...(r.failing_since_ms !== null && r.failing_since_ms !== undefined && {
    failingSinceMs: Number(r.failing_since_ms),
    // Marked failing before migration 23: one failure at least.
    failedSends: r.failed_sends === null || r.failed_sends === undefined ? 1 : Number(r.failed_sends),
  }),
});

/** PushEndpointStore on the shared SQLite database (table from schema version 2). */
export class SqlitePushEndpointStore implements PushEndpointStore {
  private readonly s;
  private readonly putTx;

  constructor(db: SqliteDatabase) {
    const p = (sql: string) => prepare(db, sql);
    this.s = {
      freeAddress: p("DELETE FROM push_endpoints WHERE kind = ? AND address = ? AND NOT (user_id = ? AND device_id = ?)"),
      upsert: p(`INSERT INTO push_endpoints (user_id, device_id, kind, address, p256dh, auth, apns_topic, hide_preview, muted, updated_at_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (user_id, device_id) DO UPDATE SET kind = excluded.kind, address = excluded.address,
                   p256dh = excluded.p256dh, auth = excluded.auth, apns_topic = excluded.apns_topic,
                   hide_preview = excluded.hide_preview, muted = excluded.muted, updated_at_ms = excluded.updated_at_ms,
                   failing_since_ms = NULL, failed_sends = NULL`),
      get: p("SELECT * FROM push_endpoints WHERE user_id = ? AND device_id = ?"),
      list: p("SELECT * FROM push_endpoints WHERE user_id = ? ORDER BY device_id"),
      remove: p("DELETE FROM push_endpoints WHERE user_id = ? AND device_id = ?"),
      // A condition left null is not asked (RemovalExpectation).
      removeIf: p(`DELETE FROM push_endpoints WHERE user_id = ? AND device_id = ? AND address = ?
                   AND (? IS NULL OR updated_at_ms = ?) AND (? IS NULL OR failing_since_ms = ?)`),
      settings: p("UPDATE push_endpoints SET hide_preview = ?, muted = ?, updated_at_ms = ? WHERE user_id = ? AND device_id = ?"),
      // The first failure starts the streak; each counts (the right-hand sides read the row before).
      markFailing: p(`UPDATE push_endpoints SET failing_since_ms = COALESCE(failing_since_ms, ?),
                        failed_sends = CASE WHEN failing_since_ms IS NULL THEN 1 ELSE COALESCE(failed_sends, 1) + 1 END
                      WHERE user_id = ? AND device_id = ? AND address = ?`),
      clearFailing: p("UPDATE push_endpoints SET failing_since_ms = NULL, failed_sends = NULL WHERE user_id = ? AND device_id = ? AND address = ?"),
    };
    this.putTx = db.transaction((e: PushEndpoint) => {
      this.s.freeAddress.run(e.kind, e.address, e.userId, e.deviceId);
      this.s.upsert.run(e.userId, e.deviceId, e.kind, e.address, e.p256dh, e.auth, e.apnsTopic, e.hidePreview ? 1 : 0, e.muted ? 1 : 0, e.updatedAtMs);
    });
  }

  async put(endpoint: PushEndpoint): Promise<void> {
    this.putTx.immediate(endpoint);
  }

  async get(userId: Id, deviceId: Id): Promise<PushEndpoint | undefined> {
    const r = this.s.get.get(userId, deviceId) as Row | undefined;
    return r ? toEndpoint(r) : undefined;
  }

  async listForUser(userId: Id): Promise<PushEndpoint[]> {
    return (this.s.list.all(userId) as Row[]).map(toEndpoint);
  }

  async remove(userId: Id, deviceId: Id): Promise<boolean> {
    return this.s.remove.run(userId, deviceId).changes > 0;
  }

  async removeIfAddress(userId: Id, deviceId: Id, address: string, expect: RemovalExpectation = {}): Promise<boolean> {
    const updated = expect.updatedAtMs ?? null;
    const failing = expect.failingSinceMs ?? null;
    return this.s.removeIf.run(userId, deviceId, address, updated, updated, failing, failing).changes > 0;
  }

  async markFailing(userId: Id, deviceId: Id, address: string, atMs: number): Promise<void> {
    this.s.markFailing.run(atMs, userId, deviceId, address);
  }

  async clearFailing(userId: Id, deviceId: Id, address: string): Promise<void> {
    this.s.clearFailing.run(userId, deviceId, address);
  }

  async updateSettings(userId: Id, deviceId: Id, settings: PushSettings, atMs: number): Promise<boolean> {
    return this.s.settings.run(settings.hidePreview ? 1 : 0, settings.muted ? 1 : 0, atMs, userId, deviceId).changes > 0;
  }
}
