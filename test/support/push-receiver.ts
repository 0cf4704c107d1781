/**
 * A Web Push service on loopback for tests. It hands out subscriptions (a
 * fresh P-256 key pair and auth secret each, as a browser makes them),
 * checks each push's VAPID authorization (RFC 8292) and decrypts its payload
 * (RFC 8291, aes128gcm content coding of RFC 8188) with the subscription's
 * private key, using node:crypto only. How a subscription answers is
 * scriptable: accept, 404/410, fail N times first, or never answer.
 */
import { createECDH, createPublicKey, createDecipheriv, hkdfSync, randomBytes, verify, type ECDH } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { PushService } from "../../gen/es/chat/v1/push_pb.js";

export type ReceiverBehaviour =
  | { kind: "accept" }
  | { kind: "status"; status: number }
  /** Answers `status` (e.g. 503) to the first `times` pushes, then accepts. */
  | { kind: "failFirst"; times: number; status: number; retryAfterSeconds?: number }
  /** Never answers (a push service that hangs). */
  | { kind: "hang" };

export interface ReceivedPush {
  subscriptionId: string;
  at: number;
  /** What the subscription answered. */
  status: number;
  headers: Record<string, string | string[] | undefined>;
  topic?: string;
  ttl?: number;
  urgency?: string;
  /** VAPID: the JWT verified against the k= key, aud matched, exp in the future. */
  vapidOk: boolean;
  vapidPublicKey?: string;
  vapidSubject?: string;
  /** The decrypted payload (undefined if it could not be decrypted). */
  plaintext?: string;
  json?: Record<string, unknown>;
  error?: string;
}

export interface TestSubscription {
  id: string;
  endpoint: string;
  /** Base64url uncompressed public key, as keys.p256dh of a PushSubscription. */
  p256dh: string;
  /** Base64url 16-byte secret, as keys.auth. */
  auth: string;
  behaviour: ReceiverBehaviour;
  ecdh: ECDH;
  authSecret: Buffer;
}

export class PushReceiver {
  readonly received: ReceivedPush[] = [];
  private readonly subs = new Map<string, TestSubscription>();
  private readonly hanging = new Set<ServerResponse>();
  private server?: Server;
  private base = "";
  private next = 1;

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.onRequest(req, res));
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", () => r()));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.hanging.clear();
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  subscribe(behaviour: ReceiverBehaviour = { kind: "accept" }): TestSubscription {
    const ecdh = createECDH("prime256v1");
    ecdh.generateKeys();
    const authSecret = randomBytes(16);
    const id = `s${this.next++}`;
    const sub: TestSubscription = {
      id,
      endpoint: `${this.base}/push/${id}`,
      p256dh: ecdh.getPublicKey().toString("base64url"),
      auth: authSecret.toString("base64url"),
      behaviour,
      ecdh,
      authSecret,
    };
    this.subs.set(id, sub);
    return sub;
  }

  /** Pushes that reached a subscription (whatever it answered). */
  pushesTo(sub: TestSubscription): ReceivedPush[] {
    return this.received.filter((p) => p.subscriptionId === sub.id);
  }

  /** Pushes a subscription accepted (2xx). */
  deliveredTo(sub: TestSubscription): ReceivedPush[] {
    return this.pushesTo(sub).filter((p) => p.status >= 200 && p.status < 300);
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const id = /^\/push\/([^/?]+)$/.exec(req.url ?? "")?.[1];
    const sub = id ? this.subs.get(id) : undefined;
    if (req.method !== "POST" || !sub) {
      res.writeHead(404).end();
      return;
    }
    const push: ReceivedPush = {
      subscriptionId: sub.id,
      at: Date.now(),
      status: 0,
      headers: req.headers,
      topic: header(req, "topic"),
      ttl: header(req, "ttl") !== undefined ? Number(header(req, "ttl")) : undefined,
      urgency: header(req, "urgency"),
      vapidOk: false,
    };
    try {
      const v = verifyVapid(header(req, "authorization"), new URL(sub.endpoint).origin);
      push.vapidOk = true;
      push.vapidPublicKey = v.publicKey;
      push.vapidSubject = v.subject;
    } catch (err) {
      push.error = `vapid: ${(err as Error).message}`;
    }
    try {
      if (header(req, "content-encoding") !== "aes128gcm") throw new Error(`content-encoding ${header(req, "content-encoding")}`);
      push.plaintext = decryptAes128gcm(body, sub.ecdh, sub.authSecret).toString("utf8");
      push.json = JSON.parse(push.plaintext) as Record<string, unknown>;
    } catch (err) {
      push.error = `${push.error ? `${push.error}; ` : ""}decrypt: ${(err as Error).message}`;
    }
    this.received.push(push);

    const b = sub.behaviour;
    if (b.kind === "hang") {
      push.status = -1;
      this.hanging.add(res);
      res.on("close", () => this.hanging.delete(res));
      return;
    }
    let status = 201;
    const headers: Record<string, string> = {};
    if (b.kind === "status") status = b.status;
    if (b.kind === "failFirst" && this.pushesTo(sub).length <= b.times) {
      status = b.status;
      if (b.retryAfterSeconds !== undefined) headers["retry-after"] = String(b.retryAfterSeconds);
    }
    // A real push service refuses what it cannot authenticate.
    if (!push.vapidOk) status = 401;
    push.status = status;
    res.writeHead(status, headers).end();
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * RFC 8291 + RFC 8188: the body is salt(16) | rs(4) | idlen(1) | keyid (the
 * sender's ephemeral public key) | records. Each record is AES-128-GCM with a
 * 16-byte tag; its plaintext ends in a delimiter (2 for the last record, 1
 * otherwise) followed by zero padding.
 */
export function decryptAes128gcm(body: Buffer, ecdh: ECDH, authSecret: Buffer): Buffer {
  if (body.length < 21) throw new Error("body shorter than the aes128gcm header");
  const salt = body.subarray(0, 16);
  const rs = body.readUInt32BE(16);
  const idlen = body[20]!;
  const asPublic = body.subarray(21, 21 + idlen);
  if (idlen !== 65 || asPublic[0] !== 0x04) throw new Error("keyid is not an uncompressed P-256 public key");
  if (rs < 18) throw new Error(`record size ${rs} too small`);
  const uaPublic = ecdh.getPublicKey();
  const ecdhSecret = ecdh.computeSecret(asPublic);
  // IKM = HKDF(salt = auth_secret, ikm = ecdh_secret, info = "WebPush: info\0" || ua_public || as_public, 32)
  const keyInfo = Buffer.concat([Buffer.from("WebPush: info\0"), uaPublic, asPublic]);
  const ikm = Buffer.from(hkdfSync("sha256", ecdhSecret, authSecret, keyInfo, 32));
  const cek = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: aes128gcm\0"), 16));
  const baseNonce = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: nonce\0"), 12));

  const records = body.subarray(21 + idlen);
  const out: Buffer[] = [];
  let seq = 0;
  for (let off = 0; off < records.length; off += rs, seq++) {
    const record = records.subarray(off, Math.min(off + rs, records.length));
    if (record.length < 17) throw new Error("record too short");
    const nonce = Buffer.from(baseNonce);
    // XOR the record sequence number into the nonce (big-endian; records here are far fewer than 2^32).
    nonce.writeUInt32BE((nonce.readUInt32BE(8) ^ seq) >>> 0, 8);
    const decipher = createDecipheriv("aes-128-gcm", cek, nonce);
    decipher.setAuthTag(record.subarray(record.length - 16));
    const plain = Buffer.concat([decipher.update(record.subarray(0, record.length - 16)), decipher.final()]);
    let end = plain.length - 1;
    while (end >= 0 && plain[end] === 0) end--;
    if (end < 0) throw new Error("record without a padding delimiter");
    const last = off + rs >= records.length;
    if (plain[end] !== (last ? 2 : 1)) throw new Error(`bad padding delimiter ${plain[end]}`);
    out.push(plain.subarray(0, end));
  }
  return Buffer.concat(out);
}

/** Checks "vapid t=<jwt>, k=<key>" (RFC 8292): ES256 signature, audience, expiry. */
export function verifyVapid(authorization: string | undefined, audience: string): { publicKey: string; subject: string } {
  if (!authorization) throw new Error("no Authorization header");
  const m = /^vapid\s+(.+)$/i.exec(authorization);
  if (!m) throw new Error(`not a vapid authorization: ${authorization.slice(0, 20)}`);
  const params = Object.fromEntries(
    m[1]!.split(",").map((p) => {
      const i = p.indexOf("=");
      return [p.slice(0, i).trim(), p.slice(i + 1).trim()];
    }),
  );
  const jwt = params.t;
  const k = params.k;
  if (!jwt || !k) throw new Error("vapid needs t= and k=");
  const [h, p, s] = jwt.split(".");
  if (!h || !p || !s) throw new Error("malformed JWT");
  const head = JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as { alg?: string };
  if (head.alg !== "ES256") throw new Error(`alg ${head.alg}`);
  const raw = Buffer.from(k, "base64url");
  if (raw.length !== 65) throw new Error("k is not an uncompressed P-256 key");
  const key = createPublicKey({
    key: { kty: "EC", crv: "P-256", x: raw.subarray(1, 33).toString("base64url"), y: raw.subarray(33).toString("base64url") },
    format: "jwk",
  });
  const ok = verify("sha256", Buffer.from(`${h}.${p}`), { key, dsaEncoding: "ieee-p1363" }, Buffer.from(s, "base64url"));
  if (!ok) throw new Error("JWT signature does not verify");
  const claims = JSON.parse(Buffer.from(p, "base64url").toString("utf8")) as { aud?: string; exp?: number; sub?: string };
  if (claims.aud !== audience) throw new Error(`aud ${claims.aud} is not ${audience}`);
  if (!claims.exp || claims.exp * 1000 < Date.now()) throw new Error("JWT expired");
  if (claims.exp * 1000 > Date.now() + 24 * 3600 * 1000 + 60_000) throw new Error("JWT expiry more than 24 h away");
  return { publicKey: k, subject: claims.sub ?? "" };
}

/** Registers `sub` as the Web Push endpoint of the device holding `token`, previews shown, not muted. */
export async function registerWebPush(baseUrl: string, token: string, sub: TestSubscription): Promise<void> {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const push = createClient(PushService, createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [auth] }));
  await push.registerPushEndpoint({
    endpoint: { case: "webPush", value: { endpoint: sub.endpoint, p256dh: sub.p256dh, auth: sub.auth } },
    settings: { hidePreview: false, muted: false },
  });
}
