// Orderings a real etcd produces only now and then (a slow write during a
// leader election), played by a scripted stand-in for the few client calls
// the registration makes. What a real etcd does is in etcd.test.ts.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import type { Etcd3 } from "etcd3";
import { KeptLease } from "../etcd/lease-keeper.js";
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
      // The entry's write is answered only after that.
      put: () => ({ value: () => ({ lease: () => ({ exec: async () => (await keepaliveAnswered, {}) }) }) }),
    } as unknown as Etcd3;
    const registry = new EtcdServerRegistry({ client, prefix: "chat", requestTimeoutMs: 10_000 });
    await assert.rejects(registry.register({ serverId: "s1", address: "127.0.0.1:1", load: 0 }, { ttlSeconds: 2 }), /lost while its entry was written/);
    assert.deepEqual(revoked, ["7"]);
  });
});

describe("KeptLease: keepalives etcd never answers", () => {
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
