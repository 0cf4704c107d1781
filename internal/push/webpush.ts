import webpush from "web-push";
import { networkFailure, outcomeOfStatus, type PushEndpoint, type PushNotification, type PushProvider, type SendOutcome } from "./port.js";
import type { VapidKeys } from "./vapid.js";

export interface WebPushOptions {
  vapid: VapidKeys;
  /** "mailto:..." or "https://...": how push services reach the operator. */
  subject: string;
}

/**
 * Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payload
 * encryption (RFC 8291), as browsers' push services expect. `web-push`
 * builds the request (encryption, VAPID JWT, headers); it is sent with
 * fetch, so every request has a hard timeout.
 *
 * The notification's collapse key becomes the `Topic` header: the push
 * service keeps only the newest undelivered message per topic.
 */
export class WebPushProvider implements PushProvider {
  readonly kind = "web_push" as const;

  constructor(private readonly options: WebPushOptions) {}

  get publicKey(): string {
    return this.options.vapid.publicKey;
  }

  async send(endpoint: PushEndpoint, n: PushNotification, timeoutMs: number): Promise<SendOutcome> {
    let details: ReturnType<typeof webpush.generateRequestDetails>;
    try {
      details = webpush.generateRequestDetails(
        { endpoint: endpoint.address, keys: { p256dh: endpoint.p256dh, auth: endpoint.auth } },
        JSON.stringify(webPushPayload(n)),
        {
          vapidDetails: { subject: this.options.subject, ...this.options.vapid },
          TTL: n.ttlSeconds,
          topic: n.collapseKey,
          urgency: "high",
          contentEncoding: "aes128gcm",
        },
      );
    } catch (err) {
      // Bad keys in the subscription: this endpoint can never work.
      return { ok: false, gone: true, retryable: false, reason: `invalid subscription: ${(err as Error).message}` };
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(details.headers)) if (k.toLowerCase() !== "content-length") headers[k] = String(v);
    try {
      const res = await fetch(details.endpoint, {
        method: details.method,
        headers,
        body: details.body ? new Uint8Array(details.body) : undefined,
        redirect: "manual",
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await res.text().catch(() => "");
      return outcomeOfStatus(res.status, `push service answered ${res.status}${text ? `: ${text.slice(0, 200)}` : ""}`, res.headers.get("retry-after"));
    } catch (err) {
      return networkFailure(err);
    }
  }
}

/** The JSON a service worker receives in its push event. */
export function webPushPayload(n: PushNotification): Record<string, string> {
  return { title: n.title, body: n.body, tag: n.collapseKey, ...n.data };
}
