import assert from "node:assert/strict";
import type { ServerInfo, ServerWatch } from "../registry/port.js";
import { ChatServerClients } from "./client-pool.js";

/** A watch the test moves by hand, counting how often its whole list is copied out. */
function handWatch(initial: ServerInfo[]) {
  let servers = initial;
  const listeners: ((s: ServerInfo[]) => void)[] = [];
  const counts = { servers: 0 };
  const watch: ServerWatch = {
    servers: () => (counts.servers++, servers.map((s) => ({ ...s }))),
    onChange: (l) => void listeners.push(l),
    close: async () => {},
  };
  const set = (next: ServerInfo[]) => {
    servers = next;
    for (const l of listeners) l(next.map((s) => ({ ...s })));
  };
  return { watch, counts, set };
}

describe("ChatServerClients", () => {
  it("answers lookups from what the watch last told, without copying its list per lookup (the delivery path asks per user and route)", () => {
    const { watch, counts, set } = handWatch([
      { serverId: "a", address: "127.0.0.1:1", load: 0 },
      { serverId: "b", address: "127.0.0.1:2", load: 0 },
    ]);
    const clients = new ChatServerClients(watch);
    try {
      const a = clients.get("a");
      assert.ok(a);
      for (let i = 0; i < 1_000; i++) assert.equal(clients.get("a"), a);
      assert.equal(clients.get("nope"), undefined);
      assert.equal(counts.servers, 1, "the list was read once, at the start");

      set([{ serverId: "b", address: "127.0.0.1:2", load: 3 }]);
      assert.equal(clients.get("a"), undefined, "a server that left has no client");
      set([{ serverId: "b", address: "127.0.0.1:3", load: 3 }]);
      assert.notEqual(clients.get("b"), undefined);
      assert.equal(counts.servers, 1);
    } finally {
      clients.close();
    }
  });
});
