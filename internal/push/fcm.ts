import { readFileSync } from "node:fs";
import { signJwt } from "./jwt.js";
import { networkFailure, outcomeOfStatus, type PushEndpoint, type PushNotification, type PushProvider, type SendOutcome } from "./port.js";

/** The fields of a Google service-account key file that FCM needs. */
export interface ServiceAccount {
  project_id: string;
  client_email: string;
  private_key: string;
  token_uri?: string;
}

export interface FcmOptions {
  account: ServiceAccount;
  /** https://fcm.googleapis.com */
  url: string;
}

export function fcmOptionsFromFile(c: { serviceAccountFile: string; url: string }): FcmOptions {
  const account = JSON.parse(readFileSync(c.serviceAccountFile, "utf8")) as ServiceAccount;
  if (!account.project_id || !account.client_email || !account.private_key) {
    throw new Error(`${c.serviceAccountFile}: not a service account key (project_id, client_email, private_key)`);
  }
  return { account, url: c.url };
}

const SCOPE = "https://www.googleapis.com/auth/firebase.messaging";

/**
 * FCM HTTP v1 (projects/<id>/messages:send) with an OAuth2 access token from
 * a service account (JWT bearer grant, RS256), cached until shortly before it
 * expires and fetched once for all the sends that find it expired.
 * UNREGISTERED (404) tokens are reported gone, and so are those FCM
 * refuses as no registration token (INVALID_ARGUMENT on message.token).
 */
export class FcmProvider implements PushProvider {
  readonly kind = "fcm" as const;
  private access?: { token: string; expiresAtMs: number };
  /** The token fetch in flight: sends that find the token expired share it rather than each asking the token endpoint. */
  private fetching?: Promise<string>;

  constructor(private readonly options: FcmOptions) {}

  /** Waits for the token no longer than the send's own deadline; a failed fetch is not kept, so the next send asks again. */
  private accessToken(timeoutMs: number, signal: AbortSignal): Promise<string> {
    if (this.access && this.access.expiresAtMs - 60_000 > Date.now()) return Promise.resolve(this.access.token);
    this.fetching ??= this.fetchToken(timeoutMs).finally(() => (this.fetching = undefined));
    return untilAborted(this.fetching, signal);
  }

  private async fetchToken(timeoutMs: number): Promise<string> {
    const a = this.options.account;
    const tokenUri = a.token_uri ?? "https://oauth2.googleapis.com/token";
    const now = Math.floor(Date.now() / 1000);
    const assertion = signJwt("RS256", a.private_key, {}, { iss: a.client_email, scope: SCOPE, aud: tokenUri, iat: now, exp: now + 3600 });
    const res = await fetch(tokenUri, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion }).toString(),
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) throw new Error(`OAuth token endpoint answered ${res.status}`);
    const body = (await res.json()) as { access_token: string; expires_in: number };
    this.access = { token: body.access_token, expiresAtMs: Date.now() + body.expires_in * 1000 };
    return body.access_token;
  }

  async send(endpoint: PushEndpoint, n: PushNotification, timeoutMs: number): Promise<SendOutcome> {
    // One deadline for the token and the send: the provider gives up after timeoutMs in all.
    const signal = AbortSignal.timeout(timeoutMs);
    let token: string;
    try {
      token = await this.accessToken(timeoutMs, signal);
    } catch (err) {
      // Our credentials, or our way to Google's token endpoint: FCM was not asked about the device.
      const o = networkFailure(err);
      return o.ok ? o : { ...o, ours: true };
    }
    try {
      const message = {
        message: {
          token: endpoint.address,
          notification: { title: n.title, body: n.body },
          data: n.data,
          android: { collapse_key: n.collapseKey, priority: "HIGH", ttl: `${n.ttlSeconds}s`, notification: { tag: n.collapseKey } },
          apns: { headers: { "apns-collapse-id": n.collapseKey } },
          webpush: { headers: { Topic: n.collapseKey, TTL: String(n.ttlSeconds) } },
        },
      };
      const res = await fetch(`${this.options.url}/v1/projects/${encodeURIComponent(this.options.account.project_id)}/messages:send`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify(message),
        signal,
      });
      const text = await res.text().catch(() => "");
      // Only the token this send used: a late 401 for an older one must not drop the one fetched since.
      if (res.status === 401 && this.access?.token === token) this.access = undefined;
      if (res.ok) return { ok: true };
      const reason = `FCM answered ${res.status}${text ? `: ${text.slice(0, 200)}` : ""}`;
      // Only FCM's own word makes a token gone: a 404 alone also comes from a
      // wrong project id or CHAT_FCM_URL, and would remove every token it is sent for.
      if (fcmErrorCode(text) === "UNREGISTERED") return { ok: false, gone: true, retryable: false, status: res.status, reason };
      // FCM's word for a token that is no registration token at all (a malformed or truncated one):
      // INVALID_ARGUMENT naming the token's field. Naming another field, the message was ours to fix.
      if (fcmErrorCode(text) === "INVALID_ARGUMENT" && refusedFields(text).includes("message.token")) {
        return { ok: false, gone: true, retryable: false, status: res.status, reason };
      }
      // Our access token refused: nothing said of the device.
      if (res.status === 401) return { ok: false, gone: false, retryable: true, status: 401, reason, ours: true };
      if (res.status === 404 || res.status === 410) return { ok: false, gone: false, retryable: false, status: res.status, reason };
      return outcomeOfStatus(res.status, reason, res.headers.get("retry-after"));
    } catch (err) {
      return networkFailure(err);
    }
  }
}

/** p's outcome, or the signal's reason if it aborts first (p is still awaited: its failure is never unhandled). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    if (signal.aborted) onAbort();
  });
}

/** The fields an FCM v1 error body's BadRequest detail names (`error.details[].fieldViolations[].field`). */
function refusedFields(text: string): string[] {
  try {
    const details = (JSON.parse(text) as { error?: { details?: { fieldViolations?: { field?: unknown }[] }[] } }).error?.details;
    if (!Array.isArray(details)) return [];
    return details.flatMap((d) => (Array.isArray(d?.fieldViolations) ? d.fieldViolations.map((v) => v?.field) : []))
      .filter((f): f is string => typeof f === "string");
  } catch {
    return [];
  }
}

/** The FcmError code of an FCM v1 error body (`error.details[].errorCode`), if it has one. */
function fcmErrorCode(text: string): string | undefined {
  try {
    const details = (JSON.parse(text) as { error?: { details?: { errorCode?: unknown }[] } }).error?.details;
    const code = Array.isArray(details) ? details.find((d) => typeof d?.errorCode === "string")?.errorCode : undefined;
    return typeof code === "string" ? code : undefined;
  } catch {
    return undefined;
  }
}
