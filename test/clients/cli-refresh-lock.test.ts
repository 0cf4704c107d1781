// chat-cli's refresh lock between two processes of one device: one whose refresh is slow must not end the other's follow.
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AuthService } from "../../gen/es/chat/v1/auth_pb.js";
import { CALL_TIMEOUT_MS, isTransient, Session } from "../../internal/cli/client.js";
import { follow } from "../../internal/cli/follow.js";
import { LOCK_WAIT_MS, LoginStore } from "../../internal/cli/store.js";
import { freePort } from "../support/ports.js";
import { waitFor } from "../support/wait.js";

describe("chat-cli's refresh lock, held by another chat-cli of the device", function () {
  this.timeout(30_000);
  let server: Server;
  let home: string;
  let refreshes = 0;

  before(async () => {
    const routes = (router: ConnectRouter) =>
      router.service(AuthService, {
        async refresh(req) {
          const n = ++refreshes;
          return {
            credentials: { accessToken: `access-${n}`, accessTokenExpiresAt: timestampFromMs(Date.now() + 600_000), refreshToken: `${req.refreshToken}>${n}`, userId: 1n, deviceId: 2n },
          };
        },
      });
    server = createServer(connectNodeAdapter({ routes }));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
  });
  beforeEach(() => {
    home = mkdtempSync(join(tmpdir(), "chat-cli-lock-"));
  });
  afterEach(() => rmSync(home, { recursive: true, force: true }));
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  /** A session with a stale token on a store whose lock another process holds (a fresh lock file), waited for `lockWaitMs`. */
  function lockedOut(lockWaitMs: number) {
    const store = new LoginStore({ CHAT_CLI_HOME: home }, lockWaitMs);
    const at = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    store.write({ server: at, username: "u", userId: "1", deviceId: "2", accessToken: "access-0", accessExpiresAtMs: 0, refreshToken: "r0" });
    writeFileSync(join(home, "refresh.lock"), "");
    return new Session(store, store.read()!);
  }

  it("waits longer than a refresh's own deadline, so one that hangs to its end never makes the waiting one give up first", () => {
    assert.ok(LOCK_WAIT_MS > CALL_TIMEOUT_MS, `lock wait ${LOCK_WAIT_MS} ms, refresh deadline ${CALL_TIMEOUT_MS} ms`);
  });

  it("gives up the wait as a failure that may mend by itself", async () => {
    const session = lockedOut(200);
    const err = await session.refresh(true).then(
      () => assert.fail("refreshed under another's lock"),
      (e: unknown) => e,
    );
    assert.match(String(err), /could not take .*refresh\.lock/);
    assert.ok(isTransient(err), "a lock held past the wait ended follow as a permanent failure");
    assert.equal(refreshes, 0);
  });

  it("keeps following over a lock held past the wait, and refreshes once it is let go of", async () => {
    const session = lockedOut(200);
    const statuses: string[] = [];
    const abort = new AbortController();
    // Nothing listens there: after the refresh, follow goes on trying to connect, until aborted.
    const nowhere = `ws://127.0.0.1:${await freePort()}/ws`;
    const following = follow(session, {
      channelId: 1n,
      afterSeq: 0n,
      print: async () => {},
      printChange: async () => {},
      status: (line) => statuses.push(line),
      signal: abort.signal,
      wsUrl: nowhere,
    });
    let ended: unknown;
    following.then(
      () => (ended = "returned"),
      (e: unknown) => (ended = e),
    );
    try {
      await waitFor(() => ended ?? statuses.some((s) => s.startsWith("cannot refresh the access token")), "follow to say it cannot refresh yet");
      assert.equal(ended, undefined, `follow ended: ${String(ended)}`);
      rmSync(join(home, "refresh.lock"));
      // The server counts a refresh before its answer reaches the session: waiting on the count alone raced the answer.
      await waitFor(() => session.login.accessToken !== "access-0" || ended, "the refresh once the lock is let go of", 10_000);
      assert.equal(ended, undefined, `follow ended: ${String(ended)}`);
      assert.equal(session.login.accessToken, `access-${refreshes}`);
    } finally {
      abort.abort();
      await following.catch(() => undefined);
    }
  });
});
