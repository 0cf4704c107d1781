import assert from "node:assert/strict";
import { createECDH, randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { SqlitePushEndpointStore } from "../push/sqlite.js";
import { openDatabase } from "../storage/sqlite/database.js";
import type { ApiDeps } from "./deps.js";
import type { PushApiDeps } from "./push-service.js";
import { holdNext, rpcError, TestApi, type TestUser } from "./testkit.js";

/** A browser-like subscription's keys for an endpoint URL. */
function webPush(endpoint: string) {
  const ecdh = createECDH("prime256v1");
  ecdh.generateKeys();
  const value = { endpoint, p256dh: ecdh.getPublicKey().toString("base64url"), auth: randomBytes(16).toString("base64url") };
  return { endpoint: { case: "webPush" as const, value } };
}

/** A TestApi whose PushService keeps endpoints in an in-memory SQLite store (Web Push only). */
async function pushApi(allowHttpEndpoints = false) {
  const db = openDatabase(":memory:");
  const endpoints = new SqlitePushEndpointStore(db);
  const deps: Partial<ApiDeps> & PushApiDeps = { push: { endpoints, enabled: new Set(["web_push"]), vapidPublicKey: "k", allowHttpEndpoints } };
  const api = await TestApi.start(deps);
  return { api, endpoints, close: async () => (await api.close(), db.close()) };
}

describe("api: PushService refuses Web Push endpoints that reach into private networks", () => {
  let h: Awaited<ReturnType<typeof pushApi>>;
  let endpoints: SqlitePushEndpointStore;
  let user: TestUser;

  async function start(allowHttpEndpoints: boolean) {
    h = await pushApi(allowHttpEndpoints);
    endpoints = h.endpoints;
    user = await h.api.signUp();
  }
  afterEach(async () => {
    await h.close();
  });

  const refusals: [string, string, RegExp][] = [
    ["http", "http://push.example.com/x", /must be an https:\/\/ URL/],
    ["credentials", "https://user:secret@push.example.com/x", /must not carry credentials/],
    ["a non-default port", "https://push.example.com:2379/x", /default https port/],
    ["localhost", "https://localhost/x", /public host name/],
    ["a *.localhost name", "https://metadata.localhost/x", /public host name/],
    ["localhost with a trailing dot", "https://LOCALHOST./x", /public host name/],
    ["a single-label name", "https://etcd/x", /public host name/],
    ["a .internal name", "https://metadata.google.internal/computeMetadata/v1/", /public host name/],
    ["IPv4 loopback", "https://127.0.0.1/x", /non-public address \(127\.0\.0\.1\)/],
    ["IPv4 loopback written as a number", "https://2130706433/x", /non-public address \(127\.0\.0\.1\)/],
    ["cloud metadata (link-local)", "https://169.254.169.254/latest/meta-data/", /non-public address/],
    ["RFC 1918 10/8", "https://10.1.2.3/x", /non-public address/],
    ["RFC 1918 172.16/12", "https://172.20.0.1/x", /non-public address/],
    ["RFC 1918 192.168/16", "https://192.168.0.10/x", /non-public address/],
    ["CGNAT", "https://100.64.1.1/x", /non-public address/],
    ["unspecified", "https://0.0.0.0/x", /non-public address/],
    ["multicast", "https://224.0.0.251/x", /non-public address/],
    ["IPv6 loopback", "https://[::1]/x", /non-public address \(::1\)/],
    ["IPv6 unique local", "https://[fd00::1]/x", /non-public address/],
    ["IPv6 link-local", "https://[fe80::1]/x", /non-public address/],
    ["IPv4-mapped IPv6 loopback", "https://[::ffff:127.0.0.1]/x", /non-public address/],
    ["IPv4-mapped IPv6 metadata", "https://[::ffff:169.254.169.254]/x", /non-public address/],
  ];
  for (const [what, url, message] of refusals) {
    it(`refuses ${what}: ${url}`, async () => {
      await start(false);
      const err = await rpcError(() => user.c.push.registerPushEndpoint(webPush(url)));
      assert.equal(err.code, Code.InvalidArgument);
      assert.match(err.rawMessage, /^web_push\.endpoint /);
      assert.match(err.rawMessage, message);
      assert.equal(await endpoints.get(user.userId, user.deviceId), undefined, "nothing stored");
    });
  }

  it("accepts a public https endpoint on the default port (443 written out or not)", async () => {
    await start(false);
    await user.c.push.registerPushEndpoint(webPush("https://fcm.googleapis.com/fcm/send/abc"));
    assert.equal((await endpoints.get(user.userId, user.deviceId))?.address, "https://fcm.googleapis.com/fcm/send/abc");
    await user.c.push.registerPushEndpoint(webPush("https://[2a00:1450:4001:82a::200a]:443/x"));
    assert.equal((await endpoints.get(user.userId, user.deviceId))?.address, "https://[2a00:1450:4001:82a::200a]/x");
  });

  it("accepts loopback http endpoints on any port when CHAT_PUSH_ALLOW_HTTP is on (local tests), still without credentials", async () => {
    await start(true);
    for (const url of ["http://127.0.0.1:8080/push/1", "https://localhost:9443/push/2", "http://[::1]:8080/push/3"]) {
      await user.c.push.registerPushEndpoint(webPush(url));
      assert.equal((await endpoints.get(user.userId, user.deviceId))?.address, url);
    }
    const err = await rpcError(() => user.c.push.registerPushEndpoint(webPush("http://u:p@127.0.0.1:8080/x")));
    assert.match(err.rawMessage, /must not carry credentials/);
    assert.match((await rpcError(() => user.c.push.registerPushEndpoint(webPush("ftp://127.0.0.1/x")))).rawMessage, /https:\/\//);
  });
});

describe("api: PushService keeps a device's settings when it registers again without any", () => {
  let h: Awaited<ReturnType<typeof pushApi>>;
  beforeEach(async () => {
    h = await pushApi();
  });
  afterEach(async () => {
    await h.close();
  });

  it("a registration without settings keeps the endpoint's; one with settings sets them; a new endpoint gets the defaults", async () => {
    const user = await h.api.signUp();
    const stored = async () => {
      const e = await h.endpoints.get(user.userId, user.deviceId);
      return e && { address: e.address, hidePreview: e.hidePreview, muted: e.muted };
    };
    await user.c.push.registerPushEndpoint(webPush("https://push.example.com/a"));
    assert.deepEqual(await stored(), { address: "https://push.example.com/a", hidePreview: false, muted: false });
    await user.c.push.updatePushSettings({ settings: { hidePreview: true, muted: true } });
    // The page starting again (web/src/push.ts registers with no settings), with a renewed subscription.
    await user.c.push.registerPushEndpoint(webPush("https://push.example.com/b"));
    assert.deepEqual(await stored(), { address: "https://push.example.com/b", hidePreview: true, muted: true });
    await user.c.push.registerPushEndpoint({ ...webPush("https://push.example.com/b"), settings: { hidePreview: true, muted: false } });
    assert.deepEqual(await stored(), { address: "https://push.example.com/b", hidePreview: true, muted: false });
  });

  it("writes nothing for UpdatePushSettings with the settings the device has", async () => {
    const user = await h.api.signUp();
    await user.c.push.registerPushEndpoint({ ...webPush("https://push.example.com/a"), settings: { hidePreview: true, muted: false } });
    const at = (await h.endpoints.get(user.userId, user.deviceId))!.updatedAtMs;
    h.api.clock.ms += 60_000;
    await user.c.push.updatePushSettings({ settings: { hidePreview: true, muted: false } });
    assert.equal((await h.endpoints.get(user.userId, user.deviceId))!.updatedAtMs, at, "nothing written");
    await user.c.push.updatePushSettings({ settings: { hidePreview: true, muted: true } });
    assert.equal((await h.endpoints.get(user.userId, user.deviceId))!.updatedAtMs, at + 60_000);
  });

  it("refuses an UpdatePushSettings without settings, rather than reading it as unmuted with previews", async () => {
    const user = await h.api.signUp();
    await user.c.push.registerPushEndpoint({ ...webPush("https://push.example.com/a"), settings: { hidePreview: true, muted: true } });
    const err = await rpcError(() => user.c.push.updatePushSettings({}));
    assert.deepEqual([err.code, err.chatCode], [Code.InvalidArgument, "ERROR_CODE_INVALID_ARGUMENT"]);
    assert.match(err.rawMessage, /settings is required/);
    const e = await h.endpoints.get(user.userId, user.deviceId);
    assert.deepEqual([e?.hidePreview, e?.muted], [true, true]);
  });
});

describe("api: push endpoints go with their devices", () => {
  let api: TestApi;
  let h: Awaited<ReturnType<typeof pushApi>>;
  beforeEach(async () => {
    h = await pushApi(true);
    api = h.api;
  });
  afterEach(async () => {
    await h.close();
  });
  const addresses = async (userId: bigint) => (await h.endpoints.listForUser(userId)).map((e) => e.address);

  it("a signed-out device forgotten at a later login takes its endpoint along", async () => {
    const alice = await api.signUp("alice", "correct horse");
    await alice.c.push.registerPushEndpoint(webPush("http://127.0.0.1:9/old-phone"));
    // As a sign-out whose removal of the endpoint failed, or a registration racing it through another api process, leaves it.
    await api.storage.accounts.revokeDevice(alice.userId, alice.deviceId);
    api.clock.ms += 3 * 3600_000; // past any access token the old device held
    await api.anon.auth.login({ username: "alice", password: "correct horse", device: { name: "laptop" } });
    assert.deepEqual(await addresses(alice.userId), []);
  });

  it("a device logged out, revoked, or signed out by a password change takes its endpoint along at once", async () => {
    const alice = await api.signUp("alice", "correct horse");
    const device = async (name: string) => {
      const cr = (await api.anon.auth.login({ username: "alice", password: "correct horse", device: { name } })).credentials!;
      const c = api.clients(cr.accessToken);
      await c.push.registerPushEndpoint(webPush(`http://127.0.0.1:9/${name}`));
      return { deviceId: cr.deviceId, c };
    };
    await alice.c.push.registerPushEndpoint(webPush("http://127.0.0.1:9/main"));
    const [phone, tablet] = [await device("phone"), await device("tablet"), await device("laptop")];
    await phone.c.auth.logout({});
    assert.deepEqual((await addresses(alice.userId)).sort(), ["http://127.0.0.1:9/laptop", "http://127.0.0.1:9/main", "http://127.0.0.1:9/tablet"]);
    await alice.c.auth.revokeDevice({ deviceId: tablet.deviceId });
    assert.deepEqual((await addresses(alice.userId)).sort(), ["http://127.0.0.1:9/laptop", "http://127.0.0.1:9/main"]);
    await alice.c.auth.changePassword({ currentPassword: "correct horse", newPassword: "battery staple" });
    assert.deepEqual(await addresses(alice.userId), ["http://127.0.0.1:9/main"], "the device that changed it keeps its own");
  });

  it("a registration that lands after its device's sign-out (passed the check of its token before it) removes itself", async () => {
    const alice = await api.signUp("alice", "correct horse");
    const held = holdNext(h.endpoints, "put");
    const registering = rpcError(() => alice.c.push.registerPushEndpoint(webPush("http://127.0.0.1:9/phone")));
    await held.reached;
    await alice.c.auth.logout({});
    held.release();
    assert.equal((await registering).code, Code.Unauthenticated);
    assert.deepEqual(await addresses(alice.userId), []);
  });

  it("DeleteAccount removes every endpoint of the account, also one whose device row is gone", async () => {
    const alice = await api.signUp("alice", "correct horse");
    await alice.c.push.registerPushEndpoint(webPush("http://127.0.0.1:9/phone"));
    const laptop = await api.anon.auth.login({ username: "alice", password: "correct horse", device: { name: "laptop" } });
    const onLaptop = api.clients(laptop.credentials!.accessToken);
    await onLaptop.push.registerPushEndpoint(webPush("http://127.0.0.1:9/laptop"));
    // The phone's row forgotten without its endpoint (as a build before the fix did).
    await api.storage.accounts.revokeDevice(alice.userId, alice.deviceId);
    await api.storage.accounts.forgetDevice(alice.userId, alice.deviceId);
    await onLaptop.auth.deleteAccount({ password: "correct horse" });
    assert.deepEqual(await addresses(alice.userId), []);
  });
});
