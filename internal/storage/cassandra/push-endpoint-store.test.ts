import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { dropKeyspace, SCHEMA_CHANGE_TIMEOUT_MS } from "../../../test/support/cassandra.js";
import { engineConfig } from "../../../test/support/engines.js";
import { pushEndpointStoreContract } from "../../push/contract.js";
import { openCassandraStorage, type CassandraStorage } from "./index.js";
import type { PushEndpoint } from "../../push/port.js";
import { CassandraPushEndpointStore } from "./push-endpoint-store.js";

// The PushEndpointStore contract, unchanged, against the local Cassandra node
// (scripts/engines.sh up cassandra): one fresh keyspace, random ids per test.
describe("cassandra push endpoint store", function () {
  this.timeout(120_000);
  const keyspace = `chat_test_push_${randomBytes(4).toString("hex")}`;
  let storage: CassandraStorage | undefined;

  before(async () => {
    const cfg = engineConfig(); // throws when the engines are not up: never a skip
    // Its schema's creation outlasts the driver's 12 s per request on a loaded node.
    storage = await openCassandraStorage({ contactPoints: cfg.cassandraContactPoints, localDataCenter: cfg.cassandraDc, keyspace, readTimeoutMs: SCHEMA_CHANGE_TIMEOUT_MS });
  });
  after(async () => {
    if (!storage) return;
    const open = storage;
    await dropKeyspace(open.client, keyspace, () => open.close());
  });

  pushEndpointStoreContract("cassandra", async () => {
    if (!storage) throw new Error("cassandra storage did not open");
    return { store: new CassandraPushEndpointStore(storage.db), dispose: async () => undefined };
  });

  it("leaves a raced address on exactly one device when two register it at once (two stores, as two api processes)", async () => {
    const a = new CassandraPushEndpointStore(storage!.db);
    const b = new CassandraPushEndpointStore(storage!.db);
    const id = () => BigInt(`0x${randomBytes(7).toString("hex")}`);
    for (let round = 0; round < 10; round++) {
      const address = `https://push.example/race-${id()}`;
      const ep = (userId: bigint, deviceId: bigint): PushEndpoint => ({
        userId,
        deviceId,
        kind: "web_push",
        address,
        p256dh: "BPk",
        auth: "AUTH",
        apnsTopic: "",
        hidePreview: false,
        muted: false,
        updatedAtMs: 1,
      });
      const [u1, u2] = [id(), id()];
      await Promise.all([a.put(ep(u1, 1n)), b.put(ep(u2, 2n))]);
      const holders = [await a.get(u1, 1n), await a.get(u2, 2n)].filter((e) => e?.address === address);
      assert.equal(holders.length, 1, `round ${round}: ${holders.length} devices hold the address`);
    }
  });

  it("removes an endpoint found gone only by compare-and-set on its registration: one registered again after the removal's read stays", async () => {
    const store = new CassandraPushEndpointStore(storage!.db);
    const id = () => BigInt(`0x${randomBytes(7).toString("hex")}`);
    const e: PushEndpoint = {
      userId: id(),
      deviceId: 1n,
      kind: "apns",
      address: "ef".repeat(32),
      p256dh: "",
      auth: "",
      apnsTopic: "com.example.chat",
      hidePreview: false,
      muted: false,
      updatedAtMs: 1000,
    };
    await store.put(e);
    // The removal's read sees the old registration; the app registers the token again before its delete.
    const racing = new CassandraPushEndpointStore(storage!.db);
    racing.get = async (userId, deviceId) => {
      const seen = await store.get(userId, deviceId);
      await store.put({ ...e, updatedAtMs: 2000 });
      return seen;
    };
    assert.equal(await racing.removeIfAddress(e.userId, e.deviceId, e.address, { updatedAtMs: 1000 }), false);
    assert.equal((await store.get(e.userId, e.deviceId))?.updatedAtMs, 2000, "the registration made after the read stays");
  });
});
