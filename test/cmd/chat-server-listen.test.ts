import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { engineScope } from "../support/engine-scope.js";
import { engineConfig } from "../support/engines.js";

const ROOT = resolve(import.meta.dirname, "../..");

// cmd/chat-server on a gRPC port it cannot have: one line naming the setting, not grpc-js's stack trace.
describe("chat-server: a gRPC port in use", function () {
  this.timeout(120_000);
  const scope = engineScope(engineConfig(), "cslisten");
  after(() => scope.drop());

  it("exits 1 with one line naming CHAT_GRPC_PORT", async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    const port = (taken.address() as AddressInfo).port;
    const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "cmd/chat-server/main.ts")], {
      cwd: ROOT,
      env: { ...process.env, ...scope.env, CHAT_GRPC_PORT: String(port), CHAT_OPS_PORT: "0", GRPC_VERBOSITY: "NONE" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += String(d)));
    try {
      const [code] = (await once(child, "exit")) as [number | null];
      assert.equal(code, 1, stderr);
      assert.match(stderr, new RegExp(`^chat-server: cannot listen on 127\\.0\\.0\\.1:${port} \\(CHAT_GRPC_PORT\\): the port is in use`, "m"));
      assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      taken.close();
    }
  });
});
