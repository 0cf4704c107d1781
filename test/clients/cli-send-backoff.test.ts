// chat-cli send against a stand-in api that refuses a send once: when the CLI tries it again.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ChannelService } from "../../gen/es/chat/v1/channels_pb.js";
import { MessageService } from "../../gen/es/chat/v1/messages_pb.js";
import { ChannelKind } from "../../gen/es/chat/v1/types_pb.js";
import { LoginStore } from "../../internal/cli/store.js";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "cmd/chat-cli/main.ts");

describe("chat-cli send refused for an overload, then taken", function () {
  this.timeout(60_000);
  let server: Server;
  let url: string;
  /** The first refusal's headers: none, or a retry hint. */
  let refusal: Record<string, string> = {};
  /** When each send (by its client_msg_id) was tried, monotonic ms. */
  const tries = new Map<string, number[]>();
  const homes: string[] = [];

  before(async () => {
    const routes = (router: ConnectRouter) => {
      router.service(ChannelService, {
        describeChannel: (req) => ({ channel: { channelId: req.channelId, kind: ChannelKind.GROUP, title: "ops" } }),
      });
      router.service(MessageService, {
        sendMessage: (req) => {
          const at = tries.get(req.clientMsgId) ?? [];
          at.push(performance.now());
          tries.set(req.clientMsgId, at);
          if (at.length === 1) throw new ConnectError("overloaded", Code.Unavailable, new Headers(refusal));
          return { messageId: 100n, duplicate: false };
        },
      });
    };
    server = createServer(connectNodeAdapter({ routes }));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  beforeEach(() => {
    tries.clear();
    refusal = {};
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    for (const home of homes) rmSync(home, { recursive: true, force: true });
  });

  function send(): Promise<{ code: number | null; stderr: string }> {
    const home = mkdtempSync(join(tmpdir(), "chat-cli-send-backoff-"));
    homes.push(home);
    new LoginStore({ CHAT_CLI_HOME: home }).write({ server: url, username: "u", userId: "1", deviceId: "2", accessToken: "a", accessExpiresAtMs: Date.now() + 3_600_000, refreshToken: "r" });
    const child = spawn(process.execPath, ["--import", "tsx", CLI, "send", "7", "hello"], {
      cwd: ROOT,
      env: { ...process.env, CHAT_CLI_HOME: home },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    return new Promise((done) => child.on("close", (code) => done({ code, stderr })));
  }

  const waits = () => [...tries.values()].map((at) => at[1]! - at[0]!);

  it("tries again after a wait drawn anywhere up to 0.5 s (full jitter), not the same for every client", async () => {
    const results = await Promise.all(Array.from({ length: 8 }, () => send()));
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const w = waits();
    assert.equal(w.length, 8);
    // Timed at this server, each wait carries its CLI process's own lag too: eight starting at once on a
    // loaded two-core machine came back up to 924 ms after a draw of at most 500 ms. The spread below is what
    // tells jitter from one fixed wait; this bound only that no wait is of another order.
    assert.ok(w.every((ms) => ms >= 0 && ms < 2_500), `waits ${w.map(Math.round).join(", ")} ms`);
    // Every client refused by a server that was overloaded came back at the same 400 ms, 800 ms, ... into it again.
    assert.ok(Math.max(...w) - Math.min(...w) > 100, `waits ${w.map(Math.round).join(", ")} ms: all at once`);
  });

  it("waits no less than the refusal's chat-retry-after-ms, saying so", async () => {
    refusal = { "chat-retry-after-ms": "1500" };
    const r = await send();
    assert.equal(r.code, 0, r.stderr);
    const [w] = waits();
    assert.ok(w! >= 1500, `tried again after ${Math.round(w!)} ms`);
    // A second and more of silence looked like a hang.
    assert.match(r.stderr, /^chat-cli: overloaded; trying again in 2 s\n$/);
  });

  // A text budget spent is refused for minutes: the CLI waited them out, four times over, in silence.
  it("gives up at once, with the server's words, when the refusal asks for more than 15 s", async () => {
    refusal = { "chat-retry-after-ms": "600000" };
    const r = await send();
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, "chat-cli: overloaded\n");
    assert.deepEqual(waits(), [NaN], "one try only");
  });
});
