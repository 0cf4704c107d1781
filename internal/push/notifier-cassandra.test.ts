// The Notifier over the stores cmd/notifier reads on Cassandra (scripts/engines.sh up), a keyspace of its own.
import assert from "node:assert/strict";
import { scratchCassandra } from "../../test/support/cassandra.js";
import { waitFor } from "../../test/support/wait.js";
import type { Id } from "../model/types.js";
import type { MessageQueue } from "../queue/port.js";
import { openDatabase } from "../storage/sqlite/database.js";
import { Notifier } from "./notifier.js";
import type { PushProvider } from "./port.js";
import { channelMutes, type NotificationRequest } from "./records.js";
import { SqlitePushEndpointStore } from "./sqlite.js";

describe("Notifier on Cassandra", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();

  it("sends every push of a burst of collapse windows closing together (a backlog read after a deploy), its reads not all at once", async () => {
    const db = openDatabase(":memory:");
    const endpoints = new SqlitePushEndpointStore(db);
    const USERS = 3_000;
    for (let u = 1n; u <= BigInt(USERS); u++) {
      await endpoints.put({ userId: u, deviceId: 10n, kind: "web_push", address: `https://push.example/${u}`, p256dh: "", auth: "", apnsTopic: "", hidePreview: false, muted: false, updatedAtMs: 0 });
    }
    const sent = new Set<Id>();
    const provider: PushProvider = { kind: "web_push", send: async (e) => (sent.add(e.userId), { ok: true }) };
    const accounts = storage().accounts;
    const notifier = new Notifier({
      queue: {} as MessageQueue, // requests handed to accept() directly
      endpoints,
      providers: { web_push: provider },
      // What isActiveDevice reads (the devices here are stand-ins, so taken as signed in).
      isDeviceActive: async (userId, deviceId) => (await accounts.getDevice(userId, deviceId), true),
      channelMutedUntil: channelMutes(storage().channels),
      options: { collapseWindowMs: 1, maxAttempts: 1 },
    });
    try {
      const now = Date.now();
      for (let u = 1n; u <= BigInt(USERS); u++) {
        const message = { messageId: 10_000n + u, channelId: 500n, seq: u, senderUserId: 1_000_000n, senderDeviceId: 1n, clientMsgId: `c${u}`, text: "hi", sentAtMs: now };
        const req: NotificationRequest = { userId: u, senderName: "Bob", channelTitle: "", message };
        notifier.accept(req);
      }
      await notifier.idle();
      assert.equal(sent.size, USERS);
    } finally {
      await notifier.stop();
      db.close();
    }
  });

  // Timed on the wall clock, a clock stepped back sent pushes that had waited minutes unasked (to
  // devices signed out meanwhile), and one stepped forward asked again of every push waiting.
  it("times a push's wait for a free slot on the monotonic clock, not the wall clock", async () => {
    const db = openDatabase(":memory:");
    const endpoints = new SqlitePushEndpointStore(db);
    const USERS = 40;
    for (let u = 1n; u <= BigInt(USERS); u++) {
      await endpoints.put({ userId: u, deviceId: 10n, kind: "web_push", address: `https://slow.push.example/${u}`, p256dh: "", auth: "", apnsTopic: "", hidePreview: false, muted: false, updatedAtMs: 0 });
    }
    const wall = Date.now();
    let mono = 0;
    const sent = new Set<Id>();
    const hung: (() => void)[] = [];
    const provider: PushProvider = {
      kind: "web_push",
      send: async (e) => {
        if (hung.length < 16) await new Promise<void>((r) => hung.push(r));
        sent.add(e.userId);
        return { ok: true };
      },
    };
    let signedOut = false;
    const skips: string[] = [];
    const notifier = new Notifier({
      queue: {} as MessageQueue,
      endpoints,
      providers: { web_push: provider },
      isDeviceActive: async () => !signedOut,
      now: () => wall,
      monotonicNow: () => mono,
      onSkipped: (reason) => skips.push(reason),
      options: { collapseWindowMs: 1, maxAttempts: 1 },
    });
    try {
      for (let u = 1n; u <= BigInt(USERS); u++) {
        const message = { messageId: 10_000n + u, channelId: 500n, seq: u, senderUserId: 1_000_000n, senderDeviceId: 1n, clientMsgId: `c${u}`, text: "hi", sentAtMs: wall };
        notifier.accept({ userId: u, senderName: "Bob", channelTitle: "", message });
      }
      await waitFor(() => hung.length === 16 && notifier.pending === USERS, "the host's slots taken, the rest waiting");
      signedOut = true;
      mono += 10_000; // waited past STALE_READY_MS, while the wall clock stood still (stepped back as much)
      for (const release of hung) release();
      await notifier.idle();
      assert.equal(sent.size, 16, "only the pushes already under way when the devices signed out");
      assert.equal(skips.filter((r) => r === "revoked_device").length, USERS - 16);
    } finally {
      await notifier.stop();
      db.close();
    }
  });

  it("asks again, reads not all at once, whether the pushes that waited behind a slow push service are still due", async () => {
    const db = openDatabase(":memory:");
    const endpoints = new SqlitePushEndpointStore(db);
    const USERS = 3_000;
    for (let u = 1n; u <= BigInt(USERS); u++) {
      await endpoints.put({ userId: u, deviceId: 10n, kind: "web_push", address: `https://slow.push.example/${u}`, p256dh: "", auth: "", apnsTopic: "", hidePreview: false, muted: false, updatedAtMs: 0 });
    }
    let t = Date.now();
    const sent = new Set<Id>();
    const hung: (() => void)[] = [];
    const provider: PushProvider = {
      kind: "web_push",
      send: async (e) => {
        if (hung.length < 16) await new Promise<void>((r) => hung.push(r)); // the first ones hang, holding the host's 16 slots
        sent.add(e.userId);
        return { ok: true };
      },
    };
    const accounts = storage().accounts;
    let signedOut = false;
    const skips: string[] = [];
    const notifier = new Notifier({
      queue: {} as MessageQueue,
      endpoints,
      providers: { web_push: provider },
      // Signed in when the windows closed; by the time the pushes get a slot, every device signed
      // out (its row gone: what isActiveDevice reads).
      isDeviceActive: async (userId, deviceId) => !signedOut || (await accounts.getDevice(userId, deviceId)) !== undefined,
      now: () => t,
      onSkipped: (reason) => skips.push(reason),
      options: { collapseWindowMs: 1, maxAttempts: 1 },
    });
    try {
      for (let u = 1n; u <= BigInt(USERS); u++) {
        const message = { messageId: 10_000n + u, channelId: 500n, seq: u, senderUserId: 1_000_000n, senderDeviceId: 1n, clientMsgId: `c${u}`, text: "hi", sentAtMs: t };
        notifier.accept({ userId: u, senderName: "Bob", channelTitle: "", message });
      }
      await waitFor(() => hung.length === 16 && notifier.pending === USERS, "the host's slots taken, the rest waiting");
      signedOut = true;
      t += 10_000; // waited past STALE_READY_MS
      for (const release of hung) release();
      await notifier.idle();
      assert.equal(sent.size, 16, "only the pushes already under way when the devices signed out");
      assert.equal(skips.filter((r) => r === "revoked_device").length, USERS - 16);
    } finally {
      await notifier.stop();
      db.close();
    }
  });
});
