import assert from "node:assert/strict";
import net from "node:net";
import { TcpProxy } from "./tcp-proxy.js";
import { waitFor } from "./wait.js";

describe("TcpProxy (test support)", () => {
  let echo: net.Server;
  let proxy: TcpProxy;
  let client: net.Socket | undefined;

  beforeEach(async () => {
    echo = net.createServer((s) => s.on("data", (d) => s.write(d)));
    await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve));
    proxy = await TcpProxy.start(`127.0.0.1:${(echo.address() as net.AddressInfo).port}`);
  });
  afterEach(async () => {
    client?.destroy();
    await proxy.close();
    await new Promise<void>((resolve) => echo.close(() => resolve()));
  });

  it("keeps a stream's answers in order when the delay is lowered while some are held (a slow link healing), and lets those held go then", async () => {
    client = net.connect(proxy.port, "127.0.0.1");
    await new Promise((resolve) => client!.once("connect", resolve));
    let got = "";
    client.on("data", (d) => (got += String(d)));
    proxy.answerDelayMs = 60_000;
    client.write("A");
    // "A" echoed and held by the proxy before the delay is lowered.
    await waitFor(() => proxy.heldAnswers() > 0, "the first answer held");
    proxy.answerDelayMs = 0;
    client.write("B");
    // Held for the delay as it was when it came, "A" kept a grant asked just before etcd's link healed unanswered past its lease.
    await waitFor(() => got.length === 2, "both answers once the link healed", 10_000);
    // Written as it came, "B" overtook "A": an HTTP/2 client (etcd's) then read garbage and dropped its connection.
    assert.equal(got, "AB");
  });
});
