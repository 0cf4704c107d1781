import type { Id } from "../model/types.js";

/** The push services, one each: also the kinds chat_push_sends_total counts from 0. */
export const PUSH_KINDS = ["web_push", "apns", "fcm"] as const;
/** Which push service an endpoint belongs to. */
export type PushKind = (typeof PUSH_KINDS)[number];

/**
 * The reasons a push service gives for a dead endpoint that can also mean
 * wrong settings of ours (see SendOutcome.goneUnconfirmed): only APNs has
 * such words, BadDeviceToken and DeviceTokenNotForTopic.
 */
export const UNCONFIRMED_GONE_REASONS = ["BadDeviceToken", "DeviceTokenNotForTopic"] as const;
export type UnconfirmedGoneReason = (typeof UNCONFIRMED_GONE_REASONS)[number];

export interface PushSettings {
  /** Notifications say who wrote in which channel, not the text. */
  hidePreview: boolean;
  /** No push at all for this device. */
  muted: boolean;
}

/** Where one device receives push notifications (one endpoint per device). */
export interface PushEndpoint extends PushSettings {
  userId: Id;
  deviceId: Id;
  kind: PushKind;
  /** Web Push: the subscription's endpoint URL; APNs: the device token; FCM: the registration token. */
  address: string;
  /** Web Push only: the browser's P-256 public key and auth secret (base64url). */
  p256dh: string;
  auth: string;
  /** APNs only: the app's bundle id (apns-topic); empty = the server's default. */
  apnsTopic: string;
  updatedAtMs: number;
  /**
   * Since when every send to it failed, unless the push service said it is
   * gone (that removes it at once): from the first failure after a delivery
   * or a registration. The notifier removes an endpoint failing for long.
   */
  failingSinceMs?: number;
  /**
   * The failed sends of that streak (with failingSinceMs): a long streak of
   * one or two failures, days apart, is no proof that the endpoint is dead.
   */
  failedSends?: number;
}

/**
 * PushEndpointStore keeps devices' push endpoints. Adapters: sqlite
 * (embedded, internal/push/sqlite.ts); a Cassandra one follows the same
 * contract (internal/push/contract.ts).
 */
export interface PushEndpointStore {
  /**
   * Registers (or replaces) the device's endpoint. An address is unique per
   * kind: registering it for one device removes it from any other (a browser
   * that moved to another account must not get the old account's pushes).
   */
  put(endpoint: PushEndpoint): Promise<void>;
  get(userId: Id, deviceId: Id): Promise<PushEndpoint | undefined>;
  /** The user's endpoints, by device id. */
  listForUser(userId: Id): Promise<PushEndpoint[]>;
  /** Returns false when the device had none. */
  remove(userId: Id, deviceId: Id): Promise<boolean>;
  /**
   * Removes the device's endpoint only while it still has this address: a
   * push service saying "gone" about an old address never deletes a newer
   * registration. With `expect.updatedAtMs`, only while it is still the
   * registration read (PushEndpoint.updatedAtMs): the same address (an APNs
   * token, a Web Push subscription) registered again since the send that
   * found it gone is a live one, and stays. With `expect.failingSinceMs`, only
   * while its failing streak is still that one (PushEndpoint.failingSinceMs):
   * none ended it since.
   */
  removeIfAddress(userId: Id, deviceId: Id, address: string, expect?: RemovalExpectation): Promise<boolean>;
  /**
   * Records a failed send to the device's endpoint at `atMs`, while it still
   * has this address: the first failure since a delivery or a registration
   * starts the streak (failingSinceMs), and each adds one to failedSends.
   * Registering the endpoint again (put) forgets them.
   */
  markFailing(userId: Id, deviceId: Id, address: string, atMs: number): Promise<void>;
  /** Forgets the endpoint's failures (a send went through), while it still has this address. */
  clearFailing(userId: Id, deviceId: Id, address: string): Promise<void>;
  /** Returns false when the device has no endpoint. */
  updateSettings(userId: Id, deviceId: Id, settings: PushSettings, atMs: number): Promise<boolean>;
}

/** What removeIfAddress compares the stored endpoint with, besides its address. */
export interface RemovalExpectation {
  /** The registration the send used (PushEndpoint.updatedAtMs). */
  updatedAtMs?: number;
  /** The failing streak read (PushEndpoint.failingSinceMs). */
  failingSinceMs?: number;
}

/** What a provider is asked to deliver: one (possibly collapsed) notification. */
export interface PushNotification {
  /** Notifications with the same key replace each other (Web Push Topic, apns-collapse-id, FCM collapse_key). */
  collapseKey: string;
  title: string;
  body: string;
  /** Seconds the push service may hold it for an offline device. */
  ttlSeconds: number;
  /** Small, string-valued app data (ids as decimal strings). */
  data: Record<string, string>;
}

export type SendOutcome =
  | { ok: true }
  | {
      ok: false;
      /** The endpoint is dead (404/410, unregistered token): remove it. */
      gone: boolean;
      /**
       * With gone, since when the service holds the address dead (APNs's 410
       * `timestamp`): a registration of it after that (PushEndpoint.updatedAtMs) is
       * the app's again, and kept.
       */
      goneSinceMs?: number;
      /** Worth trying again later (timeouts, 429, 5xx). */
      retryable: boolean;
      retryAfterMs?: number;
      status?: number;
      reason: string;
      /**
       * The service's reason code when it called the endpoint dead in words
       * that can also mean our own settings are wrong (APNs BadDeviceToken for
       * a token of the other environment) and the provider has not yet proven
       * them by a delivery: the endpoint is kept.
       */
      goneUnconfirmed?: UnconfirmedGoneReason;
      /**
       * Our side failed, not the endpoint: our credentials (an access token
       * not fetched or refused, a provider token not signed), or our DNS or
       * network before a connection to the push service was made
       * (neverConnected): the service was not asked about the device. Never counted
       * against the endpoint (PushEndpoint.failingSinceMs).
       */
      ours?: boolean;
    };

/** One push service (Web Push, APNs, FCM) behind the same interface. */
export interface PushProvider {
  readonly kind: PushKind;
  /** Never throws: every failure is an outcome. Gives up after timeoutMs. */
  send(endpoint: PushEndpoint, notification: PushNotification, timeoutMs: number): Promise<SendOutcome>;
  close?(): Promise<void>;
}

/** Maps an HTTP status of a push service to an outcome. */
export function outcomeOfStatus(status: number, reason: string, retryAfter?: string | null): SendOutcome {
  if (status >= 200 && status < 300) return { ok: true };
  const retryAfterMs = parseRetryAfter(retryAfter);
  if (status === 404 || status === 410) return { ok: false, gone: true, retryable: false, status, reason };
  if (status === 429 || status === 408 || status >= 500) return { ok: false, gone: false, retryable: true, status, reason, retryAfterMs };
  return { ok: false, gone: false, retryable: false, status, reason };
}

function parseRetryAfter(v: string | null | undefined): number | undefined {
  if (!v) return undefined;
  const s = Number(v);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

/**
 * A failure that never reached an answer (connection refused, timeout): worth
 * retrying. One that never connected (neverConnected) is ours: the push
 * service was not asked about the device, so it says nothing of the endpoint.
 */
export function networkFailure(err: unknown): SendOutcome {
  const e = err as { name?: string; message?: string; cause?: { code?: string } };
  const reason = e?.name === "TimeoutError" || e?.name === "AbortError" ? "timed out" : (e?.cause?.code ?? e?.message ?? String(err));
  return { ok: false, gone: false, retryable: true, reason, ...(neverConnected(err) && { ours: true }) };
}

/** Node's codes for a name not resolved or a connection not made (undici's connect timeout too). */
const CONNECT_CODES = new Set(["ENOTFOUND", "EAI_AGAIN", "EAI_FAIL", "ECONNREFUSED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "UND_ERR_CONNECT_TIMEOUT"]);

/**
 * Whether `err` is our DNS or network failing before the push service took
 * the request: its name not resolved, the connection refused, unreachable or
 * timed out while connecting. Found on the error or its causes, as each
 * client wraps it (fetch's TypeError, http2's cancelled pending stream, an
 * AggregateError of the addresses tried). A reset or a timeout once connected
 * is not: the request may have reached the service. Only the codes Node gives
 * a connect or a lookup count (an established socket's ETIMEDOUT is a read's).
 */
export function neverConnected(err: unknown, depth = 0): boolean {
  if (err === null || typeof err !== "object" || depth > 4) return false;
  const { code, syscall, cause, errors } = err as { code?: unknown; syscall?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === "string" && CONNECT_CODES.has(code) && (syscall === undefined || syscall === "connect" || syscall === "getaddrinfo")) return true;
  if (Array.isArray(errors) && errors.length > 0 && errors.every((x) => neverConnected(x, depth + 1))) return true;
  return neverConnected(cause, depth + 1);
}
