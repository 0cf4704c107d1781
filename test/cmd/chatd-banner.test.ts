import assert from "node:assert/strict";
import { startRole, stopAll } from "../support/processes.js";
import { removeDataDir } from "../support/chatd.js";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "../support/wait.js";

/**
 * What chatd prints for the person who started it names every place to point
 * something at: /metrics too, which CHAT_OPS_PORT moves to a port the log line
 * gave only as a bare number.
 */
describe("chatd's start-up banner", function () {
  this.timeout(60_000);
  const dirs: string[] = [];
  after(async () => {
    await stopAll();
    for (const dir of dirs) removeDataDir(dir);
  });

  async function banner(env: Record<string, string>): Promise<{ text: string; info: Record<string, unknown> }> {
    const dir = mkdtempSync(join(tmpdir(), "chatd-banner-"));
    dirs.push(dir);
    const p = await startRole("chatd", { CHAT_DATA_DIR: dir, CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0", ...env }, 60_000);
    await waitFor(() => p.output.join("").includes("Stop it with Ctrl+C."), "chatd's banner", 10_000);
    const text = p.output.join("");
    await p.stop();
    return { text, info: p.info };
  }

  it("gives the probes and /metrics on the HTTP port without CHAT_OPS_PORT", async () => {
    const { text, info } = await banner({});
    assert.ok(text.includes(`  Probes (ready, alive):   ${String(info.http)}/readyz, ${String(info.http)}/livez\n`), text);
    assert.ok(text.includes(`  Metrics:                 ${String(info.http)}/metrics\n`), text);
  });

  it("gives /metrics on CHAT_OPS_PORT's port when it is set", async () => {
    const { text, info } = await banner({ CHAT_OPS_PORT: "0" });
    assert.ok(text.includes(`  Probes (ready, alive):   ${String(info.http)}/readyz, ${String(info.http)}/livez\n`), text);
    assert.ok(text.includes(`  Metrics:                 http://127.0.0.1:${Number(info.ops)}/metrics\n`), text);
  });
});
