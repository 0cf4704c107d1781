import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { PresenceService } from "../../gen/es/chat/v1/presence_pb.js";
import { PresenceStatus, type Presence } from "../../gen/es/chat/v1/types_pb.js";
import { apiClients, signUp, type TestUser } from "../support/api.js";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";
import { OwnRedis } from "../support/own-redis.js";
import { freePort } from "../support/ports.js";
import { PresenceWatcher } from "../support/presence-watcher.js";
import { waitFor } from "../support/wait.js";

const HEARTBEAT_MS = 1_000;
const GRACE_MS = 2_500;
const LAST_SEEN_WRITE_MS = 500;
const ENV = {
  CHAT_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
  CHAT_PRESENCE_GRACE_MS: String(GRACE_MS),
  CHAT_PRESENCE_SWEEP_MS: "50",
  CHAT_PRESENCE_LAST_SEEN_WRITE_MS: String(LAST_SEEN_WRITE_MS),
};

function presenceClient(baseUrl: string, token: string) {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createClient(PresenceService, createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [auth] }));
}

async function befriend(baseUrl: string, a: TestUser, b: TestUser): Promise<void> {
  await apiClients(baseUrl, a.devices[0]!.token).users.sendFriendRequest({ userId: b.userId });
  await apiClients(baseUrl, b.devices[0]!.token).users.respondFriendRequest({ userId: a.userId, accept: true });
}

const lastSeenOf = (p: Presence | undefined) => (p?.lastSeenAt ? timestampMs(p.lastSeenAt) : undefined);

describe("chatd system: last seen across a restart", function () {
  this.timeout(180_000);
  let chatd: ChatdProcess;
  const watchers: PresenceWatcher[] = [];
  const open = async (user: TestUser) => {
    const w = await PresenceWatcher.open(chatd.wsUrl, user.devices[0]!.token, HEARTBEAT_MS);
    watchers.push(w);
    return w;
  };

  before(async () => {
    chatd = await startChatd({ env: ENV });
  });
  after(async () => {
    await Promise.all(watchers.splice(0).map((w) => w.close()));
    await chatd.stop();
    removeDataDir(chatd.dataDir);
  });

  it("shows a friend the last seen of a user who went offline before the restart, and of one online when it stopped", async () => {
    const [alice, bob, carol, dave] = await Promise.all(["alice", "bob", "carol", "dave"].map((n) => signUp(chatd.httpUrl, n)));
    await befriend(chatd.httpUrl, alice!, bob!);
    await befriend(chatd.httpUrl, dave!, bob!);
    const b = await open(bob!);
    const a = await open(alice!);
    await open(dave!);
    await b.hears(alice!.userId, [PresenceStatus.ONLINE], "alice online");
    await b.hears(dave!.userId, [PresenceStatus.ONLINE], "dave online");

    await a.close();
    await b.hears(alice!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "alice offline", 15_000);
    const aliceSeen = lastSeenOf(b.events(alice!.userId)[1]);
    assert.ok(aliceSeen !== undefined, "alice's offline event carries her last seen");

    // Dave is still online when chatd stops (an upgrade): his session is cut by the stop.
    const stopping = Date.now();
    await chatd.stop();
    const stopped = Date.now();
    await Promise.all(watchers.splice(0).map((w) => w.close()));
    chatd = await startChatd({ dataDir: chatd.dataDir, env: ENV });

    const [aliceNow, daveNow] = (await presenceClient(chatd.httpUrl, bob!.devices[0]!.token).getPresence({ userIds: [alice!.userId, dave!.userId] }))
      .presences;
    assert.equal(aliceNow!.status, PresenceStatus.OFFLINE);
    assert.equal(lastSeenOf(aliceNow), aliceSeen, "alice's last seen, as heard before the restart");
    assert.equal(daveNow!.status, PresenceStatus.OFFLINE);
    const daveSeen = lastSeenOf(daveNow);
    // His last frame at the latest, a heartbeat interval before the stop at the earliest.
    assert.ok(daveSeen !== undefined && daveSeen >= stopping - HEARTBEAT_MS && daveSeen <= stopped, `${daveSeen} in [${stopping - HEARTBEAT_MS}, ${stopped}]`);

    // A session told the user's presence after the restart (a new friendship) hears the same last seen.
    const c = await open(carol!);
    await befriend(chatd.httpUrl, alice!, carol!);
    await c.hears(alice!.userId, [PresenceStatus.OFFLINE], "alice's presence told to her new friend");
    assert.equal(lastSeenOf(c.events(alice!.userId)[0]), aliceSeen);
  });

  it("shows a user who was online when chatd was killed (-9) as last seen then, not at their previous last seen", async () => {
    const [erin, frank] = await Promise.all(["erin", "frank"].map((n) => signUp(chatd.httpUrl, n)));
    await befriend(chatd.httpUrl, erin!, frank!);
    const f = await open(frank!);
    const e = await open(erin!);
    await f.hears(erin!.userId, [PresenceStatus.ONLINE], "erin online");
    await e.close();
    await f.hears(erin!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "erin offline", 15_000);
    const earlier = lastSeenOf(f.events(erin!.userId)[1])!;
    await open(erin!);
    await f.hears(erin!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE, PresenceStatus.ONLINE], "erin back online");
    const backAt = Date.now();

    // Her last seen is written through while she stays online: wait for one two heartbeats into her session.
    const db = new Database(join(chatd.dataDir, "chat.db"), { readonly: true });
    const lookup = db.prepare("SELECT at_ms FROM presence_last_seen WHERE user_id = ?").pluck();
    let written: number;
    try {
      written = await waitFor(() => {
        const at = Number(lookup.get(erin!.userId) ?? 0);
        return at > backAt + 2 * HEARTBEAT_MS && at;
      }, "erin's last seen written to chat.db while she is online", 15_000);
    } finally {
      db.close();
    }
    const killedAt = Date.now();
    await chatd.kill();
    await Promise.all(watchers.splice(0).map((w) => w.close()));
    chatd = await startChatd({ dataDir: chatd.dataDir, env: ENV });

    const [erinNow] = (await presenceClient(chatd.httpUrl, frank!.devices[0]!.token).getPresence({ userIds: [erin!.userId] })).presences;
    assert.equal(erinNow!.status, PresenceStatus.OFFLINE);
    const seen = lastSeenOf(erinNow);
    assert.ok(seen !== undefined && seen > earlier, `last seen ${seen} later than the one before her session (${earlier})`);
    // What was written before the kill at the earliest: at most an interval and a heartbeat before it.
    assert.ok(seen >= written && seen <= killedAt, `${seen} in [${written}, ${killedAt}]`);
  });
});

describe("chatd system: last seen with presence in Redis, across a Redis restart", function () {
  this.timeout(180_000);
  let own: OwnRedis;
  let redisDir: string;
  let chatd: ChatdProcess;
  const watchers: PresenceWatcher[] = [];

  before(async () => {
    redisDir = mkdtempSync(join(tmpdir(), "chatd-redis-"));
    own = new OwnRedis(await freePort(), redisDir);
    await own.start();
    chatd = await startChatd({ env: { ...ENV, CHAT_PRESENCE_STORE: "redis", CHAT_REDIS_URL: own.url } });
  });
  after(async () => {
    await Promise.all(watchers.splice(0).map((w) => w.close()));
    await chatd?.stop();
    if (chatd) removeDataDir(chatd.dataDir);
    await own?.kill();
    rmSync(redisDir, { recursive: true, force: true });
  });

  it("answers the last seen of a user who went offline before Redis restarted empty (kept in chat.db)", async () => {
    const [alice, bob] = await Promise.all(["alice", "bob"].map((n) => signUp(chatd.httpUrl, n)));
    await befriend(chatd.httpUrl, alice!, bob!);
    const b = await PresenceWatcher.open(chatd.wsUrl, bob!.devices[0]!.token, HEARTBEAT_MS);
    watchers.push(b);
    const a = await PresenceWatcher.open(chatd.wsUrl, alice!.devices[0]!.token, HEARTBEAT_MS);
    await b.hears(alice!.userId, [PresenceStatus.ONLINE], "alice online");
    await a.close();
    await b.hears(alice!.userId, [PresenceStatus.ONLINE, PresenceStatus.OFFLINE], "alice offline", 15_000);
    const seen = lastSeenOf(b.events(alice!.userId)[1]);
    assert.ok(seen !== undefined);

    await own.kill();
    await own.start(); // empty: no persistence
    const bobView = presenceClient(chatd.httpUrl, bob!.devices[0]!.token);
    const [now] = await waitFor(
      () => bobView.getPresence({ userIds: [alice!.userId] }).then((r) => r.presences, () => undefined),
      "GetPresence to answer once chatd reconnected to Redis",
      15_000,
      100,
    );
    assert.equal(now!.status, PresenceStatus.OFFLINE);
    assert.equal(lastSeenOf(now), seen, "her last seen, as heard before Redis restarted");
  });
});
