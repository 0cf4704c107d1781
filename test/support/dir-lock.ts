import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { isAlive } from "../../internal/storage/sqlite/process-alive.js";
import { waitFor } from "./wait.js";

/**
 * Runs `work` holding a lock every test process respects (npm test runs suite files side by
 * side): a folder made with mkdir, which only one can make, holding its holder's pid so that
 * a holder killed before it let go does not keep it for good. Waits up to `timeoutMs` for it.
 */
export async function withDirLock<T>(dir: string, what: string, work: () => Promise<T>, timeoutMs = 600_000): Promise<T> {
  mkdirSync(resolve(dir, ".."), { recursive: true });
  await waitFor(
    () => {
      try {
        mkdirSync(dir);
        writeFileSync(join(dir, "pid"), String(process.pid));
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        // No pid yet: its holder is between making the folder and writing it.
        const holder = Number(readPid(dir));
        if (holder > 0 && !isAlive(holder)) rmSync(dir, { recursive: true, force: true });
        return false;
      }
    },
    `the lock of ${what} (${dir})`,
    timeoutMs,
    50,
  );
  try {
    return await work();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function readPid(dir: string): string | undefined {
  try {
    return readFileSync(join(dir, "pid"), "utf8");
  } catch {
    return undefined;
  }
}
