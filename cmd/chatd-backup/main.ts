import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { ConfigError, EnvReader } from "../../internal/config/env.js";
import { removeAbandonedPartials } from "../../internal/storage/sqlite/backup.js";
import { exitOnConfigError } from "../shared.js";
import { restoreDataDir } from "../../internal/storage/sqlite/restore.js";

// `npm run backup -- <new directory>`: a copy of chatd's data directory
// (CHAT_DATA_DIR), also while chatd runs. `npm run backup -- --restore
// <backup>`: the copy put back in place as CHAT_DATA_DIR, chatd stopped
// (internal/storage/sqlite/restore.ts).
const USAGE = [
  "usage: npm run backup -- <new directory>             (copies CHAT_DATA_DIR, default .data, also while chatd runs)",
  "       npm run backup -- --restore <backup directory> (puts a backup in place as CHAT_DATA_DIR; chatd stopped)",
].join("\n");

const source = exitOnConfigError("backup", () => {
  const r = new EnvReader();
  const dir = r.string("CHAT_DATA_DIR", ".data");
  r.done();
  return dir;
});
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === "--help" || args[0] === "-h")) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (args[0] === "--restore" && args.length === 2 && args[1] && !args[1].startsWith("-")) {
  try {
    const report = restoreDataDir(args[1], source);
    process.stdout.write(
      `restored ${resolve(args[1])} to ${report.dataDir}: ${[...report.databases, ...report.files].join(", ")}; ` +
        `${report.before ? `what it held before is in ${report.before}` : "it held nothing before"}\n`,
    );
    process.exit(0);
  } catch (err) {
    // The data directory's lock (internal/storage/sqlite/data-dir.ts): held by a running chatd, or not to be had.
    const why = err instanceof ConfigError ? err.problems.join("; ").replace(/; give each chatd its own directory$/, ": stop chatd first") : (err as Error).message;
    process.stderr.write(`restore: ${why}\n`);
    process.exit(1);
  }
}
const target = args[0];
if (!target || args.length > 1 || target.startsWith("-")) {
  process.stderr.write(`${USAGE}\n`);
  process.exit(2);
}

// The copy runs in a child process: VACUUM INTO is one native call that holds
// the thread to its end, so here no handler could run on Ctrl-C before the
// whole database was copied, and once killed, nothing would remove the
// half-made copy beside the target (as large as the data, password hashes and
// all). This process stays free to answer a signal: it kills the copy at once
// and removes what the copy left.
const SIGNALS = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as const;
let interrupted: keyof typeof SIGNALS | undefined;
const copy = spawn(process.execPath, [...process.execArgv, join(import.meta.dirname, "copy.ts"), source, target], { stdio: "inherit" });
for (const signal of Object.keys(SIGNALS) as (keyof typeof SIGNALS)[]) {
  process.on(signal, () => {
    interrupted ??= signal;
    copy.kill("SIGKILL");
  });
}
copy.on("error", (err) => {
  process.stderr.write(`backup: cannot start the copy: ${err.message}\n`);
  process.exit(1);
});
copy.on("exit", (code, signal) => {
  // It ended by itself: finished, or failed and removed its half-made copy.
  if (code !== null) process.exit(code);
  // Killed (by us, or by the OOM killer): its copy is half-made; a finished one already has the target's name.
  removeAbandonedPartials(target);
  const finished = existsSync(resolve(target));
  const why = interrupted ? `interrupted by ${interrupted}` : `the copy was killed by ${signal}`;
  process.stderr.write(`backup: ${why}; ${finished ? `${resolve(target)} was finished before` : `nothing was left at ${resolve(target)}`}\n`);
  process.exit(interrupted ? 128 + SIGNALS[interrupted] : 1);
});
