import assert from "node:assert/strict";
import { createECDH, generateKeyPairSync } from "node:crypto";
import http from "node:http";
import net, { type AddressInfo, type LookupFunction } from "node:net";
import { ApnsProvider } from "./apns.js";
import { FcmProvider } from "./fcm.js";
import { networkFailure, type PushEndpoint, type SendOutcome } from "./port.js";
import { WebPushProvider } from "./webpush.js";
import { loadOrCreateVapidKeys } from "./vapid.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../test/support/ports.js";
import { aNotification, pushEndpoint } from "../../test/support/push-endpoint.js";

const notification = aNotification;
const failedOurs = (o: SendOutcome) => !o.ok && o.retryable && !o.gone && o.ours === true;

/**
 * Sends that fail on our own DNS or network, before the push service took the
 * request, are `ours`: the notifier never counts them against the endpoint
 * (PushEndpoint.failingSinceMs), or an outage of our network removed every
 * endpoint of a service that delivered within the hour.
 */
describe("push sends that never connected are ours", () => {
  /** A loopback port where nothing listens: connections to it are refused. */
  let refusing = 0;
  /** A loopback server that takes each connection and drops it unanswered: connected, then reset. */
  let dropping: net.Server;
  let droppingPort = 0;
  /** The OAuth token endpoint FCM's access token comes from, answering at once. */
  let tokens: http.Server;
  let tokenUri = "";
  before(async () => {
    refusing = await freePort();
    dropping = net.createServer((s) => s.on("error", () => {}).once("data", () => s.destroy()));
    await new Promise<void>((r) => dropping.listen(0, "127.0.0.1", () => r()));
    droppingPort = (dropping.address() as AddressInfo).port;
    tokens = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ access_token: "tok", expires_in: 3600 })));
    });
    await new Promise<void>((r) => tokens.listen(0, "127.0.0.1", () => r()));
    tokenUri = `http://127.0.0.1:${(tokens.address() as AddressInfo).port}/token`;
  });
  after(async () => {
    tokens.closeAllConnections();
    await Promise.all([new Promise((r) => dropping.close(r)), new Promise((r) => tokens.close(r))]);
  });

  describe("FCM", () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const fcm = (url: string) =>
      new FcmProvider({
        account: { project_id: "p", client_email: "svc@example.iam", private_key: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), token_uri: tokenUri },
        url,
      });
    const endpoint = pushEndpoint({ kind: "fcm", address: "t1" });

    it("a connection refused (the access token fetched) is ours", async () => {
      const o = await fcm(`http://127.0.0.1:${refusing}`).send(endpoint, notification, 5_000);
      assert.ok(failedOurs(o), JSON.stringify(o));
      assert.match(!o.ok ? o.reason : "", /ECONNREFUSED/);
    });

    it("a connection made and then dropped unanswered is not: the request may have reached FCM", async () => {
      const o = await fcm(`http://127.0.0.1:${droppingPort}`).send(endpoint, notification, 5_000);
      assert.ok(!o.ok && o.retryable && !o.ours, JSON.stringify(o));
    });
  });

  describe("APNs", () => {
    const key = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    const apns = (url: string) => new ApnsProvider({ key, keyId: "K", teamId: "T", topic: "com.example.chat", url });
    const endpoint = pushEndpoint({ kind: "apns", address: "aa".repeat(32) });

    it("a connection refused is ours", async () => {
      const p = apns(`http://127.0.0.1:${refusing}`);
      try {
        const o = await p.send(endpoint, notification, 5_000);
        assert.ok(failedOurs(o), JSON.stringify(o));
      } finally {
        await p.close();
      }
    });

    it("a connection made and then dropped unanswered is not", async () => {
      const p = apns(`http://127.0.0.1:${droppingPort}`);
      try {
        const o = await p.send(endpoint, notification, 5_000);
        assert.ok(!o.ok && o.retryable && !o.ours, JSON.stringify(o));
      } finally {
        await p.close();
      }
    });
  });

  describe("Web Push", () => {
    let dir: string;
    const providers: WebPushProvider[] = [];
    before(() => void (dir = mkdtempSync(join(tmpdir(), "webpush-connect-"))));
    after(async () => {
      await Promise.all(providers.map((p) => p.close()));
      rmSync(dir, { recursive: true, force: true });
    });
    /** Names for the test: `push.test` is loopback, `gone.test` is not found (as getaddrinfo says it), `flaky.test` a DNS server that did not answer. */
    const lookup: LookupFunction = (hostname, options, callback) => {
      const failed = (code: string) => callback(Object.assign(new Error(`getaddrinfo ${code} ${hostname}`), { code, syscall: "getaddrinfo", hostname }), "");
      if (hostname === "gone.test") return failed("ENOTFOUND");
      if (hostname === "flaky.test") return failed("EAI_AGAIN");
      if (options.all) return callback(null, [{ address: "127.0.0.1", family: 4 }]);
      callback(null, "127.0.0.1", 4);
    };
    const webPush = () => {
      const p = new WebPushProvider({ vapid: loadOrCreateVapidKeys(join(dir, "vapid.json")), subject: "mailto:ops@chat.test", allowLocalEndpoints: true, lookup });
      providers.push(p);
      return p;
    };
    // A subscription's keys as a browser makes them: the payload is encrypted before any connection.
    const ecdh = createECDH("prime256v1");
    ecdh.generateKeys();
    const keys = { p256dh: ecdh.getPublicKey("base64url"), auth: Buffer.alloc(16, 7).toString("base64url") };
    const at = (address: string): PushEndpoint => pushEndpoint({ kind: "web_push", address, ...keys });

    for (const [what, address] of [
      ["a connection refused", () => `http://push.test:${refusing}/push/1`],
      ["its host not found", () => `http://gone.test:${refusing}/push/1`],
      ["a DNS server that did not answer (EAI_AGAIN)", () => `http://flaky.test:${refusing}/push/1`],
    ] as const) {
      it(`${what} is ours`, async () => {
        const o = await webPush().send(at(address()), notification, 5_000);
        assert.ok(failedOurs(o), JSON.stringify(o));
      });
    }

    it("a connection made and then dropped unanswered is not", async () => {
      const o = await webPush().send(at(`http://push.test:${droppingPort}/push/1`), notification, 5_000);
      assert.ok(!o.ok && o.retryable && !o.ours, JSON.stringify(o));
    });
  });

  it("tells a connect or lookup failure from one after connecting, however the client wraps it", () => {
    const sys = (code: string, syscall?: string) => Object.assign(new Error(code), { code, ...(syscall && { syscall }) });
    const ours = (err: unknown) => networkFailure(err).ok === false && (networkFailure(err) as { ours?: boolean }).ours === true;
    // fetch's TypeError, http2's cancelled pending stream, happy eyeballs' AggregateError.
    assert.ok(ours(new TypeError("fetch failed", { cause: sys("ECONNREFUSED", "connect") })));
    assert.ok(ours(Object.assign(new Error("The pending stream has been canceled"), { code: "ERR_HTTP2_STREAM_CANCEL", cause: sys("ENOTFOUND", "getaddrinfo") })));
    assert.ok(ours(new AggregateError([sys("ECONNREFUSED", "connect"), sys("ETIMEDOUT", "connect")])));
    assert.ok(ours(new TypeError("fetch failed", { cause: sys("UND_ERR_CONNECT_TIMEOUT") })));
    assert.ok(ours(sys("ETIMEDOUT", "connect")));
    // Connected: the service may have the request.
    assert.ok(!ours(sys("ETIMEDOUT", "read")));
    assert.ok(!ours(sys("ECONNRESET", "read")));
    assert.ok(!ours(new AggregateError([sys("ECONNREFUSED", "connect"), sys("ECONNRESET", "read")])));
    assert.ok(!ours(Object.assign(new Error("The operation was aborted due to timeout"), { name: "TimeoutError" })));
  });
});

