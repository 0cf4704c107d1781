import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import Database from "better-sqlite3";
import { SCHEMA_VERSION } from "./database.js";
import { backupDataDir, removeAbandonedPartials, RESTORE_MARK, syncToDisk, syncTree } from "./backup.js";
import { lockDataDir, type DataDirLock } from "./data-dir.js";

export interface RestoreReport {
  /** The data directory, now holding the backup's content. */
  dataDir: string;
  /** Where what the data directory held before went; undefined when it held nothing. */
  before: string | undefined;
  databases: string[];
  files: string[];
}

/** chatd's lock and its takeover guard: they stay with the directory, never move with its data. */
const LOCKS = new Set(["chatd.lock", "chatd.lock.takeover"]);

/**
 * Puts the backup `backup` in place as the data directory `dataDir`, chatd
 * stopped. Copying a backup's chat.db over a directory a chatd left behind
 * corrupts it: the chat.db-wal of the old data stays, and SQLite applies that
 * log to the restored file ("database disk image is malformed"). So:
 *
 * - the data directory is taken with chatd's own lock (chatd.lock) for the
 *   whole restore: with a chatd running on it nothing is touched, and no
 *   chatd starts on it half-restored;
 * - the backup is copied as a backup is made (each database by VACUUM INTO
 *   and SQLite's quick_check, so a damaged or truncated backup is refused
 *   before anything is moved), beside the data directory, to the disk;
 * - everything the data directory held, its WAL files included, moves to
 *   `<data directory>.before-restore-<time>`, kept, never deleted;
 * - then the copy moves in. The backup itself is never written to.
 *
 * From the first move to the last, `chatd.restoring` in the data directory
 * keeps chatd off (a restore stopped midway leaves half of each), and tells
 * the next restore where this one's old data went: it finishes the moves.
 *
 * The directory is kept (its content is swapped), so a data directory that is
 * a mount point can be restored too. One that did not exist is made, and
 * removed again (with the parents made for it) when the restore is refused.
 */
export function restoreDataDir(
  backup: string,
  dataDir: string,
  now: () => Date = () => new Date(),
  lock: (dir: string) => DataDirLock = (dir) => lockDataDir(dir, { restoring: true }),
  /** Moves one entry (tests stop a restore midway with it). */
  move: (from: string, to: string) => void = moveEntry,
): RestoreReport {
  const from = resolve(backup);
  const to = resolve(dataDir);
  if (!existsSync(join(from, "chat.db"))) throw new Error(`no backup in ${from} (chat.db is missing)`);
  if (from === to) throw new Error(`${from} is the data directory itself`);
  if (from.startsWith(to + "/") || to.startsWith(from + "/")) throw new Error(`the backup ${from} and the data directory ${to} cannot be inside one another`);
  // The lock makes the directory (and any parents) missing: a refused restore leaves none it made.
  const made = outermostMissing(to);
  let held: DataDirLock;
  try {
    held = lock(to);
  } catch (err) {
    removeMadeEmpty(to, made);
    throw err;
  }
  let done = false;
  try {
    const staging = removeRestoreLeftovers(to);
    const copied = backupDataDir(from, staging);
    try {
      refuseNewerSchema(join(staging, "chat.db"));
      // The moves take long across file systems, and a restore stopped among them (Ctrl-C, a
      // kill, a full disk) leaves half of each: the mark keeps chatd off (data-dir.ts), and
      // says where this one goes on from.
      const markPath = join(to, RESTORE_MARK);
      let mark = readMark(markPath);
      if (!mark) {
        const held = readdirSync(to).filter((name) => !STAYS.has(name));
        mark = { before: held.length > 0 ? `${to}.before-restore-${now().toISOString().replace(/[:.]/g, "-")}` : undefined, movedOut: false };
        if (mark.before !== undefined && existsSync(mark.before)) throw new Error(`${mark.before} exists`);
        writeMark(markPath, mark);
      }
      const { before } = mark;
      if (!mark.movedOut) {
        if (before !== undefined) {
          mkdirSync(before, { recursive: true, mode: 0o700 });
          for (const name of readdirSync(to).filter((n) => !STAYS.has(n))) {
            // Already in `before` whole: a move stopped as it removed the original.
            if (existsSync(join(before, name))) rmSync(join(to, name), { recursive: true, force: true });
            else move(join(to, name), join(before, name));
          }
          syncToDisk(before);
        }
        mark = { before, movedOut: true };
        writeMark(markPath, mark);
      }
      // Left by a restore stopped as it moved its copy in: parts of a backup, moved in whole below.
      for (const name of readdirSync(to).filter((n) => !STAYS.has(n))) rmSync(join(to, name), { recursive: true, force: true });
      for (const name of readdirSync(staging)) move(join(staging, name), join(to, name));
      // The new names, to the disk: a power cut must not bring the old data back under them.
      syncToDisk(to);
      rmSync(markPath);
      syncToDisk(to);
      done = true;
      return { dataDir: to, before, databases: copied.databases.map((d) => d.name), files: copied.files };
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  } finally {
    held.release();
    if (!done) removeMadeEmpty(to, made);
  }
}

/** The outermost of `dir` and its parents that does not exist, or undefined when `dir` does. */
function outermostMissing(dir: string): string | undefined {
  let missing: string | undefined;
  for (let d = dir; !existsSync(d); d = dirname(d)) {
    missing = d;
    if (dirname(d) === d) break;
  }
  return missing;
}

/**
 * Removes `dir` and its parents up to `made`, those a refused restore made, while they are empty:
 * one holding anything (a restore stopped among its moves, with its mark; a chatd that took the
 * directory meanwhile) is kept as it is.
 */
function removeMadeEmpty(dir: string, made: string | undefined): void {
  if (made === undefined) return;
  for (let d = dir; ; d = dirname(d)) {
    try {
      rmdirSync(d);
    } catch {
      return;
    }
    if (d === made) return;
  }
}

/**
 * A chat.db from a newer build (a backup made before a downgrade) is one
 * chatd here refuses to open: restored, it would leave a data directory no
 * chatd of this build starts on, its data moved aside. Read from the checked
 * copy, which no connection has in WAL mode.
 */
function refuseNewerSchema(chatDb: string): void {
  const db = new Database(chatDb, { readonly: true, fileMustExist: true });
  try {
    const version = Number(db.pragma("user_version", { simple: true }));
    if (version > SCHEMA_VERSION) {
      throw new Error(`the backup's chat.db has schema version ${version}, newer than this build's (${SCHEMA_VERSION}): restore it with the build that made it, or a newer one`);
    }
  } finally {
    db.close();
  }
}

/**
 * Removes what a restore into `dataDir` stopped during its copy (Ctrl-C, a
 * kill) left beside it: the copy of the backup, half made or whole, as large
 * as the data and holding its password hashes. For a holder of the data
 * directory's lock (a restore, chatd as it starts): no restore is under way
 * then. Returns where a restore makes its copy.
 */
export function removeRestoreLeftovers(dataDir: string): string {
  const to = resolve(dataDir);
  const staging = join(dirname(to), `.${basename(to)}.restoring`);
  rmSync(staging, { recursive: true, force: true });
  removeAbandonedPartials(staging);
  return staging;
}

/** The restore's mark, with its -new copy, and chatd's lock and takeover guard: they stay with the directory. */
const STAYS = new Set([...LOCKS, RESTORE_MARK, `${RESTORE_MARK}-new`]);

/** Where a restore sent the data directory's content, and whether all of it has gone there. */
interface RestoreMark {
  before: string | undefined;
  movedOut: boolean;
}

function readMark(path: string): RestoreMark | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const m = JSON.parse(text) as { before?: unknown; movedOut?: unknown };
  return { before: typeof m.before === "string" ? m.before : undefined, movedOut: m.movedOut === true };
}

/** Written whole or not at all (a new file renamed over the old), and to the disk. */
function writeMark(path: string, mark: RestoreMark): void {
  const fresh = `${path}-new`;
  writeFileSync(fresh, `${JSON.stringify(mark)}\n`, { mode: 0o600 });
  syncToDisk(fresh);
  renameSync(fresh, path);
  syncToDisk(dirname(path));
}

/**
 * A rename; across file systems (a data directory that is a mount point), a
 * copy under a temporary name, flushed to the disk and renamed into place,
 * then the removal of the original: `to` exists only whole, so a move stopped
 * midway is either not done (the original whole beside a temporary copy) or
 * done, also after a power cut (unflushed, the copy could be lost or torn
 * with its original already gone: the old data's only copy, or the restored
 * chat.db with the restore's mark already removed).
 */
export function moveEntry(
  from: string,
  to: string,
  rename: (from: string, to: string) => void = renameSync,
  sync: (path: string) => void = syncToDisk,
): void {
  try {
    rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
    const copy = join(dirname(to), `.${basename(to)}.moving`);
    rmSync(copy, { recursive: true, force: true });
    cpSync(from, copy, { recursive: true, preserveTimestamps: true });
    syncTree(copy, sync);
    rename(copy, to);
    sync(dirname(to));
    rmSync(from, { recursive: true, force: true });
  }
}
