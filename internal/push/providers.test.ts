import assert from "node:assert/strict";
import { generateKeyPairSync, verify, type KeyObject } from "node:crypto";
import http from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import webpush from "web-push";
import { ApnsProvider } from "./apns.js";
import { Registry } from "prom-client";
import { FcmProvider } from "./fcm.js";
import { pushEndpoint } from "../../test/support/push-endpoint.js";
import { pushMetrics } from "./metrics.js";
import { createPushProviders } from "./providers.js";
import type { PushEndpoint, PushNotification } from "./port.js";

const notification: PushNotification = {
  collapseKey: "c42",
  title: "Bob",
  body: "hi",
  ttlSeconds: 60,
  data: { type: "message", channelId: "42" },
};

const endpoint = (kind: PushEndpoint["kind"], address: string) => pushEndpoint({ kind, address });

function verifyJwt(jwt: string, key: KeyObject, alg: "ES256" | "RS256") {
  const [h, p, s] = jwt.split(".");
  const ok = verify("sha256", Buffer.from(`${h}.${p}`), alg === "ES256" ? { key, dsaEncoding: "ieee-p1363" } : key, Buffer.from(s!, "base64url"));
  assert.ok(ok, "JWT signature verifies");
  return { header: JSON.parse(Buffer.from(h!, "base64url").toString()), claims: JSON.parse(Buffer.from(p!, "base64url").toString()) };
}

/** An APNs provider that sends to a loopback stand-in of Apple's service. */
function apnsAt(server: { address(): unknown }, key: KeyObject): ApnsProvider {
  return new ApnsProvider({
    key,
    keyId: "KEY123",
    teamId: "TEAM456",
    topic: "com.example.chat",
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
  });
}

/** A loopback stand-in of Apple's service: answers each request as `answer` says then, with a JSON {reason} when it names one. */
async function apnsStandIn(
  answer: () => { status: number; reason?: string },
  seen: { headers: http2.IncomingHttpHeaders; body: string }[] = [],
): Promise<http2.Http2Server> {
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    let body = "";
    stream.on("data", (c) => (body += c));
    stream.on("end", () => {
      seen.push({ headers, body });
      const { status, reason } = answer();
      stream.respond({ ":status": status, "content-type": "application/json" });
      stream.end(reason ? JSON.stringify({ reason }) : "");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return server;
}

describe("push providers against local stand-ins of their services", () => {
  describe("APNs (HTTP/2, ES256 provider token)", () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    let server: http2.Http2Server;
    let answer: { status: number; reason?: string } = { status: 200 };
    const seen: { headers: http2.IncomingHttpHeaders; body: string }[] = [];
    let provider: ApnsProvider;

    before(async () => {
      server = await apnsStandIn(() => answer, seen);
      provider = apnsAt(server, privateKey);
    });
    after(async () => {
      await provider.close();
      await new Promise<void>((r) => server.close(() => r()));
    });

    it("sends an alert with the token, topic, collapse id and a verifiable provider token", async () => {
      answer = { status: 200 };
      assert.deepEqual(await provider.send(endpoint("apns", "ab".repeat(32)), notification, 2000), { ok: true });
      const { headers, body } = seen.at(-1)!;
      assert.equal(headers[":path"], `/3/device/${"ab".repeat(32)}`);
      assert.equal(headers["apns-topic"], "com.example.chat");
      assert.equal(headers["apns-collapse-id"], "c42");
      assert.equal(headers["apns-push-type"], "alert");
      const { header, claims } = verifyJwt(String(headers.authorization).replace(/^bearer /, ""), publicKey, "ES256");
      assert.equal(header.kid, "KEY123");
      assert.equal(claims.iss, "TEAM456");
      assert.deepEqual(JSON.parse(body).aps.alert, { title: "Bob", body: "hi" });
    });

    it("reports dead tokens as gone and 5xx as retryable", async () => {
      answer = { status: 410, reason: "Unregistered" };
      assert.equal((await provider.send(endpoint("apns", "cd".repeat(32)), notification, 2000) as { gone: boolean }).gone, true);
      answer = { status: 400, reason: "BadDeviceToken" };
      assert.equal((await provider.send(endpoint("apns", "cd".repeat(32)), notification, 2000) as { gone: boolean }).gone, true);
      answer = { status: 503, reason: "ServiceUnavailable" };
      const r = await provider.send(endpoint("apns", "cd".repeat(32)), notification, 2000);
      assert.ok(!r.ok && r.retryable && !r.gone);
    });
  });

  describe("APNs tokens it calls bad before a push went through (a misconfigured environment or topic)", () => {
    // Apple answers BadDeviceToken to every token of the other environment: a notifier pointed at the
    // sandbox with App Store builds' tokens (or the other way round) removed every iOS endpoint.
    let server: http2.Http2Server;
    let answer: { status: number; reason?: string };
    let provider: ApnsProvider;
    const send = (token: string, apnsTopic = "") => provider.send({ ...endpoint("apns", token), apnsTopic }, notification, 2000);

    beforeEach(async () => {
      server = await apnsStandIn(() => answer);
      provider = apnsAt(server, generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey);
    });
    afterEach(async () => {
      await provider.close();
      await new Promise<void>((r) => server.close(() => r()));
    });

    it("keeps the endpoint on BadDeviceToken or DeviceTokenNotForTopic, counted and not retried, until a push went through", async () => {
      const registry = new Registry();
      const { onResult } = pushMetrics(registry, () => 0);
      for (const reason of ["BadDeviceToken", "DeviceTokenNotForTopic"]) {
        answer = { status: 400, reason };
        const r = await send("ab".repeat(32));
        assert.ok(!r.ok && !r.gone && !r.retryable && r.goneUnconfirmed === reason, JSON.stringify(r));
        onResult({ endpoint: endpoint("apns", "ab".repeat(32)), notification, attempt: 1, outcome: r, action: "dropped" });
      }
      const kept = (await registry.getSingleMetric("chat_push_gone_unconfirmed_total")!.get()).values;
      assert.deepEqual(kept.map((v) => [v.labels.reason, v.value]), [["BadDeviceToken", 1], ["DeviceTokenNotForTopic", 1]]);
    });

    it("removes on Unregistered, ExpiredToken and 410 at once", async () => {
      for (const a of [{ status: 410, reason: "Unregistered" }, { status: 410, reason: "ExpiredToken" }, { status: 410 }]) {
        answer = a;
        const r = await send("cd".repeat(32));
        assert.ok(!r.ok && r.gone, JSON.stringify(r));
      }
    });

    it("removes on BadDeviceToken once a push went through, and on DeviceTokenNotForTopic once one went through to that topic", async () => {
      answer = { status: 200 };
      assert.deepEqual(await send("11".repeat(32)), { ok: true });
      answer = { status: 400, reason: "BadDeviceToken" };
      const bad = await send("22".repeat(32), "com.example.other");
      assert.ok(!bad.ok && bad.gone, JSON.stringify(bad));
      answer = { status: 400, reason: "DeviceTokenNotForTopic" };
      const proven = await send("33".repeat(32));
      assert.ok(!proven.ok && proven.gone, JSON.stringify(proven));
      const otherTopic = await send("33".repeat(32), "com.example.other");
      assert.ok(!otherTopic.ok && !otherTopic.gone && otherTopic.goneUnconfirmed === "DeviceTokenNotForTopic", JSON.stringify(otherTopic));
    });
  });

  describe("APNs when requests on the shared connection fail", () => {
    let server: http2.Http2Server;
    let provider: ApnsProvider;

    before(async () => {
      server = http2.createServer();
      // By device token: "00..." never answered, "ee..." reset without an error code, others answered after 300 ms.
      server.on("stream", (stream, headers) => {
        stream.on("error", () => {});
        stream.resume();
        const token = String(headers[":path"]).split("/").pop()!;
        if (token.startsWith("00")) return;
        if (token.startsWith("ee")) return stream.close(http2.constants.NGHTTP2_NO_ERROR);
        setTimeout(() => {
          if (stream.destroyed) return;
          stream.respond({ ":status": 200 });
          stream.end();
        }, 300);
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
      provider = apnsAt(server, generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey);
    });
    after(async () => {
      await provider.close();
      await new Promise<void>((r) => server.close(() => r()));
    });

    it("one request timing out loses none of the others in flight on the same connection", async () => {
      const [hung, ...others] = await Promise.all([
        provider.send(endpoint("apns", "00".repeat(32)), notification, 100),
        ...["11", "22", "33"].map((t) => provider.send(endpoint("apns", t.repeat(32)), notification, 2000)),
      ]);
      assert.ok(!hung!.ok && hung!.retryable, "the hung one is retried");
      for (const r of others) assert.ok(r.ok || r.retryable, `not dropped: ${JSON.stringify(r)}`);
      assert.deepEqual(await provider.send(endpoint("apns", "44".repeat(32)), notification, 2000), { ok: true }, "later sends go through");
    });

    it("a stream closed without a response is retryable", async () => {
      const r = await provider.send(endpoint("apns", "ee".repeat(32)), notification, 2000);
      assert.ok(!r.ok && r.retryable && !r.gone, JSON.stringify(r));
    });
  });

  describe("FCM HTTP v1 (service-account OAuth)", () => {
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    let server: http.Server;
    let base = "";
    let sendStatus = 200;
    /** What a 400 says: FCM's error, with the field it refused. */
    let badRequestField = "message.token";
    let tokensIssued = 0;
    const sends: { auth: string; body: { message: Record<string, unknown> } }[] = [];
    let provider: FcmProvider;

    before(async () => {
      server = http.createServer((req, res) => {
        let body = "";
        req.on("data", (c) => (body += c));
        req.on("end", () => {
          if (req.url === "/token") {
            const assertion = new URLSearchParams(body).get("assertion")!;
            const { claims } = verifyJwt(assertion, publicKey, "RS256");
            assert.equal(claims.iss, "svc@example.iam");
            assert.equal(claims.scope, "https://www.googleapis.com/auth/firebase.messaging");
            tokensIssued++;
            res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ access_token: `tok${tokensIssued}`, expires_in: 3600 }));
            return;
          }
          if (req.url === "/v1/projects/proj-1/messages:send") {
            sends.push({ auth: String(req.headers.authorization), body: JSON.parse(body) });
            if (sendStatus === 404) res.writeHead(404).end(JSON.stringify({ error: { status: "NOT_FOUND", details: [{ errorCode: "UNREGISTERED" }] } }));
            else if (sendStatus === 400) {
              res.writeHead(400).end(JSON.stringify({ error: { code: 400, status: "INVALID_ARGUMENT", details: [
                { "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode: "INVALID_ARGUMENT" },
                { "@type": "type.googleapis.com/google.rpc.BadRequest", fieldViolations: [{ field: badRequestField, description: "Invalid value" }] },
              ] } }));
            }
            else res.writeHead(sendStatus).end("{}");
            return;
          }
          res.writeHead(404).end();
        });
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      provider = new FcmProvider({ account: account(), url: base });
    });
    after(async () => {
      await new Promise<void>((r) => server.close(() => r()));
    });
    const account = () => ({
      project_id: "proj-1",
      client_email: "svc@example.iam",
      private_key: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      token_uri: `${base}/token`,
    });

    it("sends with a cached access token, the collapse key and the data", async () => {
      sendStatus = 200;
      assert.deepEqual(await provider.send(endpoint("fcm", "reg-token"), notification, 2000), { ok: true });
      assert.deepEqual(await provider.send(endpoint("fcm", "reg-token"), notification, 2000), { ok: true });
      assert.equal(tokensIssued, 1, "the access token is reused");
      const m = sends.at(-1)!;
      assert.equal(m.auth, "Bearer tok1");
      assert.equal(m.body.message.token, "reg-token");
      assert.deepEqual(m.body.message.notification, { title: "Bob", body: "hi" });
      assert.equal((m.body.message.android as { collapse_key: string }).collapse_key, "c42");
      assert.deepEqual(m.body.message.data, notification.data);
    });

    it("reports UNREGISTERED as gone and renews the token after a 401", async () => {
      sendStatus = 404;
      const gone = await provider.send(endpoint("fcm", "old"), notification, 2000);
      assert.ok(!gone.ok && gone.gone);
      sendStatus = 401;
      const r = await provider.send(endpoint("fcm", "x"), notification, 2000);
      assert.ok(!r.ok && r.retryable);
      sendStatus = 200;
      await provider.send(endpoint("fcm", "x"), notification, 2000);
      assert.equal(sends.at(-1)!.auth, "Bearer tok2");
    });

    it("reports a token FCM calls not a valid registration token (INVALID_ARGUMENT on message.token) as gone; another field refused keeps it", async () => {
      sendStatus = 400;
      badRequestField = "message.token";
      const bad = await provider.send(endpoint("fcm", "not-a-token"), notification, 2000);
      assert.ok(!bad.ok && bad.gone && !bad.retryable, JSON.stringify(bad));
      // The message was wrong (ours), not the token: kept.
      badRequestField = "message.data";
      const ours = await provider.send(endpoint("fcm", "live-token"), notification, 2000);
      assert.ok(!ours.ok && !ours.gone && !ours.retryable, JSON.stringify(ours));
      sendStatus = 200;
    });

    it("keeps a token that a 404 without FCM's UNREGISTERED answers (a wrong project id or URL would otherwise remove them all)", async () => {
      const misconfigured = new FcmProvider({ account: { ...account(), project_id: "proj-typo" }, url: base });
      const r = await misconfigured.send(endpoint("fcm", "live-token"), notification, 2000);
      assert.ok(!r.ok && !r.gone && !r.retryable, JSON.stringify(r));
      assert.equal(r.status, 404);
    });
  });
});

describe("createPushProviders", () => {
  it("hands its logger to APNs, which tells of a connection dropped for an unanswered PING there", async () => {
    const dir = mkdtempSync(join(tmpdir(), "push-providers-"));
    try {
      const keyFile = join(dir, "apns.p8");
      writeFileSync(keyFile, generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }));
      const vapid = webpush.generateVAPIDKeys();
      const logger = pino({ level: "silent" });
      const push = createPushProviders(
        {
          vapidSubject: "mailto:ops@example.com",
          vapidPublicKey: vapid.publicKey,
          vapidPrivateKey: vapid.privateKey,
          allowHttpEndpoints: false,
          apns: { keyFile, keyId: "K", teamId: "T", topic: "app", url: "https://127.0.0.1:1" },
        },
        logger,
      );
      try {
        const options = (push.providers.apns as unknown as { options: { logger?: unknown } }).options;
        assert.ok(options.logger, "the APNs provider has the process's logger");
      } finally {
        await push.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
