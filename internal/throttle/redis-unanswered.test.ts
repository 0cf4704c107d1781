// RedisLoginAttempts against a Redis that keeps the connection and stops answering (paused,
// a frozen VM, packets dropped): a fake on loopback, no engine needed.
import assert from "node:assert/strict";
import net from "node:net";
import { RedisLoginAttempts } from "./redis.js";

/** A RESP server that completes a client's handshake and then answers nothing. */
async function silentRedis() {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
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

describe("RedisLoginAttempts when Redis stops answering", function () {
  this.timeout(30_000);

  it("fails every call within a bound, so a login goes on uncounted instead of waiting for ever", async () => {
    const redis = await silentRedis();
    const attempts = new RedisLoginAttempts({ url: redis.url, windowMs: 60_000 });
    try {
      const calls = {
        get: attempts.get("alice|10.0.0.1"),
        fail: attempts.fail("alice|10.0.0.1"),
        clear: attempts.clear("alice|10.0.0.1"),
        rememberSuccess: attempts.rememberSuccess("alice|10.0.0.1", 60_000),
        succeededBefore: attempts.succeededBefore("alice|10.0.0.1"),
      };
      // The default timeout is 1 s; the rest is slack for a loaded machine.
      const outcomes = await Promise.all(Object.values(calls).map((p) => outcomeAfter(p, 3_000)));
      for (const [i, name] of Object.keys(calls).entries()) assert.match(outcomes[i]!, /^rejected/, name);
    } finally {
      (attempts as unknown as { redis: { disconnect(): void } }).redis.disconnect();
      redis.close();
    }
  });
});
