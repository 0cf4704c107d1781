// chat-cli's Session refreshing its token against a stand-in AuthService that answers slowly.
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { Session } from "../../internal/cli/client.js";
import { LoginStore } from "../../internal/cli/store.js";

const ANSWER_MS = 1_500;
/** The lock's wait here: the fifth of five refreshes waiting on the file lock, not on each other, would wait 4 × ANSWER_MS. */
const LOCK_WAIT_MS = 3 * ANSWER_MS;

describe("chat-cli's token refreshes in one process", function () {
  this.timeout(60_000);
  let server: Server;
  let home: string;
  let inFlight = 0;
  let mostInFlight = 0;
  let issued = 0;

  before(async () => {
    const routes = (router: ConnectRouter) =>
      router.service(AuthService, {
        // Each answered after ANSWER_MS, with a token of 10 s: stale again at once (under 30 s left), so each refresh asks.
        async refresh(req) {
          inFlight++;
          mostInFlight = Math.max(mostInFlight, inFlight);
          await new Promise((r) => setTimeout(r, ANSWER_MS));
          inFlight--;
          const n = ++issued;
          return {
            credentials: { accessToken: `access-${n}`, accessTokenExpiresAt: timestampFromMs(Date.now() + 10_000), refreshToken: `${req.refreshToken}>${n}`, userId: 1n, deviceId: 2n },
          };
        },
      });
    server = createServer(connectNodeAdapter({ routes }));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    home = mkdtempSync(join(tmpdir(), "chat-cli-refresh-"));
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    rmSync(home, { recursive: true, force: true });
  });

  it("wait for each other, each under its own deadline, not for the file lock, which one gave up 15 s into the wait", async () => {
    const store = new LoginStore({ CHAT_CLI_HOME: home }, LOCK_WAIT_MS);
    const server_ = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    store.write({ server: server_, username: "u", userId: "1", deviceId: "2", accessToken: "access-0", accessExpiresAtMs: 0, refreshToken: "r0" });
    const session = new Session(store, store.read()!);
    // Follow's own, at once: its reconnect, the token it hands the session, and a call's (a name, a history read).
    // The fifth waited 4 × 4 s for the lock, and was refused after 15 (here 4 × ANSWER_MS, refused after LOCK_WAIT_MS).
    const tokens = await Promise.all(Array.from({ length: 5 }, () => session.refresh(true)));
    assert.deepEqual(tokens, ["access-1", "access-2", "access-3", "access-4", "access-5"]);
    assert.equal(mostInFlight, 1, "one refresh token spent twice at once");
    assert.equal(store.read()!.refreshToken, "r0>1>2>3>4>5");
  });
});
