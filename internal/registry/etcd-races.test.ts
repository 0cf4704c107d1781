// Orderings a real etcd produces only now and then (a slow write during a
// leader election), played by a scripted stand-in for the few client calls
// the registration makes. What a real etcd does is in etcd.test.ts.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { mock } from "node:test";
import type { Etcd3 } from "etcd3";
import { KeptLease } from "../etcd/lease-keeper.js";
import { createEtcdClient } from "../etcd/client.js";
import { waitFor } from "../../test/support/wait.js";
import { EtcdServerRegistry } from "./etcd.js";

describe("EtcdServerRegistry: a lease lost while its entry is written", () => {
  it("fails the registration and revokes that lease, rather than holding a registration nobody keeps alive", async () => {
    let answerKeepalive!: () => void;
    const keepaliveAnswered = new Promise<void>((r) => (answerKeepalive = r));
    const revoked: string[] = [];
    const client = {
      leaseClient: {
        leaseGrant: async () => ({ ID: "7", TTL: "2" }),
        // etcd answers the first keepalive "expired" (TTL 0): the lease is lost.
        leaseKeepAlive: async () => {
          const stream = Object.assign(new EventEmitter(), {
            write: () =>
              setImmediate(() => {
                stream.emit("data", { TTL: "0" });
                answerKeepalive();
              }),
            end: () => undefined,
          });
          return stream;
        },
        leaseRevoke: async ({ ID }: { ID: string }) => void revoked.push(ID),
      },
      // The entry's write (a put in a transaction) is answered only after that.
      put: () => ({ value: () => ({ lease: () => ({}) }) }),
      if: () => ({ then: () => ({ commit: async () => (await keepaliveAnswered, { succeeded: true }) }) }),
    } as unknown as Etcd3;
    const registry = new EtcdServerRegistry({ client, prefix: "chat", requestTimeoutMs: 10_000 });
    await assert.rejects(registry.register({ serverId: "s1", address: "127.0.0.1:1", load: 0 }, { ttlSeconds: 2 }), /lost while its entry was written/);
    assert.deepEqual(revoked, ["7"]);
  });
});

describe("KeptLease: keepalives etcd never answers", () => {
  it("declares the lease lost within its TTL though the wall clock stepped back meanwhile", async () => {
    const client = {
      leaseClient: {
        leaseGrant: async () => ({ ID: "11", TTL: "1" }),
        leaseKeepAlive: async () => Object.assign(new EventEmitter(), { write: () => undefined, end: () => undefined }),
        leaseRevoke: async () => ({}),
      },
    } as unknown as Etcd3;
    const lease = await KeptLease.grant({ client, ttlSeconds: 1, name: "test" });
    const wall = mock.method(Date, "now", () => performance.timeOrigin + performance.now() - 5_000); // NTP stepped it back 5 s
    const granted = performance.now();
    try {
      let lostAfter: number | undefined;
      lease.onLost(() => (lostAfter = performance.now() - granted));
      await waitFor(() => lostAfter !== undefined, "the lease declared lost", 4_000);
      assert.ok(lostAfter! < 1_000, `lost ${Math.round(lostAfter!)} ms after the grant, past its TTL`);
      assert.equal(lease.live, false);
    } finally {
      wall.mock.restore();
      lease.stop();
    }
  });

  it("ends each keepalive's stream once its request times out", async () => {
    let opened = 0;
    let ended = 0;
    const client = {
      leaseClient: {
        leaseGrant: async () => ({ ID: "9", TTL: "2" }),
        // A connection that stays up while etcd (without a leader) answers nothing.
        leaseKeepAlive: async () => {
          opened++;
          return Object.assign(new EventEmitter(), { write: () => undefined, end: () => void ended++ });
        },
        leaseRevoke: async () => ({}),
      },
    } as unknown as Etcd3;
    const lease = await KeptLease.grant({ client, ttlSeconds: 2, name: "test" });
    try {
      await waitFor(() => opened >= 2, "a second keepalive, after the first timed out", 10_000);
      assert.ok(ended >= opened - 1, `${opened} keepalive streams opened, ${ended} ended`);
    } finally {
      lease.stop();
    }
  });
});

/**
 * A stand-in for the calls a registry watch makes: a prefix read (the listed
 * entries, at revision 5) and watchers that are created at once (or never, if
 * `connects` is false) and whose cancel() is never answered unless
 * `cancelAnswered` is set, as with an etcd3 watcher etcd itself cancelled, or
 * one still waiting for etcd to create it.
 */
class ScriptedWatcher extends EventEmitter {
  id: string | null;
  cancels = 0;
  constructor(connects: boolean, private readonly cancelAnswered: boolean) {
    super();
    this.id = connects ? "1" : null;
  }
  cancel(): Promise<void> {
    this.cancels++;
    return this.cancelAnswered ? Promise.resolve() : new Promise<void>(() => {});
  }
}

function scriptedWatchClient(script: {
  entries: () => Array<[string, string]>;
  connects?: boolean | ((nth: number) => boolean);
  cancelAnswered?: (nth: number) => boolean;
}) {
  const watchers: ScriptedWatcher[] = [];
  const client = {
    getAll: () => ({
      prefix: (dir: string) => ({
        exec: async () => ({
          header: { revision: "5" },
          kvs: script.entries().map(([id, value]) => ({ key: Buffer.from(dir + id), value: Buffer.from(value) })),
        }),
      }),
    }),
    watch: () => ({
      prefix: () => ({
        startRevision: () => ({
          watcher: () => {
            const connects = typeof script.connects === "function" ? script.connects(watchers.length) : (script.connects ?? true);
            const w = new ScriptedWatcher(connects, script.cancelAnswered?.(watchers.length) ?? false);
            watchers.push(w);
            return w;
          },
        }),
      }),
    }),
  } as unknown as Etcd3;
  return { client, watchers };
}

/**
 * Lets promise chains run (setImmediate is not faked) until `check` holds.
 * Everything here moves on microtasks and faked timers, so a few rounds settle it.
 */
async function settled(check: () => boolean, what: string): Promise<void> {
  for (let round = 0; round < 200; round++) {
    if (check()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`did not happen on its own: ${what}`);
}

/** Runs pending promise chains without advancing the faked clock. */
async function drain(): Promise<void> {
  for (let round = 0; round < 50; round++) await new Promise((r) => setImmediate(r));
}

function track<T>(p: Promise<T>): { done: boolean; error: unknown } {
  const state = { done: false, error: undefined as unknown };
  p.then(
    () => (state.done = true),
    (err: unknown) => ((state.done = true), (state.error = err)),
  );
  return state;
}

describe("EtcdServerWatch: a cancel etcd never answers", () => {
  const TIMEOUT = 3_000;
  const s1 = JSON.stringify({ address: "10.0.0.1:1", load: 1 });
  const s2 = JSON.stringify({ address: "10.0.0.2:1", load: 2 });

  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  it("closing the registry ends once the request timeout is over", async () => {
    const { client, watchers } = scriptedWatchClient({ entries: () => [["s1", s1]] });
    const registry = new EtcdServerRegistry({ client, prefix: "chat", requestTimeoutMs: TIMEOUT });
    const watch = await registry.watch();
    assert.deepEqual(watch.servers().map((s) => s.serverId), ["s1"]);

    const closing = track(registry.close());
    await settled(() => watchers[0]!.cancels === 1, "the watch's cancel");
    mock.timers.tick(TIMEOUT - 1);
    await drain();
    assert.equal(closing.done, false, "close() waits for etcd's answer up to the request timeout");
    mock.timers.tick(1);
    await settled(() => closing.done, "close() to end at the request timeout although the cancel is never answered");
    assert.equal(closing.error, undefined);
  });

  it("a watch etcd cancelled opens again once the request timeout is over, and then closes", async () => {
    let entries: Array<[string, string]> = [["s1", s1]];
    // Only the first watcher's cancel goes unanswered (etcd cancelled it); the next one's is answered.
    const { client, watchers } = scriptedWatchClient({ entries: () => entries, cancelAnswered: (nth) => nth > 0 });
    const registry = new EtcdServerRegistry({ client, prefix: "chat", requestTimeoutMs: TIMEOUT });
    const watch = await registry.watch();
    const seen: string[][] = [];
    watch.onChange((servers) => seen.push(servers.map((s) => s.serverId)));

    // etcd cancels the watch (say its revision was compacted); meanwhile s2 joined.
    entries = [["s1", s1], ["s2", s2]];
    watchers[0]!.emit("error", new Error("Watcher canceled: mvcc: required revision has been compacted"));
    await settled(() => watchers[0]!.cancels === 1, "the old watcher's cancel");
    mock.timers.tick(TIMEOUT - 1);
    await drain();
    assert.equal(watchers.length, 1, "no new watcher while the old one's cancel may still be answered");
    mock.timers.tick(1);
    await settled(() => watchers.length === 2 && seen.length === 1, "a new watcher and the reloaded list");
    assert.deepEqual(seen, [["s1", "s2"]]);
    assert.deepEqual(watch.servers().map((s) => s.serverId), ["s1", "s2"]);

    const closing = track(registry.close());
    await settled(() => closing.done, "close() without waiting on the old watcher's cancel");
    assert.equal(watchers[1]!.cancels, 1);
    assert.equal(watchers[0]!.cancels, 1, "the old watcher is cancelled once");
  });

  it("tells its listeners what changed while it reopened, though a first try read the new list and then failed", async () => {
    let entries: Array<[string, string]> = [["s1", s1]];
    // The first reopen's watcher is refused after its read went through; the next one is created.
    const { client, watchers } = scriptedWatchClient({ entries: () => entries, connects: (nth) => nth !== 1, cancelAnswered: () => true });
    const registry = new EtcdServerRegistry({ client, prefix: "chat", requestTimeoutMs: TIMEOUT });
    const watch = await registry.watch();
    const seen: string[][] = [];
    watch.onChange((servers) => seen.push(servers.map((s) => s.serverId)));

    entries = [["s1", s1], ["s2", s2]];
    watchers[0]!.emit("error", new Error("Watcher canceled: mvcc: required revision has been compacted"));
    await settled(() => watchers.length === 2, "the first reopen's watcher");
    watchers[1]!.emit("error", new Error("etcd refused the watch"));
    await drain();
    mock.timers.tick(100); // the pause before the next try
    await settled(() => watchers.length === 3, "the second reopen's watcher");
    await settled(() => seen.length === 1, "the listeners told of s2");
    assert.deepEqual(seen, [["s1", "s2"]]);
    await registry.close();
  });

  it("a watch etcd never creates fails within its deadlines instead of hanging on the cancel", async () => {
    // etcd3 answers the cancel of a watcher that has no id yet only once etcd creates it or the stream drops.
    const { client, watchers } = scriptedWatchClient({ entries: () => [], connects: false });
    const registry = new EtcdServerRegistry({ client, prefix: "chat", requestTimeoutMs: TIMEOUT });
    const opening = track(registry.watch());
    await settled(() => watchers.length === 1, "the watcher");
    mock.timers.tick(TIMEOUT);
    await settled(() => watchers[0]!.cancels === 1, "the cancel of a watcher etcd did not create in time");
    mock.timers.tick(TIMEOUT);
    await settled(() => opening.done, "watch() to fail once the cancel's deadline is over too");
    assert.match(String(opening.error), /creating the registry watch: no answer from etcd within 3000 ms/);
    const closing = track(registry.close());
    await settled(() => closing.done, "close()");
  });

  it("a watch etcd refuses to create fails, and leaves no watcher reopening behind it", async () => {
    const { client, watchers } = scriptedWatchClient({ entries: () => [], connects: false, cancelAnswered: () => true });
    const registry = new EtcdServerRegistry({ client, prefix: "chat", requestTimeoutMs: TIMEOUT });
    const opening = track(registry.watch());
    await settled(() => watchers.length === 1, "the watcher");
    watchers[0]!.emit("error", new Error("etcd refused the watch"));
    await settled(() => opening.done, "watch() to fail");
    assert.match(String(opening.error), /etcd refused the watch/);
    // A reopen would wait 100 ms before its next try: let every timer run.
    mock.timers.tick(10 * TIMEOUT);
    await drain();
    assert.equal(watchers.length, 1, "no second watcher opened for a watch nobody holds");
    await registry.close();
  });
});


/**
 * etcd's side of watch streams, played under etcd3's own watch machinery:
 * each stream answers a create at once with the revision etcd is at (as etcd
 * does) and sends the events from the asked-for revision on only when told
 * (etcd catches a watcher up on its next sync, up to 100 ms later).
 */
class ScriptedWatchStreams {
  revision = 5;
  readonly events: Array<{ type: "Put" | "Delete"; key: string; value: string; rev: number }> = [];
  /** `live`: the watch ids etcd3 has heard created and that no cancel asked to end, oldest first. */
  readonly streams: Array<EventEmitter & { creates: number[]; live: string[]; dead: boolean }> = [];
  private lastId = 0;
  /** The revision each watch id asked to start from. */
  private readonly starts = new Map<string, number>();

  open(): EventEmitter {
    // Nothing more arrives on a stream once it dropped.
    // `first` runs as the answer arrives, before etcd3 hears it: etcd3 tells its listeners a
    // watch is created from inside that emit, and they may cancel it there and then.
    const answer = (res: object, first?: () => void) =>
      setImmediate(() => {
        if (stream.dead) return;
        first?.();
        stream.emit("data", res);
      });
    const stream = Object.assign(new EventEmitter(), {
      creates: [] as number[],
      live: [] as string[],
      dead: false,
      write: (req: { create_request?: { start_revision?: number | string }; cancel_request?: { watch_id: string } }) => {
        if (req.create_request) {
          stream.creates.push(Number(req.create_request.start_revision));
          // An id of its own per watch, as etcd gives: the registry's reload may watch again on
          // the same stream, and events meant for the new watch must not reach the one it ends.
          const id = String(++this.lastId);
          this.starts.set(id, Number(req.create_request.start_revision));
          answer({ created: true, canceled: false, watch_id: id, header: { revision: String(this.revision) }, events: [] }, () => stream.live.push(id));
        } else if (req.cancel_request) {
          const id = String(req.cancel_request.watch_id);
          stream.live = stream.live.filter((l) => l !== id);
          answer({ created: false, canceled: true, watch_id: id, header: { revision: String(this.revision) }, events: [] });
        }
      },
      cancel: () => undefined,
    });
    this.streams.push(stream);
    return stream;
  }

  change(type: "Put" | "Delete", key: string, value = ""): void {
    this.events.push({ type, key, value, rev: ++this.revision });
  }

  /**
   * The latest stream catches its newest live watch up from the revision that watch asked for;
   * with none live (one cancelled, the next not yet created) nothing: that one reads afresh.
   */
  sync(): void {
    const stream = this.streams.at(-1)!;
    const id = stream.live.at(-1);
    if (id === undefined) return;
    const from = this.starts.get(id)!;
    const events = this.events
      .filter((e) => e.rev >= from)
      .map((e) => ({ type: e.type, kv: { key: Buffer.from(e.key), value: Buffer.from(e.value), mod_revision: String(e.rev) } }));
    stream.emit("data", { created: false, canceled: false, watch_id: id, header: { revision: String(this.revision) }, events });
  }

  drop(): void {
    this.streams.at(-1)!.dead = true;
    this.streams.at(-1)!.emit("error", new Error("14 UNAVAILABLE: Connection dropped"));
  }
}

describe("EtcdServerWatch: a watch stream dropped twice in a row", () => {
  it("sees a server that left while it was away, though the stream dropped again before etcd caught it up", async () => {
    const dir = "/chat/servers/";
    const etcd = new ScriptedWatchStreams();
    const stored = new Map([["s1", JSON.stringify({ address: "10.0.0.1:1", load: 1 })], ["s2", JSON.stringify({ address: "10.0.0.2:1", load: 2 })]]);
    const client = createEtcdClient({ endpoints: ["127.0.0.1:1"] });
    // The reads and the watch stream are etcd's stand-ins; the watchers are etcd3's own.
    Object.assign(client, {
      getAll: () => ({
        prefix: () => ({
          exec: async () => ({
            header: { revision: String(etcd.revision) },
            kvs: [...stored].map(([id, value]) => ({ key: Buffer.from(dir + id), value: Buffer.from(value) })),
          }),
        }),
      }),
    });
    (client as unknown as { watchManager: { client: unknown } }).watchManager.client = { watch: async () => etcd.open() };
    const registry = new EtcdServerRegistry({ client, prefix: "chat", requestTimeoutMs: 3_000 });
    try {
      const watch = await registry.watch();
      assert.deepEqual(watch.servers().map((s) => s.serverId), ["s1", "s2"]);

      // etcd goes away; s2 leaves meanwhile.
      etcd.drop();
      stored.delete("s2");
      etcd.change("Delete", dir + "s2");
      // Back: the watch is created again, and the stream drops before etcd sent it the delete.
      // At least once: the registry's own reload may already have watched again on this stream
      // (a second create) before a poll saw the first; it must see s2 gone whichever it is.
      await waitFor(() => etcd.streams.length === 2 && etcd.streams[1]!.creates.length >= 1, "the watch created again");
      await new Promise((r) => setImmediate(r)); // its "created" answer
      etcd.drop();
      // Back again; s3 joins, and etcd catches the watch up from where it asks.
      await waitFor(() => etcd.streams.length >= 3 && etcd.streams.at(-1)!.creates.length >= 1, "the watch created a third time");
      stored.set("s3", JSON.stringify({ address: "10.0.0.3:1", load: 3 }));
      etcd.change("Put", dir + "s3", stored.get("s3")!);
      await new Promise((r) => setImmediate(r));
      etcd.sync();
      // The list settles on s1 and s3 whichever way it got there (the caught-up watch, or the
      // reload the reconnect asked for); without that reload s2 stays listed for good.
      const ids = () => watch.servers().map((s) => s.serverId).join(",");
      await waitFor(() => ids() === "s1,s3", "s2 gone and s3 seen");
    } finally {
      await registry.close();
      client.close();
    }
  });
});

describe("EtcdRegistration: closed while it re-registers with etcd away", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  it("closes without waiting for the new lease's grant, and revokes that lease unwritten if etcd grants it later", async () => {
    const TTL = 20; // CHAT_LEASE_TTL_S may be up to 60: a grant waits up to the TTL for etcd's answer
    let grants = 0;
    let grantLate!: (res: { ID: string; TTL: string }) => void;
    const revoked: string[] = [];
    const writtenUnder: string[] = [];
    const client = {
      leaseClient: {
        // The first lease is granted; by the time it is lost etcd is away, and the next grant hangs.
        leaseGrant: () => (++grants === 1 ? Promise.resolve({ ID: "1", TTL: String(TTL) }) : new Promise((r) => (grantLate = r))),
        // etcd answers the first keepalive "expired": the lease is lost and a new one asked for.
        leaseKeepAlive: async () => {
          const stream = Object.assign(new EventEmitter(), { write: () => setImmediate(() => stream.emit("data", { TTL: "0" })), end: () => undefined });
          return stream;
        },
        leaseRevoke: async ({ ID }: { ID: string }) => void revoked.push(ID),
      },
      put: () => ({ value: () => ({ lease: (id: string) => id }) }),
      if: () => ({ then: (leaseId: string) => ({ commit: async () => (writtenUnder.push(leaseId), { succeeded: true }) }) }),
      watch: () => ({ key: () => ({ only: () => ({ watcher: () => new ScriptedWatcher(true, true) }) }) }),
    } as unknown as Etcd3;
    const registry = new EtcdServerRegistry({ client, prefix: "chat", requestTimeoutMs: 3_000 });
    const reg = await registry.register({ serverId: "s1", address: "127.0.0.1:1", load: 0 }, { ttlSeconds: TTL });
    let lost = false;
    reg.onLost(() => (lost = true));
    mock.timers.tick(Math.floor((TTL * 1000) / 3)); // the first keepalive
    await settled(() => lost && grants === 2, "the lease lost and a new one asked for");

    // SIGTERM: the drain waits on this before it ends the sessions' streams.
    const closing = track(registry.close());
    await settled(() => closing.done, "close() before the hanging grant's deadline");
    assert.equal(closing.error, undefined);
    assert.deepEqual(revoked, ["1"]);

    // etcd comes back and grants it after all: nothing is written under it, and it is revoked.
    grantLate({ ID: "2", TTL: String(TTL) });
    await settled(() => revoked.includes("2"), "the late lease revoked");
    assert.deepEqual(writtenUnder, ["1"], "no entry written for a registration closed");
  });
});

describe("EtcdRegistration: its entry's watch dropped twice in a row", () => {
  it("writes the entry again when it was deleted while the watch was away, though etcd never sent that delete", async () => {
    const etcd = new ScriptedWatchStreams();
    const key = "/chat/servers/s1";
    let stored: string | null = null;
    const writes: string[] = [];
    const client = createEtcdClient({ endpoints: ["127.0.0.1:1"] });
    // The lease, the writes and the reads are etcd's stand-ins; the entry's watcher is etcd3's own.
    Object.assign(client, {
      leaseClient: {
        leaseGrant: async () => ({ ID: "1", TTL: "30" }),
        leaseKeepAlive: async () => {
          const stream = Object.assign(new EventEmitter(), { write: () => setImmediate(() => stream.emit("data", { TTL: "30" })), end: () => undefined });
          return stream;
        },
        leaseRevoke: async () => ({}),
      },
      put: () => ({ value: (v: string) => ({ lease: () => v }) }),
      if: () => ({ then: (v: string) => ({ commit: async () => (writes.push(v), (stored = v), { succeeded: true }) }) }),
      get: () => ({ string: async () => stored }),
    });
    (client as unknown as { watchManager: { client: unknown } }).watchManager.client = { watch: async () => etcd.open() };
    const registry = new EtcdServerRegistry({ client, prefix: "chat", requestTimeoutMs: 3_000 });
    try {
      const reg = await registry.register({ serverId: "s1", address: "10.0.0.1:1", load: 0 }, { ttlSeconds: 30 });
      await waitFor(() => etcd.streams[0]?.creates.length === 1, "the entry watched");
      assert.equal(writes.length, 1);

      // etcd goes away; meanwhile an operator deletes the entry (its lease lives on).
      etcd.drop();
      stored = null;
      etcd.change("Delete", key);
      // Back: watched again, and the stream drops before etcd sent it the delete.
      await waitFor(() => etcd.streams.length === 2 && etcd.streams[1]!.creates.length === 1, "the entry watched again");
      await new Promise((r) => setImmediate(r));
      etcd.drop();
      await waitFor(() => etcd.streams.length >= 3 && etcd.streams.at(-1)!.creates.length >= 1, "the entry watched a third time");
      await new Promise((r) => setImmediate(r));
      etcd.sync();
      await waitFor(() => stored !== null, "the entry written again", 5_000);
      assert.equal(reg.live, true);
    } finally {
      await registry.close();
      client.close();
    }
  });
});
