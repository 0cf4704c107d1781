import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { removeDataDir, startChatd, type ChatdProcess } from "../support/chatd.js";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "cmd/chat-cli/main.ts");
const PASSWORD = "correct horse battery";

/** Loaded before the CLI: its clock (Date.now and new Date()) runs CLOCK_SKEW_MS away from the server's. */
const SKEWED_CLOCK = `data:text/javascript,${encodeURIComponent(`
const skew = Number(process.env.CLOCK_SKEW_MS || 0);
const Real = Date;
class Skewed extends Real {
  constructor(...args) { if (args.length === 0) super(Real.now() + skew); else super(...args); }
  static now() { return Real.now() + skew; }
}
globalThis.Date = Skewed;
`)}`;

describe("chat-cli on a machine whose clock is not the server's", function () {
  this.timeout(120_000);
  let chatd: ChatdProcess;
  const homes: string[] = [];

  before(async () => {
    chatd = await startChatd();
  });

  after(async () => {
    for (const home of homes) rmSync(home, { recursive: true, force: true });
    await chatd?.stop();
    if (chatd) removeDataDir(chatd.dataDir);
  });

  const cli = (home: string, skewMs: number) => (...args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
      const child = spawn(process.execPath, ["--import", SKEWED_CLOCK, "--import", "tsx", CLI, ...args], {
        cwd: ROOT,
        env: { ...process.env, CHAT_CLI_HOME: home, CHAT_SERVER: chatd.httpUrl, CHAT_PASSWORD: PASSWORD, CLOCK_SKEW_MS: String(skewMs) },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let [stdout, stderr] = ["", ""];
      child.stdout!.on("data", (d) => (stdout += d));
      child.stderr!.on("data", (d) => (stderr += d));
      child.on("close", (code) => done({ code, stdout, stderr }));
    });

  for (const [skewMs, how] of [
    [3_600_000, "an hour ahead"],
    [-3_600_000, "an hour behind"],
  ] as const) {
    it(`keeps using its access token until it nears its lifetime, with the clock ${how}`, async () => {
      const home = mkdtempSync(join(tmpdir(), "chat-cli-clock-"));
      homes.push(home);
      const run = cli(home, skewMs);
      const username = `clock${skewMs > 0 ? "a" : "b"}_${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
      const saved = () => JSON.parse(readFileSync(join(home, "credentials.json"), "utf8")) as { accessToken: string; accessExpiresAtMs: number; refreshToken: string };

      const before = Date.now() + skewMs;
      const signup = await run("signup", username);
      assert.equal(signup.code, 0, signup.stderr);
      const after = Date.now() + skewMs;
      const login = saved();
      // The token lives 15 minutes (chatd's default) from when it came, by the CLI's own clock.
      assert.ok(login.accessExpiresAtMs >= before + 15 * 60_000 - 1_000 && login.accessExpiresAtMs <= after + 15 * 60_000, `expiry ${login.accessExpiresAtMs - after} ms after sign-up`);

      for (let i = 0; i < 2; i++) {
        const r = await run("whoami");
        assert.equal(r.code, 0, r.stderr);
      }
      // No refresh on the way: the same tokens, not rotated ones.
      assert.deepEqual(saved(), login);
    });
  }
});
