import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CliError, Session } from "../../internal/cli/client.js";
import type { LoginStore } from "../../internal/cli/store.js";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "cmd/chat-cli/main.ts");

/** The CLI with a home of its own and no login: options are checked before anything asks for one. */
async function run(home: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { cwd: ROOT, env: { ...process.env, CHAT_CLI_HOME: home }, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += String(d)));
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, stderr };
}

describe("chat-cli: numeric options", function () {
  this.timeout(60_000);
  let home: string;
  before(() => (home = mkdtempSync(join(tmpdir(), "chat-cli-numbers-"))));
  after(() => rmSync(home, { recursive: true, force: true }));

  // Number() takes "" and " " as 0, "0x10" as 16, "1e2" as 100: `--last "$N"` with N unset
  // printed no history instead of being refused, and a typo passed for another figure.
  for (const [args, option] of [
    [["history", "1", "--limit", "0x10"], "--limit"],
    [["history", "1", "--limit", "1e2"], "--limit"],
    [["search", "1", "word", "--before", "1e3"], "--before"],
    [["follow", "1", "--last", ""], "--last"],
    [["follow", "1", "--last", " 5"], "--last"],
  ] as const) {
    it(`refuses ${args.slice(1).map((a) => JSON.stringify(a)).join(" ")} as a usage error naming ${option}`, async () => {
      const r = await run(home, [...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`${option} must be an integer from`));
    });
  }

  it("takes plain digits", async () => {
    const r = await run(home, ["history", "1", "--limit", "007"]);
    // Past the options: the login it asks for next.
    assert.equal(r.code, 3, r.stderr);
  });
});

describe("chat-cli: an @ with no name", () => {
  // The server's words for an empty search ("query is required", exit 1) named no argument.
  it("is a usage error naming it, asked of no server", async () => {
    const login = { server: "http://127.0.0.1:1", username: "me", userId: "1", deviceId: "2", accessToken: "t", accessExpiresAtMs: Date.now() + 3_600_000, refreshToken: "r" };
    const s = new Session({} as LoginStore, login);
    let searched = false;
    (s as { api: unknown }).api = {
      users: {
        searchUsers: async () => {
          searched = true;
          throw new Error("query is required");
        },
      },
    };
    for (const ref of ["@", "@ "]) {
      const err = await s.resolveChannel(ref).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof CliError && err.exitCode === 2, `${JSON.stringify(ref)}: ${String(err)}`);
      assert.match(err.message, /names no user/);
    }
    assert.equal(searched, false);
  });
});
