// RedisSessionRoutes against a Redis that keeps the connection and stops answering (paused,
// a frozen VM, packets dropped): a fake on loopback, no engine needed.
import assert from "node:assert/strict";
import net from "node:net";
import { waitFor } from "../../test/support/wait.js";
import { RedisSessionRoutes } from "./redis.js";

/** A RESP server that completes a client's handshake and then answers nothing; counts connections. */
async function silentRedis() {
  const stats = { connections: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    stats.connections++;
    sockets.add(sock);
    let buf = "";
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      for (;;) {
        const head = /^\*(\d+)\r\n/.exec(buf);
        if (!head) return;
        let pos = head[0].length;
        const args: string[] = [];
        for (let i = 0; i < Number(head[1]); i++) {
          const bulk = /^\$(\d+)\r\n/.exec(buf.slice(pos));
          const start = pos + (bulk?.[0].length ?? 0);
          if (!bulk || buf.length < start + Number(bulk[1]) + 2) return;
          args.push(buf.slice(start, start + Number(bulk[1])));
          pos = start + Number(bulk[1]) + 2;
        }
        buf = buf.slice(pos);
        const name = args[0]!.toUpperCase();
        if (name === "HELLO") sock.write("-ERR unknown command 'HELLO'\r\n");
        else if (name === "CLIENT") sock.write("+OK\r\n");
        else if (name === "INFO") sock.write("$21\r\n# Server\r\nloading:0\r\n\r\n");
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `redis://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    stats,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** How `p` stands after `ms`: a bound, not a wait for something to happen. */
const outcomeAfter = (p: Promise<unknown>, ms: number) =>
  Promise.race([
    p.then(
      () => "resolved",
      (err: Error) => `rejected: ${err.message}`,
    ),
    new Promise<string>((r) => setTimeout(() => r("pending"), ms).unref()),
  ]);

describe("RedisSessionRoutes when Redis stops answering", function () {
  this.timeout(30_000);

  it("fails every call within a bound instead of waiting for ever, then drops the silent socket and reconnects (a reset)", async () => {
    const redis = await silentRedis();
    const routes = new RedisSessionRoutes({ url: redis.url });
    let resets = 0;
    routes.onReset(() => resets++);
    try {
      await routes.connect();
      const calls = {
        add: routes.add(1n, "s1"),
        remove: routes.remove(1n, "s1"),
        refresh: routes.refresh("s1", [1n, 2n, 3n]),
        lookup: routes.lookup([1n, 2n]),
        ping: routes.ping(),
      };
      // The default timeout is 1 s; the rest is slack for a loaded machine.
      const outcomes = await Promise.all(Object.values(calls).map((p) => outcomeAfter(p, 3_000)));
      assert.deepStrictEqual(Object.fromEntries(Object.keys(calls).map((k, i) => [k, outcomes[i]])), {
        add: "rejected: Command timed out",
        remove: "rejected: Command timed out",
        refresh: "rejected: Command timed out",
        lookup: "rejected: Command timed out",
        ping: "rejected: Command timed out",
      });
      await waitFor(() => resets > 0, "a reconnect once the socket stayed silent", 15_000);
      assert.ok(redis.stats.connections >= 2, `${redis.stats.connections} connections`);
    } finally {
      (routes as unknown as { redis: { disconnect(): void } }).redis.disconnect();
      redis.close();
    }
  });
});
