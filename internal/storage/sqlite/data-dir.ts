import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../../config/env.js";
import { RESTORE_MARK } from "./backup.js";
import { isAlive } from "./process-alive.js";

export interface DataDirLock {
  /** Removes the lock file (on a clean stop); a crash leaves it, for the next start to take over. */
  release(): void;
}

/**
 * Makes CHAT_DATA_DIR and takes it for this process alone: two chatd on one
 * directory would both be worker 0 and mint the same ids, and both trim and
 * write one queue. The lock is `chatd.lock` holding the pid; one whose
 * process is gone (a crash, a kill -9), or whose pid now names a process
 * started after the lock was written, is taken over (by one start at a
 * time: see takeOver). Throws a ConfigError
 * naming CHAT_DATA_DIR, before anything is opened.
 */
export function lockDataDir(dir: string, options: { restoring?: boolean } = {}): DataDirLock {
  const problem = (why: string) => new ConfigError([`CHAT_DATA_DIR=${JSON.stringify(dir)}: ${why}`]);
  try {
    // Its databases hold password and token hashes: nobody else's to read.
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw problem(code === "EEXIST" || code === "ENOTDIR" ? "not a directory" : `cannot create the directory (${code ?? (err as Error).message})`);
  }
  if (!statSync(dir).isDirectory()) throw problem("not a directory");
  const path = join(dir, "chatd.lock");
  const inUse = (pid: number, file: string) => problem(`in use by another chatd (pid ${pid}, ${file}); give each chatd its own directory`);
  try {
    createHolding(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EEXIST") throw problem(`cannot create ${path} (${code ?? (err as Error).message})`);
    const holder = lockHolder(path);
    if (holder === undefined) {
      // The lock is never flushed to the disk: a power cut soon after a start can leave it created but
      // empty, which kept chatd off after the reboot until removed by hand. Made before this boot, no
      // start is still writing into it; one made since may be a start's between its create and its write.
      if (!writtenBeforeBoot(path)) throw problem(`locked by ${path}, which names no process; remove it if no chatd uses the directory`);
    } else if (holds(holder, path)) throw inUse(holder, path);
    takeOver(path, holder, problem, inUse);
  }
  let released = false;
  const lock = {
    release() {
      if (released) return;
      released = true;
      // Only our own: a lock taken over by another start after ours was removed by hand is theirs.
      if (lockHolder(path) === process.pid) rmSync(path, { force: true });
    },
  };
  // A restore stopped midway (restore.ts) left half of the old data and half of the backup.
  if (!options.restoring && existsSync(join(dir, RESTORE_MARK))) {
    lock.release();
    throw problem(`a restore into it did not finish (${RESTORE_MARK}); run npm run backup -- --restore <backup> again`);
  }
  return lock;
}

/**
 * Replaces the lock of `stale`, a chatd that is gone (undefined: an empty lock from before this boot), with ours. Two starts
 * that both found it stale must not both remove it (the later removal would
 * delete the earlier one's fresh lock), so the removal happens under
 * `chatd.lock.takeover`, created exclusively, and only while the lock still
 * names `stale`. A takeover guard left by a start that died during its
 * takeover is removed once, like a stale lock.
 */
function takeOver(path: string, stale: number | undefined, problem: (why: string) => Error, inUse: (pid: number, file: string) => Error): void {
  const guard = `${path}.takeover`;
  for (let attempt = 0; ; attempt++) {
    try {
      createHolding(guard);
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EEXIST") throw problem(`cannot create ${guard} (${code ?? (err as Error).message})`);
      const taker = lockHolder(guard);
      if (taker !== undefined && holds(taker, guard)) throw inUse(taker, guard);
      if (attempt > 0) throw problem(`another start is taking over ${path}; try again`);
      rmSync(guard, { force: true });
    }
  }
  try {
    // Another start may have taken the directory between our look and the guard.
    const holder = lockHolder(path);
    if (holder !== undefined && holder !== stale) throw inUse(holder, path);
    rmSync(path, { force: true });
    try {
      createHolding(path);
    } catch (err) {
      // A start that found no lock at all (after our removal) got it first.
      const code = (err as NodeJS.ErrnoException).code;
      const holder = lockHolder(path);
      if (code === "EEXIST" && holder !== undefined) throw inUse(holder, path);
      throw problem(`cannot create ${path} (${code ?? (err as Error).message})`);
    }
  } finally {
    rmSync(guard, { force: true });
  }
}

/**
 * Creates `path` holding our pid (and, where there is /proc, this boot's id
 * and our start: see holds), failing with EEXIST when it exists. A file made
 * but not written (a full disk) is removed: left empty, it would name no
 * process, and keep every later start off until removed by hand.
 */
function createHolding(path: string): void {
  const fd = openSync(path, "wx");
  try {
    writeSync(fd, `${process.pid}\n${processIdentity(process.pid) ?? ""}\n`);
  } catch (err) {
    closeSync(fd);
    rmSync(path, { force: true });
    throw err;
  }
  closeSync(fd);
}

function lockHolder(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, "utf8").trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether process `pid` can be the one that wrote the lock at `path`: alive,
 * and the very process that wrote it. After a reboot (or a container's
 * restart) the pid of a chatd that never removed its lock can name another
 * process, which must not keep the directory locked for good. The lock names
 * its writer by boot and start in clock ticks since that boot (processIdentity),
 * which a step of the wall clock leaves alone: a start time read against the
 * lock's mtime made a live chatd's lock look stale after the clock stepped
 * forward (a machine without a real-time clock, set by NTP after chatd
 * started), and a second chatd took the directory over.
 */
function holds(pid: number, path: string): boolean {
  if (!holderAlive(pid)) return false;
  const recorded = lockedBy(path);
  const current = processIdentity(pid);
  if (recorded && current) return recorded === current;
  // A lock of an older build (its pid alone), or no /proc: the start time against the lock's mtime.
  const started = processStartMs(pid);
  if (started === undefined) return true;
  // A second of slack: the start time is in clock ticks, the mtime in the file system's resolution.
  return started <= statSync(path).mtimeMs + 1_000;
}

/** Whether the file at `path` was last written before this machine booted; false where that cannot be told (no /proc). */
function writtenBeforeBoot(path: string): boolean {
  try {
    const bootSec = Number(/^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))?.[1]);
    return Number.isFinite(bootSec) && statSync(path).mtimeMs < bootSec * 1000;
  } catch {
    return false;
  }
}

/** The identity (processIdentity) a lock names on its second line; undefined in one of an older build. */
function lockedBy(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").split("\n")[1]?.trim() || undefined;
  } catch {
    return undefined;
  }
}

/** This boot's id and when `pid` started in clock ticks since it, from /proc; undefined where there is no /proc. */
function processIdentity(pid: number): string | undefined {
  try {
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    const ticks = startTicks(pid);
    return boot && ticks !== undefined ? `${boot} ${ticks}` : undefined;
  } catch {
    return undefined;
  }
}

/** When `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat). */
function startTicks(pid: number): number | undefined {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may hold spaces and parentheses: count from the last ")".
  const ticks = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
  return Number.isFinite(ticks) ? ticks : undefined;
}

/** When `pid` started (ms since the epoch), from /proc; undefined where there is no /proc. */
function processStartMs(pid: number): number | undefined {
  try {
    const ticks = startTicks(pid);
    const bootSec = Number(/^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))?.[1]);
    if (ticks === undefined || !Number.isFinite(bootSec)) return undefined;
    return bootSec * 1000 + (ticks * 1000) / CLOCK_TICKS_PER_SEC;
  } catch {
    return undefined;
  }
}

/** USER_HZ, 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS_PER_SEC = 100;

function holderAlive(pid: number): boolean {
  // Our own pid in a lock we do not hold yet is a previous life's (a container's pid 1 again).
  return pid !== process.pid && isAlive(pid);
}
