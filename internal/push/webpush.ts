import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import webpush from "web-push";
import { createPushAgents, isRefusedAddress, type PushAgents } from "./egress.js";
import { webPushEndpointProblem } from "./endpoint-rule.js";
import { networkFailure, outcomeOfStatus, type PushEndpoint, type PushNotification, type PushProvider, type SendOutcome } from "./port.js";
import type { VapidKeys } from "./vapid.js";

export interface WebPushOptions {
  vapid: VapidKeys;
  /** "mailto:..." or "https://...": how push services reach the operator. */
  subject: string;
  /** CHAT_PUSH_ALLOW_HTTP: send to http, loopback and private endpoints too (local tests only). Default false. */
  allowLocalEndpoints?: boolean;
  /** How host names resolve (tests); dns.lookup by default. */
  lookup?: LookupFunction;
}

/** Enough of a push service's error body for a log line; the rest is not read. */
const MAX_ERROR_BODY = 1024;

/**
 * Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payload
 * encryption (RFC 8291), as browsers' push services expect. `web-push`
 * builds the request (encryption, VAPID JWT, headers); it is sent through
 * agents that connect to public addresses only (egress.ts), with a hard
 * timeout and no redirects followed.
 *
 * The endpoint URL is a user's input: an endpoint that is, or resolves to,
 * a loopback, private or otherwise non-public address is refused and
 * reported gone, so the notifier removes it instead of retrying.
 *
 * The notification's collapse key becomes the `Topic` header: the push
 * service keeps only the newest undelivered message per topic.
 */
export class WebPushProvider implements PushProvider {
  readonly kind = "web_push" as const;

  private readonly agents: PushAgents;

  constructor(private readonly options: WebPushOptions) {
    this.agents = createPushAgents({ allowLocal: options.allowLocalEndpoints === true, lookup: options.lookup });
  }

  get publicKey(): string {
    return this.options.vapid.publicKey;
  }

  async send(endpoint: PushEndpoint, n: PushNotification, timeoutMs: number): Promise<SendOutcome> {
    let url: URL;
    try {
      url = new URL(endpoint.address);
    } catch {
      return { ok: false, gone: true, retryable: false, reason: "invalid subscription: the endpoint is not a URL" };
    }
    // Registration applies the same rule; this catches endpoints stored before it, or while local endpoints were allowed.
    const problem = webPushEndpointProblem(url, this.options.allowLocalEndpoints === true);
    if (problem) return { ok: false, gone: true, retryable: false, reason: `refused endpoint: it ${problem}` };
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
    return this.post(url, details, timeoutMs);
  }

  async close(): Promise<void> {
    this.agents.destroy();
  }

  private post(url: URL, details: ReturnType<typeof webpush.generateRequestDetails>, timeoutMs: number): Promise<SendOutcome> {
    const secure = url.protocol === "https:";
    return new Promise((resolve) => {
      const req = (secure ? https : http).request(
        url,
        {
          method: details.method,
          headers: details.headers as http.OutgoingHttpHeaders,
          agent: secure ? this.agents.https : this.agents.http,
          signal: AbortSignal.timeout(timeoutMs),
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            text += chunk;
            // A hostile endpoint could stream forever: the status is what counts.
            if (text.length >= MAX_ERROR_BODY) res.destroy();
          });
          // After the end, a destroy for the cap, or the timeout: the status stands either way.
          res.on("close", () => {
            const status = res.statusCode ?? 0;
            const body = text.slice(0, 200);
            resolve(outcomeOfStatus(status, `push service answered ${status}${body ? `: ${body}` : ""}`, res.headers["retry-after"]));
          });
          // A body cut short (cap, timeout, reset) still ends in "close" above.
          res.on("error", () => {});
        },
      );
      req.on("error", (err) => {
        if (isRefusedAddress(err)) resolve({ ok: false, gone: true, retryable: false, reason: err.message });
        else resolve(networkFailure(err));
      });
      req.end(details.body ?? undefined);
    });
  }
}

/** The JSON a service worker receives in its push event. */
export function webPushPayload(n: PushNotification): Record<string, string> {
  return { title: n.title, body: n.body, tag: n.collapseKey, ...n.data };
}
