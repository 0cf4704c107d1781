// Run by session.test.ts in a process of its own: a real Cassandra behind a
// port that refuses connections for 40 s as a stopped node's does, then
// accepts again. Prints {downMs, tookMs}: how long after the port accepted
// again the client answered.
import net from "node:net";
import { waitFor } from "../../../test/support/wait.js";
import { createClient } from "./session.js";

/**
 * A port in front of a real node that can refuse connections as a stopped
 * node's does (ECONNREFUSED at once), rather than accept and drop them.
 */
class Port {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  static async open(target: string): Promise<Port> {
    const i = target.lastIndexOf(":");
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const p = new Port(port, { host: target.slice(0, i), port: Number(target.slice(i + 1)) });
    await p.accept();
    return p;
  }

  /** Forwards connections to the node. */
  async accept(): Promise<void> {
    await this.stopListening();
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("error", () => {});
        s.on("close", () => {
          this.sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, "127.0.0.1", resolve));
  }

  /** Drops every connection and refuses new ones, as a node that stopped. */
  async refuse(): Promise<void> {
    const closed = this.stopListening();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  close(): Promise<void> {
    return this.refuse();
  }

  private async stopListening(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

const port = await Port.open(process.env.CASSANDRA_TARGET!);
const client = createClient({ contactPoints: [`127.0.0.1:${port.port}`], localDataCenter: process.env.CASSANDRA_DC! });
await client.connect();
const answers = () => client.execute("SELECT release_version FROM system.local").then(() => true, () => false);
if (!(await answers())) throw new Error("no answer before the outage");
await port.refuse();
const downSince = Date.now();
await waitFor(async () => !(await answers()), "the node taken as down");
// Long enough for the driver's default schedule (1 s doubling to 10 minutes)
// to wait half a minute and more before its next attempt.
await waitFor(() => Date.now() - downSince >= 40_000, "an outage of 40 s", 60_000, 100);
await port.accept();
const downMs = Date.now() - downSince;
const restoredAt = Date.now();
await waitFor(answers, "an answer after the node came back", 120_000, 100);
console.log(JSON.stringify({ downMs, tookMs: Date.now() - restoredAt }));
await client.shutdown();
await port.close();
process.exit(0);
