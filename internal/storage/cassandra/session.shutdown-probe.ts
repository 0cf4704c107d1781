// Run by session.test.ts in a process of its own: a client whose connections close before
// they are ready, then shut down. It prints "shut down" once shutdown() is through; nothing
// is left to keep the process alive then, so it exits by itself: the test times that.
//   PROBE_CASE=reset       connected, then Cassandra resets every connection, the reconnects' too
//   PROBE_CASE=connecting  shut down while its first connection waits for Cassandra's answer
import net from "node:net";
import { TcpProxy } from "../../../test/support/tcp-proxy.js";
import { waitFor } from "../../../test/support/wait.js";
import { createClient } from "./session.js";

if (process.env.PROBE_CASE === "reset") {
  const proxy = await TcpProxy.start(process.env.CASSANDRA_TARGET!);
  const client = createClient({ contactPoints: [proxy.address], localDataCenter: process.env.CASSANDRA_DC! });
  await client.connect();
  proxy.cut("reset");
  const before = proxy.accepted;
  await waitFor(() => proxy.accepted >= before + 3, "three reconnects reset", 30_000, 20);
  await client.shutdown();
  await proxy.close();
} else {
  // A Cassandra that takes the connection and never answers its STARTUP.
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((socket) => {
    socket.once("data", () => sockets.add(socket));
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const client = createClient({ contactPoints: [`127.0.0.1:${(silent.address() as net.AddressInfo).port}`], localDataCenter: process.env.CASSANDRA_DC! });
  void client.connect().catch(() => {});
  await waitFor(() => sockets.size > 0, "a connection waiting for its answer", 30_000, 20);
  await client.shutdown();
  // Its socket closes before it was ready.
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => silent.close(() => resolve()));
}
console.log("shut down");
