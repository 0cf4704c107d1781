import net from "node:net";

/** A RESP server that completes a client's handshake and then answers nothing; counts connections. */
export async function silentRedis() {
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
export const outcomeAfter = (p: Promise<unknown>, ms: number) =>
  Promise.race([
    p.then(
      () => "resolved",
      (err: Error) => `rejected: ${err.message}`,
    ),
    new Promise<string>((r) => setTimeout(() => r("pending"), ms).unref()),
  ]);

