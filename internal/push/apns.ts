import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import http2 from "node:http2";
import { createPrivateKey, type KeyObject } from "node:crypto";
import { monotonicNow } from "../model/clock.js";
import { signJwt } from "./jwt.js";
import { networkFailure, UNCONFIRMED_GONE_REASONS, type PushEndpoint, type PushNotification, type PushProvider, type SendOutcome, type UnconfirmedGoneReason } from "./port.js";

export interface ApnsOptions {
  /** The .p8 signing key (PEM) from the Apple developer account. */
  key: string | KeyObject;
  keyId: string;
  teamId: string;
  /** Default apns-topic (the app's bundle id) for tokens registered without one. */
  topic: string;
  /** https://api.push.apple.com, or https://api.sandbox.push.apple.com for development builds. */
  url: string;
  /** Where the closing of a connection found dead is told (warn), and a PING that proved one alive (debug). */
  logger?: Pick<Logger, "warn" | "debug">;
  /** A connection idle this long is pinged before it carries a push (default IDLE_PING_AFTER_MS). */
  idlePingAfterMs?: number;
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
const DEAD_TOKEN_ONCE_PROVEN: ReadonlySet<string> = new Set(UNCONFIRMED_GONE_REASONS);
const unconfirmedGone = (reason: string): reason is UnconfirmedGoneReason => DEAD_TOKEN_ONCE_PROVEN.has(reason);
/** APNs's 403 reasons refusing our provider token (the JWT), not the device's. */
const PROVIDER_TOKEN_REFUSED = new Set(["ExpiredProviderToken", "InvalidProviderToken", "MissingProviderToken"]);

/**
 * APNs over HTTP/2 with token-based (JWT, ES256) provider authentication.
 * One HTTP/2 connection is kept and reopened when it fails (GOAWAY, a socket
 * error, or a PING unanswered within PING_DEADLINE_MS after a stream timed
 * out on it or before it is reused after an idle time); the provider token
 * is renewed every 50 minutes (Apple refuses tokens older than an hour).
 */
export class ApnsProvider implements PushProvider {
  readonly kind = "apns" as const;
  private session?: http2.ClientHttp2Session;
  /** When (monotonic: a wall clock stepped back skipped every idle PING for the step) this.session last answered anything (a response, a PING ack), or was opened. */
  private lastHeardMs = 0;
  /** The PING under way on a session, shared by every send that wants to know whether it is alive. */
  private probing?: { session: http2.ClientHttp2Session; alive: Promise<boolean> };
  private token?: { jwt: string; atMs: number };
  private readonly key: KeyObject;
  /** The apns-topics Apple accepted a push for since start: its environment and that topic are right. */
  private readonly deliveredTopics = new Set<string>();

  constructor(private readonly options: ApnsOptions) {
    this.key = typeof options.key === "string" ? createPrivateKey(options.key) : options.key;
  }

  private providerToken(): string {
    // Its age on the monotonic clock: a wall clock stepped forward renewed it early, and Apple
    // refuses a token renewed more than once in 20 minutes (TooManyProviderTokenUpdates); one
    // stepped back kept it past the hour Apple takes it for. Its iat is the wall clock, Apple's.
    const age = monotonicNow();
    if (!this.token || age - this.token.atMs > 50 * 60_000) {
      this.token = {
        jwt: signJwt("ES256", this.key, { kid: this.options.keyId }, { iss: this.options.teamId, iat: Math.floor(Date.now() / 1000) }),
        atMs: age,
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
    this.lastHeardMs = monotonicNow();
    return s;
  }

  /**
   * PINGs session: an ack within deadlineMs says the connection is alive;
   * none (a connection dropped silently, by a NAT say, gives no other signal)
   * destroys it, failing its streams in flight at once (each would otherwise
   * wait out its own timeout) so their retries, and the next sends, go on a
   * new one. One PING at a time per session, whoever asks.
   */
  private probe(session: http2.ClientHttp2Session, deadlineMs: number): Promise<boolean> {
    if (this.probing?.session === session) return this.probing.alive;
    const alive = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), deadlineMs);
      try {
        // Node cancels (err) a PING on a session still connecting: one not
        // set up (TCP or TLS) after a push waited out its whole timeout is as
        // useless as a dead one.
        const sent = session.ping((err) => {
          clearTimeout(timer);
          resolve(!err);
        });
        // Too many of our PINGs unacked: not proof of a dead peer, so not closed on our own bookkeeping.
        if (sent === false) {
          clearTimeout(timer);
          resolve(true);
        }
      } catch {
        clearTimeout(timer);
        resolve(false); // destroyed meanwhile
      }
    }).then((ok) => {
      if (this.probing?.session === session) this.probing = undefined;
      if (ok) {
        if (this.session === session) this.lastHeardMs = monotonicNow();
        this.options.logger?.debug({ kind: "apns" }, "APNs connection answered a PING: kept");
      } else if (!session.destroyed) {
        this.options.logger?.warn({ kind: "apns", deadlineMs }, "APNs connection did not answer a PING in time: closed, the next send opens another");
        session.destroy();
      }
      return ok;
    });
    this.probing = { session, alive };
    return alive;
  }

  /**
   * this.session, or a new one. One idle longer than idlePingAfterMs is
   * pinged first: a push sent on a connection that died while unused (NATs
   * and load balancers drop idle flows, silently) would be lost for its whole
   * timeout, where the PING costs one round trip, and only after an idle time.
   * Chosen over a periodic PING, which would cost traffic and wake-ups on
   * every idle connection for ever, for the same outcome at the next send.
   */
  private async usableConnection(timeoutMs: number): Promise<http2.ClientHttp2Session> {
    const session = this.connection();
    const idleAfter = this.options.idlePingAfterMs ?? IDLE_PING_AFTER_MS;
    if (!session.connecting && monotonicNow() - this.lastHeardMs > idleAfter) {
      // At most half the push's time, so that after a dead one the push still has the rest on a new connection.
      if (!(await this.probe(session, pingDeadline(timeoutMs / 2)))) return this.connection();
    }
    return session;
  }

  async send(endpoint: PushEndpoint, n: PushNotification, timeoutMs: number): Promise<SendOutcome> {
    const body = JSON.stringify({
      aps: { alert: { title: n.title, body: n.body }, sound: "default", "thread-id": n.collapseKey, "mutable-content": 1 },
      ...n.data,
    });
    const topic = endpoint.apnsTopic || this.options.topic;
    let jwt: string;
    try {
      jwt = this.providerToken();
    } catch (err) {
      // Our key cannot sign: APNs was not asked about the device.
      return { ok: false, gone: false, retryable: false, reason: `APNs provider token not signed: ${(err as Error).message}`, ours: true };
    }
    const headers = {
      ":method": "POST",
      ":path": `/3/device/${encodeURIComponent(endpoint.address)}`,
      authorization: `bearer ${jwt}`,
      "apns-topic": topic,
      "apns-push-type": "alert",
      "apns-priority": "10",
      "apns-expiration": String(Math.floor(Date.now() / 1000) + n.ttlSeconds),
      "apns-collapse-id": n.collapseKey,
      "content-type": "application/json",
    };
    const startedMs = monotonicNow();
    const session = await this.usableConnection(timeoutMs);
    try {
      // The caller's timeout covers the whole send, an idle PING included.
      const { status, text } = await request(session, headers, body, Math.max(1, timeoutMs - (monotonicNow() - startedMs)));
      if (this.session === session) this.lastHeardMs = monotonicNow();
      if (status === 200) {
        this.deliveredTopics.add(topic);
        return { ok: true };
      }
      let reason = "";
      let timestamp: unknown;
      try {
        ({ reason = "", timestamp } = JSON.parse(text) as { reason?: string; timestamp?: unknown });
      } catch {
        // not JSON
      }
      const what = `APNs answered ${status}${reason ? ` ${reason}` : ""}`;
      if (status === 410 || DEAD_TOKEN.has(reason)) {
        // Since when the token is no longer valid for the topic: one the app registered after that is its own again.
        const goneSinceMs = typeof timestamp === "number" && Number.isFinite(timestamp) && timestamp > 0 ? timestamp : undefined;
        return { ok: false, gone: true, retryable: false, status, reason: what, ...(goneSinceMs !== undefined && { goneSinceMs }) };
      }
      if (unconfirmedGone(reason)) {
        const proven = reason === "BadDeviceToken" ? this.deliveredTopics.size > 0 : this.deliveredTopics.has(topic);
        if (proven) return { ok: false, gone: true, retryable: false, status, reason: what };
        return { ok: false, gone: false, retryable: false, status, reason: what, goneUnconfirmed: reason };
      }
      // Only the token this send used: a late answer about an older one must not drop the one made
      // since, and Apple refuses a token renewed more than once in 20 minutes (TooManyProviderTokenUpdates).
      if (status === 403 && reason === "ExpiredProviderToken" && this.token?.jwt === jwt) this.token = undefined;
      const retryable = status === 429 || status >= 500 || reason === "ExpiredProviderToken";
      // Our provider token refused (expired, invalid, missing): nothing said of the device.
      return { ok: false, gone: false, retryable, status, reason: what, ...(PROVIDER_TOKEN_REFUSED.has(reason) && { ours: true }) };
    } catch (err) {
      // A timed-out stream was cancelled alone (RST_STREAM) and a reset one
      // says nothing about the connection: a slow APNs must not cost a new
      // connection per timeout (Apple also reads rapid reconnects as abuse).
      // GOAWAY and socket errors end the session themselves (connection()
      // then opens another). What neither catches is a connection that died
      // silently: a PING tells, in a round trip rather than in more lost
      // pushes; its ack means the slowness is APNs'. Not awaited: this
      // send's outcome is known, and the PING settles the session alone.
      if ((err as { name?: string }).name === "TimeoutError" && !session.destroyed) {
        void this.probe(session, pingDeadline(timeoutMs));
      }
      return networkFailure(err);
    }
  }

  async close(): Promise<void> {
    this.session?.close();
  }
}

/** The longest wait for a PING ack: a live connection answers in a round trip, even while APNs is slow to answer pushes. */
const PING_DEADLINE_MS = 2000;
/** Idle time after which a connection is pinged before reuse: under common NAT and load-balancer idle timeouts (AWS NAT 350 s). */
const IDLE_PING_AFTER_MS = 60_000;

/** A PING never waits longer than the push it would delay or follows. */
function pingDeadline(timeoutMs: number): number {
  return Math.min(timeoutMs, PING_DEADLINE_MS);
}

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
