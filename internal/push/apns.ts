import { readFileSync } from "node:fs";
import http2 from "node:http2";
import { createPrivateKey, type KeyObject } from "node:crypto";
import { signJwt } from "./jwt.js";
import { networkFailure, type PushEndpoint, type PushNotification, type PushProvider, type SendOutcome } from "./port.js";

export interface ApnsOptions {
  /** The .p8 signing key (PEM) from the Apple developer account. */
  key: string | KeyObject;
  keyId: string;
  teamId: string;
  /** Default apns-topic (the app's bundle id) for tokens registered without one. */
  topic: string;
  /** https://api.push.apple.com, or https://api.sandbox.push.apple.com for development builds. */
  url: string;
}

export function apnsOptionsFromFiles(c: { keyFile: string; keyId: string; teamId: string; topic: string; url: string }): ApnsOptions {
  return { key: readFileSync(c.keyFile, "utf8"), keyId: c.keyId, teamId: c.teamId, topic: c.topic, url: c.url };
}

/** Reasons Apple gives for a token that will never work again, whatever this server's settings. */
const DEAD_TOKEN = new Set(["Unregistered", "ExpiredToken"]);

/**
 * Reasons Apple gives for a dead token, and also for settings of ours that are
 * wrong: BadDeviceToken for a token of the other environment (CHAT_APNS_URL
 * the sandbox for App Store builds, or production for development builds),
 * DeviceTokenNotForTopic for a wrong topic. Before this provider has
 * delivered since it started (to that topic, for the latter), they may mean a
 * misconfigured notifier, which would otherwise remove every iOS endpoint on
 * its first pushes: the endpoint is kept and the push dropped.
 */
const DEAD_TOKEN_ONCE_PROVEN = new Set(["BadDeviceToken", "DeviceTokenNotForTopic"]);

/**
 * APNs over HTTP/2 with token-based (JWT, ES256) provider authentication.
 * One HTTP/2 connection is kept and reopened when it fails (GOAWAY, a socket
 * error, or STALLED_AFTER timeouts in a row on it); the provider token is
 * renewed every 50 minutes (Apple refuses tokens older than an hour).
 */
export class ApnsProvider implements PushProvider {
  readonly kind = "apns" as const;
  private session?: http2.ClientHttp2Session;
  /** Streams of this.session that timed out since it last answered one. */
  private timeoutsInARow = 0;
  private token?: { jwt: string; atMs: number };
  private readonly key: KeyObject;
  /** The apns-topics Apple accepted a push for since start: its environment and that topic are right. */
  private readonly deliveredTopics = new Set<string>();

  constructor(private readonly options: ApnsOptions) {
    this.key = typeof options.key === "string" ? createPrivateKey(options.key) : options.key;
  }

  private providerToken(): string {
    const now = Date.now();
    if (!this.token || now - this.token.atMs > 50 * 60_000) {
      this.token = {
        jwt: signJwt("ES256", this.key, { kid: this.options.keyId }, { iss: this.options.teamId, iat: Math.floor(now / 1000) }),
        atMs: now,
      };
    }
    return this.token.jwt;
  }

  private connection(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const s = http2.connect(this.options.url);
    s.on("error", () => {}); // failures surface on the streams
    s.on("close", () => {
      if (this.session === s) this.session = undefined;
    });
    s.unref();
    this.session = s;
    this.timeoutsInARow = 0;
    return s;
  }

  async send(endpoint: PushEndpoint, n: PushNotification, timeoutMs: number): Promise<SendOutcome> {
    const body = JSON.stringify({
      aps: { alert: { title: n.title, body: n.body }, sound: "default", "thread-id": n.collapseKey, "mutable-content": 1 },
      ...n.data,
    });
    const topic = endpoint.apnsTopic || this.options.topic;
    const headers = {
      ":method": "POST",
      ":path": `/3/device/${encodeURIComponent(endpoint.address)}`,
      authorization: `bearer ${this.providerToken()}`,
      "apns-topic": topic,
      "apns-push-type": "alert",
      "apns-priority": "10",
      "apns-expiration": String(Math.floor(Date.now() / 1000) + n.ttlSeconds),
      "apns-collapse-id": n.collapseKey,
      "content-type": "application/json",
    };
    const session = this.connection();
    try {
      const { status, text } = await request(session, headers, body, timeoutMs);
      if (this.session === session) this.timeoutsInARow = 0;
      if (status === 200) {
        this.deliveredTopics.add(topic);
        return { ok: true };
      }
      let reason = "";
      try {
        reason = (JSON.parse(text) as { reason?: string }).reason ?? "";
      } catch {
        // not JSON
      }
      const what = `APNs answered ${status}${reason ? ` ${reason}` : ""}`;
      if (status === 410 || DEAD_TOKEN.has(reason)) return { ok: false, gone: true, retryable: false, status, reason: what };
      if (DEAD_TOKEN_ONCE_PROVEN.has(reason)) {
        const proven = reason === "BadDeviceToken" ? this.deliveredTopics.size > 0 : this.deliveredTopics.has(topic);
        if (proven) return { ok: false, gone: true, retryable: false, status, reason: what };
        return { ok: false, gone: false, retryable: false, status, reason: what, goneUnconfirmed: reason };
      }
      if (status === 403 && reason === "ExpiredProviderToken") this.token = undefined;
      const retryable = status === 429 || status >= 500 || reason === "ExpiredProviderToken";
      return { ok: false, gone: false, retryable, status, reason: what };
    } catch (err) {
      // A timed-out stream was cancelled alone (RST_STREAM) and a reset one
      // says nothing about the connection: a slow APNs must not cost a new
      // connection per timeout (Apple also reads rapid reconnects as abuse).
      // GOAWAY and socket errors end the session themselves (connection()
      // then opens another). What neither catches is a connection that died
      // silently (a NAT that dropped it): every stream on it times out, so
      // that many in a row with no answer between close it. Gracefully: the
      // others in flight still get their answers or their own timeouts. Not
      // this.session's count: it may be a newer connection.
      if (this.session === session && (err as { name?: string }).name === "TimeoutError" && ++this.timeoutsInARow >= STALLED_AFTER) {
        session.close();
      }
      return networkFailure(err);
    }
  }

  async close(): Promise<void> {
    this.session?.close();
  }
}

/** Stream timeouts in a row, none answered between, that mark a connection dead. */
const STALLED_AFTER = 3;

function request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body: string,
  timeoutMs: number,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers);
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      reject(Object.assign(new Error("timed out"), { name: "TimeoutError" }));
    }, timeoutMs);
    let status = 0;
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      clearTimeout(timer);
      // Closed before any response (RST_STREAM without an error, GOAWAY, its
      // connection torn down): nothing was answered, so it is worth a retry.
      if (status === 0) reject(new Error("stream closed without a response"));
      else resolve({ status, text: Buffer.concat(chunks).toString("utf8") });
    });
    stream.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    stream.on("close", () => {
      clearTimeout(timer);
      reject(new Error("stream closed without a response")); // no-op once settled
    });
    stream.end(body);
  });
}
