// The Notifier over the stores cmd/notifier reads on Cassandra (scripts/engines.sh up), a keyspace of its own.
import assert from "node:assert/strict";
import { scratchCassandra } from "../../test/support/cassandra.js";
import { waitFor } from "../../test/support/wait.js";
import type { Id } from "../model/types.js";
import type { MessageQueue } from "../queue/port.js";
import { openDatabase } from "../storage/sqlite/database.js";
import { Notifier, type NotifierDeps } from "./notifier.js";
import type { PushProvider } from "./port.js";
import { channelMutes, type NotificationRequest } from "./records.js";
import { SqlitePushEndpointStore } from "./sqlite.js";

/** A push endpoint at `host` for each of users 1 to `users` (device 10), in a database of their own. */
async function endpointsOf(users: number, host: string) {
  const db = openDatabase(":memory:");
  const endpoints = new SqlitePushEndpointStore(db);
  for (let u = 1n; u <= BigInt(users); u++) {
    await endpoints.put({ userId: u, deviceId: 10n, kind: "web_push", address: `https://${host}/${u}`, p256dh: "", auth: "", apnsTopic: "", hidePreview: false, muted: false, updatedAtMs: 0 });
  }
  return { db, endpoints };
}

/** Hands the notifier one request for each of users 1 to `users`, a message sent at `sentAtMs`. */
function acceptOneEach(notifier: Notifier, users: number, sentAtMs: number): void {
  for (let u = 1n; u <= BigInt(users); u++) {
    const message = { messageId: 10_000n + u, channelId: 500n, seq: u, senderUserId: 1_000_000n, senderDeviceId: 1n, clientMsgId: `c${u}`, text: "hi", sentAtMs };
    const req: NotificationRequest = { userId: u, senderName: "Bob", channelTitle: "", message };
    notifier.accept(req);
  }
}

/**
 * A push for each of `users` devices, behind a push service whose first pushes hang, holding the
 * host's 16 slots. While the rest wait for a slot every device signs out and `waitPastStale` moves
 * the notifier's clock past STALE_READY_MS; then the slots free up. Only the pushes already under
 * way may be sent. `notifier` gives the notifier its clocks and its isDeviceActive.
 */
async function signedOutWhileWaitingForASlot(o: {
  users: number;
  sentAtMs: number;
  notifier: (signedOut: () => boolean) => Pick<NotifierDeps, "isDeviceActive" | "now" | "monotonicNow">;
  waitPastStale: () => void;
}): Promise<void> {
  const { db, endpoints } = await endpointsOf(o.users, "slow.push.example");
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
    queue: {} as MessageQueue, // requests handed to accept() directly
    endpoints,
    providers: { web_push: provider },
    ...o.notifier(() => signedOut),
    onSkipped: (reason) => skips.push(reason),
    options: { collapseWindowMs: 1, maxAttempts: 1 },
  });
  try {
    acceptOneEach(notifier, o.users, o.sentAtMs);
    await waitFor(() => hung.length === 16 && notifier.pending === o.users, "the host's slots taken, the rest waiting");
    signedOut = true;
    o.waitPastStale();
    for (const release of hung) release();
    await notifier.idle();
    assert.equal(sent.size, 16, "only the pushes already under way when the devices signed out");
    assert.equal(skips.filter((r) => r === "revoked_device").length, o.users - 16);
  } finally {
    await notifier.stop();
    db.close();
  }
}

describe("Notifier on Cassandra", function () {
  this.timeout(120_000);
  const storage = scratchCassandra();

  it("sends every push of a burst of collapse windows closing together (a backlog read after a deploy), its reads not all at once", async () => {
    const USERS = 3_000;
    const { db, endpoints } = await endpointsOf(USERS, "push.example");
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
      acceptOneEach(notifier, USERS, now);
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
    const wall = Date.now();
    let mono = 0;
    await signedOutWhileWaitingForASlot({
      users: 40,
      sentAtMs: wall,
      notifier: (signedOut) => ({ isDeviceActive: async () => !signedOut(), now: () => wall, monotonicNow: () => mono }),
      waitPastStale: () => (mono += 10_000), // waited past STALE_READY_MS, while the wall clock stood still (stepped back as much)
    });
  });

  it("asks again, reads not all at once, whether the pushes that waited behind a slow push service are still due", async () => {
    let t = Date.now();
    const accounts = storage().accounts;
    await signedOutWhileWaitingForASlot({
      users: 3_000,
      sentAtMs: t,
      notifier: (signedOut) => ({
        // Signed in when the windows closed; by the time the pushes get a slot, every device signed
        // out (its row gone: what isActiveDevice reads).
        isDeviceActive: async (userId, deviceId) => !signedOut() || (await accounts.getDevice(userId, deviceId)) !== undefined,
        now: () => t,
      }),
      waitPastStale: () => (t += 10_000), // waited past STALE_READY_MS
    });
  });
});
