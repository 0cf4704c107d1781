import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join, resolve } from "node:path";
import { promisify } from "node:util";

const ROOT = resolve(import.meta.dirname, "../..");
const ROLES = ["chatd", "api", "gateway", "chat-server", "pipeline", "presence", "notifier"];

// The suites start the roles bundled (support/role-bundle.ts); the README and npm start run
// them under tsx. Each role's whole module graph loads before its first line runs, so a role
// that reaches its configuration check loaded under tsx as an operator starts it.
describe("every role as the README starts it (node --import tsx cmd/<role>/main.ts)", () => {
  for (const role of ROLES) {
    it(`${role}: loads and refuses a bad setting by name, exit 2`, async () => {
      const run = promisify(execFile)(process.execPath, ["--import", "tsx", join(ROOT, `cmd/${role}/main.ts`)], {
        cwd: ROOT,
        env: { ...process.env, CHAT_LOG_LEVEL: "loud" },
        timeout: 30_000,
      });
      const e = (await run.then(() => assert.fail(`${role} started`), (x: unknown) => x)) as { code?: number; stderr?: string };
      assert.equal(e.code, 2, String(e.stderr));
      assert.match(String(e.stderr), new RegExp(`^${role}: invalid configuration:\\n  - CHAT_LOG_LEVEL="loud"`));
    });
  }
});
