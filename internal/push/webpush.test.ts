import assert from "node:assert/strict";
import dns from "node:dns";
import { mkdtempSync, rmSync } from "node:fs";
import https from "node:https";
import net, { type AddressInfo, type LookupFunction } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PushReceiver } from "../../test/support/push-receiver.js";
import { createPushAgents, publicOnlyLookup } from "./egress.js";
import type { PushEndpoint, PushNotification } from "./port.js";
import { loadOrCreateVapidKeys, type VapidKeys } from "./vapid.js";
import { WebPushProvider } from "./webpush.js";

/**
 * Resolves `localtest.me` to loopback (as that public name really does: the
 * shape of a DNS-based SSRF), `mixed` to a public and a private address,
 * `public` to public ones; the rest as usual. Records the names asked for.
 */
function fakeDns(asked: string[]): LookupFunction {
  const answers: Record<string, dns.LookupAddress[]> = {
    "localtest.me": [{ address: "127.0.0.1", family: 4 }],
    mixed: [{ address: "8.8.8.8", family: 4 }, { address: "10.0.0.7", family: 4 }],
    public: [{ address: "2001:4860:4860::8888", family: 6 }, { address: "8.8.8.8", family: 4 }],
  };
  return (hostname, options, callback) => {
    asked.push(hostname);
    const found = answers[hostname];
    if (!found) return dns.lookup(hostname, options, callback);
    if (options.all) callback(null, found);
    else callback(null, found[0]!.address, found[0]!.family);
  };
}

const notification: PushNotification = { collapseKey: "c1", title: "Bob", body: "hi", ttlSeconds: 60, data: { type: "message" } };

describe("push: Web Push requests never reach private addresses (SSRF)", function () {
  this.timeout(20_000);
  let asked: string[];
  beforeEach(() => (asked = []));

  describe("the public-only lookup", () => {
    const lookup = (l: LookupFunction, host: string, all: boolean) =>
      new Promise<unknown>((resolve, reject) => l(host, { all }, (err, address, family) => (err ? reject(err) : resolve(all ? address : [address, family]))));

    it("passes public answers through, in both callback forms", async () => {
      const l = publicOnlyLookup(fakeDns(asked));
      assert.deepEqual(await lookup(l, "public", false), ["2001:4860:4860::8888", 6]);
      assert.deepEqual(await lookup(l, "public", true), [{ address: "2001:4860:4860::8888", family: 6 }, { address: "8.8.8.8", family: 4 }]);
    });

    it("refuses a name with any non-public address, naming it", async () => {
      const l = publicOnlyLookup(fakeDns(asked));
      for (const all of [false, true]) {
        await assert.rejects(lookup(l, "localtest.me", all), { code: "ERR_PUSH_ADDRESS_REFUSED", message: /localtest\.me.*127\.0\.0\.1/ });
        await assert.rejects(lookup(l, "mixed", all), { code: "ERR_PUSH_ADDRESS_REFUSED", message: /10\.0\.0\.7/ });
      }
    });
  });

  describe("the agents", () => {
    let server: net.Server;
    let port = 0;
    let connections = 0;
    before(async () => {
      server = net.createServer((socket) => {
        connections++;
        socket.destroy();
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
      port = (server.address() as AddressInfo).port;
    });
    after(async () => new Promise<void>((r) => server.close(() => r())));
    beforeEach(() => (connections = 0));

    const get = (agent: https.Agent) =>
      new Promise<NodeJS.ErrnoException>((resolve) => {
        const req = https.get({ host: "localtest.me", port, path: "/", agent, timeout: 5_000 }, () => resolve(new Error("answered")));
        req.on("error", resolve);
      });

    it("do not connect to a loopback receiver whose name resolves to 127.0.0.1", async () => {
      const agents = createPushAgents({ allowLocal: false, lookup: fakeDns(asked) });
      const err = await get(agents.https);
      agents.destroy();
      assert.equal(err.code, "ERR_PUSH_ADDRESS_REFUSED");
      assert.deepEqual(asked, ["localtest.me"]);
      assert.equal(connections, 0, "no connection was made");
    });

    it("do connect to it when local endpoints are allowed", async () => {
      const agents = createPushAgents({ allowLocal: true, lookup: fakeDns(asked) });
      const err = await get(agents.https);
      agents.destroy();
      assert.notEqual(err.code, "ERR_PUSH_ADDRESS_REFUSED");
      assert.equal(connections, 1);
    });
  });

  describe("WebPushProvider", () => {
    let dir: string;
    let vapid: VapidKeys;
    let receiver: PushReceiver;
    const providers: WebPushProvider[] = [];
    const provider = (allowLocalEndpoints: boolean) => {
      const p = new WebPushProvider({ vapid, subject: "mailto:ops@chat.test", allowLocalEndpoints, lookup: fakeDns(asked) });
      providers.push(p);
      return p;
    };
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), "webpush-"));
      vapid = loadOrCreateVapidKeys(join(dir, "vapid.json"));
      receiver = await new PushReceiver().start();
    });
    after(async () => {
      await Promise.all(providers.map((p) => p.close()));
      await receiver.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    /** A receiver subscription reached through the name `localtest.me` instead of 127.0.0.1. */
    function localtestEndpoint(): PushEndpoint {
      const sub = receiver.subscribe();
      sub.endpoint = sub.endpoint.replace("127.0.0.1", "localtest.me");
      return { userId: 1n, deviceId: 2n, kind: "web_push", address: sub.endpoint, p256dh: sub.p256dh, auth: sub.auth, apnsTopic: "", hidePreview: false, muted: false, updatedAtMs: 0 };
    }
    const at = (address: string): PushEndpoint => ({ ...localtestEndpoint(), address });

    it("refuses, as a dead endpoint, a public-looking name that resolves to loopback", async () => {
      const outcome = await provider(false).send(at("https://localtest.me/push/x"), notification, 5_000);
      assert.ok(!outcome.ok);
      assert.equal(outcome.gone, true, "removed like a dead endpoint");
      assert.equal(outcome.retryable, false);
      assert.match(outcome.reason, /localtest\.me.*127\.0\.0\.1/);
      assert.deepEqual(asked, ["localtest.me"], "refused after DNS, not by the name");
    });

    it("refuses, without resolving or connecting, endpoints stored before the registration rule (loopback, metadata, http, other ports)", async () => {
      const before = receiver.received.length;
      const p = provider(false);
      for (const address of ["https://127.0.0.1/x", "https://[::ffff:a9fe:a9fe]/latest", "https://localhost/x", localtestEndpoint().address.replace("localtest.me", "127.0.0.1")]) {
        const outcome = await p.send(at(address), notification, 5_000);
        assert.ok(!outcome.ok && outcome.gone && !outcome.retryable, address);
      }
      assert.deepEqual(asked, []);
      assert.equal(receiver.received.length, before, "the receiver saw nothing");
    });

    it("delivers to that receiver when local endpoints are allowed (CHAT_PUSH_ALLOW_HTTP)", async () => {
      const endpoint = localtestEndpoint();
      assert.deepEqual(await provider(true).send(endpoint, notification, 5_000), { ok: true });
      assert.ok(asked.includes("localtest.me"));
      const push = receiver.received.at(-1)!;
      assert.equal(push.vapidOk, true, push.error);
      assert.equal(push.json?.body, "hi");
    });
  });
});
