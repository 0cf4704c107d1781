// A loopback TCP proxy that a test can cut, to put a real client "on the other side of a
// network partition" from a real engine without touching the engine itself.
import net from "node:net";

export type CutMode =
  /** Connections are reset and new ones refused at once (a crashed host, a closed port). */
  | "reset"
  /** Connections stay open but nothing gets through (a partition: requests hang). */
  | "blackhole"
  /**
   * Connections are reset and the port stops listening, so a new one fails to connect
   * (ECONNREFUSED) as a stopped server's port does: "reset" accepts and then drops, which
   * takes a client through other paths (a handshake cut short).
   */
  | "refuse";

interface Pair {
  client: net.Socket;
  upstream: net.Socket | undefined;
  /** Answers held back by answerDelayMs, in the order they came, each with when it is due (performance.now()). */
  held?: { at: number; chunk: Buffer }[];
  releasing?: NodeJS.Timeout;
}

export class TcpProxy {
  private readonly pairs = new Set<Pair>();
  private mode: CutMode | undefined;
  /** Connections accepted so far, those a cut drops at once too: how often a client tried. */
  accepted = 0;
  private delayMs = 0;

  /** How much later each answer from the target reaches the client (a slow link); 0: at once. */
  get answerDelayMs(): number {
    return this.delayMs;
  }

  /**
   * Lowered (a slow link healing), the answers already held are due no later than the new delay
   * from now, still in order: a grant asked just before etcd's link healed is answered once it has.
   */
  set answerDelayMs(ms: number) {
    const lowered = ms < this.delayMs;
    this.delayMs = ms;
    if (!lowered) return;
    const due = performance.now() + ms;
    for (const pair of this.pairs) {
      if (!pair.held?.length) continue;
      for (const h of pair.held) h.at = Math.min(h.at, due);
      this.releaseHeld(pair);
    }
  }

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  /** Starts a proxy on 127.0.0.1 (a free port) forwarding to `target` ("host:port"). */
  static async start(target: string): Promise<TcpProxy> {
    const [host, port] = splitHostPort(target);
    let proxy: TcpProxy | undefined;
    const server = net.createServer((socket) => proxy!.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port, { host, port });
    return proxy;
  }

  /** Answers held back by answerDelayMs, not yet written to their clients. */
  heldAnswers(): number {
    return [...this.pairs].reduce((n, p) => n + (p.held?.length ?? 0), 0);
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Cuts every connection (and every new one) until restore(). */
  cut(mode: CutMode): void {
    this.mode = mode;
    if (mode === "refuse") this.server.close();
    if (mode === "reset" || mode === "refuse") for (const p of [...this.pairs]) this.drop(p);
  }

  /**
   * Lets traffic through again; connections made while cut are closed so clients reconnect cleanly.
   * After "refuse", resolves once the port listens again.
   */
  restore(): Promise<void> {
    const listening = this.mode === "refuse" ? this.listenAgain() : Promise.resolve();
    this.mode = undefined;
    for (const p of [...this.pairs]) if (!p.upstream || p.client.destroyed) this.drop(p);
    // Blackholed connections lost bytes mid-stream: they are unusable.
    for (const p of [...this.pairs]) if ((p as Pair & { holed?: boolean }).holed) this.drop(p);
    return listening;
  }

  async close(): Promise<void> {
    for (const p of [...this.pairs]) this.drop(p);
    // Called after "refuse" too, when the server no longer listens: its error is no failure here.
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private listenAgain(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.port, "127.0.0.1", () => {
        this.server.off("error", reject);
        resolve();
      });
    });
  }

  private accept(client: net.Socket): void {
    this.accepted++;
    const pair: Pair & { holed?: boolean } = { client, upstream: undefined };
    this.pairs.add(pair);
    client.on("error", () => this.drop(pair));
    client.on("close", () => this.drop(pair));
    if (this.mode === "reset") return this.drop(pair);
    if (this.mode === "blackhole") {
      pair.holed = true;
      client.on("data", () => {});
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    pair.upstream = upstream;
    upstream.on("error", () => this.drop(pair));
    upstream.on("close", () => this.drop(pair));
    client.on("data", (chunk) => {
      if (this.mode === "blackhole") pair.holed = true;
      else upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (this.mode === "blackhole") pair.holed = true;
      else this.answer(pair, chunk);
    });
  }

  /**
   * Writes `chunk` to the client answerDelayMs from now, and never before an answer held before it,
   * also once the delay is lowered while some are held: bytes out of order broke the client's
   * stream (HTTP/2).
   */
  private answer(pair: Pair, chunk: Buffer): void {
    const held = (pair.held ??= []);
    if (held.length === 0 && this.delayMs <= 0) return void pair.client.write(chunk);
    held.push({ at: performance.now() + this.delayMs, chunk });
    if (held.length === 1) this.releaseHeld(pair);
  }

  /** Writes the first answer held when it is due, and those after it as they fall due, in order. */
  private releaseHeld(pair: Pair): void {
    const held = pair.held!;
    clearTimeout(pair.releasing);
    pair.releasing = setTimeout(() => {
      if (!this.pairs.has(pair)) return;
      do pair.client.write(held.shift()!.chunk);
      while (held.length > 0 && held[0]!.at <= performance.now());
      if (held.length > 0) this.releaseHeld(pair);
    }, Math.max(0, Math.ceil(held[0]!.at - performance.now())));
  }

  private drop(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    clearTimeout(pair.releasing);
    pair.client.destroy();
    pair.upstream?.destroy();
  }
}

function splitHostPort(s: string): [string, number] {
  const cleaned = s.replace(/^[a-z]+:\/\//, "");
  const i = cleaned.lastIndexOf(":");
  return [cleaned.slice(0, i), Number(cleaned.slice(i + 1))];
}
