import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../support/ports.js";
import { startRole, useDeployment } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

// Redis is not waited for at start, and what needs it then failed with lines that named no
// setting ("presence sweep failed", MaxRetriesPerRequestError): nothing said that CHAT_REDIS_URL
// pointed where no Redis runs. The line asking about it shows its password masked.
describe("a Redis that does not answer at start: one line names CHAT_REDIS_URL, password masked", function () {
  this.timeout(120_000);
  const deployment = useDeployment("redisaway");

  /** Starts `role` with CHAT_REDIS_URL on a port nothing listens on; resolves with its log lines once one names the setting. */
  async function linesNamingIt(role: string, env: Record<string, string>): Promise<{ lines: string[]; port: number }> {
    const port = await freePort();
    const lines: string[] = [];
    const p = await startRole(role, { ...env, CHAT_REDIS_URL: `redis://:hunter2@127.0.0.1:${port}` }, 90_000, { onLine: (l) => lines.push(l) });
    try {
      await waitFor(() => lines.some((l) => l.includes("CHAT_REDIS_URL")), `${role} to name CHAT_REDIS_URL`, 15_000);
    } finally {
      await p.stop();
    }
    return { lines: [...lines, ...p.output], port };
  }

  const cases: Record<string, () => Record<string, string>> = {
    chatd: () => ({ CHAT_DATA_DIR: mkdtempSync(join(deployment.dir, "chatd-")), CHAT_HTTP_PORT: "0", CHAT_GRPC_PORT: "0", CHAT_PRESENCE_STORE: "redis" }),
    // Every cluster role that uses Redis opens its session routes as the api does.
    api: () => deployment.env,
  };
  for (const [role, env] of Object.entries(cases)) {
    it(role, async () => {
      const { lines, port } = await linesNamingIt(role, env());
      const named = lines.find((l) => l.includes("CHAT_REDIS_URL"))!;
      assert.match(JSON.parse(named).msg, new RegExp(`is CHAT_REDIS_URL=redis://:\\*\\*\\*@127\\.0\\.0\\.1:${port} where it runs\\?`));
      assert.equal(JSON.parse(named).level, 40);
      assert.deepEqual(lines.filter((l) => l.includes("hunter2")), [], "Redis's password in a line");
    });
  }
});
