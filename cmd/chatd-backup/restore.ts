import { cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { backupDataDir, removeAbandonedPartials, syncToDisk } from "../../internal/storage/sqlite/backup.js";
import { lockDataDir, type DataDirLock } from "../chatd/data-dir.js";

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
 * The directory is kept (its content is swapped), so a data directory that is
 * a mount point can be restored too.
 */
export function restoreDataDir(backup: string, dataDir: string, now: () => Date = () => new Date(), lock: (dir: string) => DataDirLock = lockDataDir): RestoreReport {
  const from = resolve(backup);
  const to = resolve(dataDir);
  if (!existsSync(join(from, "chat.db"))) throw new Error(`no backup in ${from} (chat.db is missing)`);
  if (from === to) throw new Error(`${from} is the data directory itself`);
  if (from.startsWith(to + "/") || to.startsWith(from + "/")) throw new Error(`the backup ${from} and the data directory ${to} cannot be inside one another`);
  const held = lock(to);
  try {
    // One restore at a time holds the lock: what is here was left by one killed midway.
    const staging = join(dirname(to), `.${basename(to)}.restoring`);
    rmSync(staging, { recursive: true, force: true });
    removeAbandonedPartials(staging);
    const copied = backupDataDir(from, staging);
    try {
      const moving = readdirSync(to).filter((name) => !LOCKS.has(name));
      let before: string | undefined;
      if (moving.length > 0) {
        before = `${to}.before-restore-${now().toISOString().replace(/[:.]/g, "-")}`;
        if (existsSync(before)) throw new Error(`${before} exists`);
        mkdirSync(before, { mode: 0o700 });
        for (const name of moving) move(join(to, name), join(before, name));
      }
      for (const name of readdirSync(staging)) move(join(staging, name), join(to, name));
      // The new names, to the disk: a power cut must not bring the old data back under them.
      if (before !== undefined) syncToDisk(before);
      syncToDisk(to);
      return { dataDir: to, before, databases: copied.databases.map((d) => d.name), files: copied.files };
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  } finally {
    held.release();
  }
}

/** A rename; across file systems (a data directory that is a mount point), a copy and a removal. */
function move(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
    cpSync(from, to, { recursive: true, preserveTimestamps: true });
    rmSync(from, { recursive: true, force: true });
  }
}
