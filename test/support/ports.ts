import { createServer, type AddressInfo } from "node:net";

/**
 * A loopback port free at this moment: for a process whose port must be
 * known before it starts, or an address where nothing answers (an engine
 * that is away). Another process may take it meanwhile; tests that can
 * let the process pick its own (port 0) do.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
