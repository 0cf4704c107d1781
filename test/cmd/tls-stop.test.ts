import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadOrCreateKeys } from "../../internal/auth/tokens.js";
import { removeDataDir, startChatd } from "../support/chatd.js";
import { startRole, useDeployment, type RoleProcess } from "../support/processes.js";
import { selfSignedCertificate } from "../support/tls.js";

/**
 * A TCP connection to a TLS listener that never began its handshake (a balancer's TCP check, a
 * client mid-connect) is no HTTP connection yet: nothing in the stop cut it, and the listener's
 * close waited for it until the handshake timeout (120 s). The stop ran into its 25 s bound and
 * the process exited 1, "did not stop".
 */
describe("chatd and the gateway with TLS: SIGTERM with a connection that never began its handshake", function () {
  this.timeout(90_000);
  const deployment = useDeployment("tlsstop");
  let dir: string;
  let tls: Record<string, string>;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "tls-stop-"));
    const { certPath, keyPath } = selfSignedCertificate(dir);
    tls = { CHAT_TLS_CERT: certPath, CHAT_TLS_KEY: keyPath };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Holds a bare TCP connection to `url`'s port, sends SIGTERM: the exit status, and the log. */
  async function stopHolding(child: RoleProcess["child"], url: string): Promise<{ code: number | null; log: string }> {
    let log = "";
    child.stdout!.on("data", (d) => (log += String(d)));
    const socket: Socket = connect(Number(new URL(url).port), "127.0.0.1").on("error", () => {});
    try {
      await once(socket, "connect");
      const exited = once(child, "exit") as Promise<[number | null]>;
      child.kill("SIGTERM");
      const [code] = await exited;
      return { code, log };
    } finally {
      socket.destroy();
    }
  }

  it("chatd exits 0", async () => {
    const chatd = await startChatd({ env: tls });
    try {
      const { code, log } = await stopHolding(chatd.child, chatd.httpUrl);
      assert.doesNotMatch(log, /did not stop/);
      assert.equal(code, 0);
    } finally {
      await chatd.kill();
      removeDataDir(chatd.dataDir);
    }
  });

  it("the gateway exits 0", async () => {
    await loadOrCreateKeys(deployment.keysDir);
    const gateway = await startRole("gateway", { ...deployment.env, ...tls });
    try {
      const { code, log } = await stopHolding(gateway.child, String(gateway.info.http));
      assert.doesNotMatch(log, /did not stop/);
      assert.equal(code, 0);
    } finally {
      await gateway.kill();
    }
  });
});
