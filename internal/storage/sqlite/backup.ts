import { chmodSync, closeSync, copyFileSync, cpSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, realpathSync, renameSync, rmSync, statSync, truncateSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import Database from "better-sqlite3";
import { isAlive } from "./process-alive.js";

export interface BackupReport {
  target: string;
  /** Each database copied, with its size in the backup. */
  databases: { name: string; bytes: number }[];
  /** Every other file or folder copied as it is (signing keys, the VAPID pair). */
  files: string[];
  ms: number;
}

const DATABASE = /\.db$/;
/** SQLite's companions of a database in WAL mode: their content is in the snapshot. */
const DATABASE_COMPANION = /\.db-(wal|shm|journal)$/;

/**
 * In a data directory while `--restore` moves content in and out
 * (restore.ts): it holds half of each, which neither chatd
 * nor a backup may take for data.
 */
export const RESTORE_MARK = "chatd.restoring";

/**
 * Whether `dir` holds a chat.db. existsSync says no also to a directory this
 * user may not read (0700, chatd's), which then read "chat.db is missing".
 */
function hasChatDb(dir: string): boolean {
  try {
    return statSync(join(dir, "chat.db"), { throwIfNoEntry: false }) !== undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code === "EACCES" || code === "EPERM" ? ": back up as chatd's user, or one that may read its data directory" : "";
    throw new Error(`cannot read ${dir} (${code})${hint}`);
  }
}

/**
 * Copies a chatd data directory, also while chatd runs. Each SQLite database
 * goes through `VACUUM INTO`: one read transaction, so the copy is a
 * consistent snapshot whatever chatd commits meanwhile (the online backup
 * API copies pages and starts over whenever another connection writes, which
 * under steady traffic is for ever). Every other file, such as the token
 * signing keys and the VAPID key pair, is copied as it is: without the keys a
 * restored chatd would sign everyone out and every browser's push
 * subscription would end.
 *
 * The copy is made beside the target, flushed to the disk and renamed into
 * place at the end, so a directory with the target's name is always a
 * finished backup, also after a power cut; an existing target is never
 * written to.
 */
export function backupDataDir(
  source: string,
  target: string,
  now: () => number = Date.now,
  /** Flushes a file or a directory to the disk (tests watch the order). */
  sync: (path: string) => void = syncToDisk,
  /** Called once each database is copied (tests write between two snapshots). */
  copied: (name: string) => void = () => {},
): BackupReport {
  const started = now();
  const from = resolve(source);
  const to = resolve(target);
  if (existsSync(join(from, RESTORE_MARK))) throw new Error(`${from} is half restored (${RESTORE_MARK}): a restore into it did not finish; run it again`);
  if (!hasChatDb(from)) throw new Error(`no chatd data in ${from} (chat.db is missing)`);
  if (existsSync(to)) throw new Error(`${to} exists: a backup goes to a new directory and never overwrites one`);
  // Through symlinks: a CHAT_DATA_DIR that is a link must not let the copy into itself.
  const [realFrom, realTo] = [realpathSync(from), realPathOf(to)];
  if (to === from || to.startsWith(from + "/") || realTo === realFrom || realTo.startsWith(realFrom + "/")) {
    throw new Error(`the backup cannot go inside the data directory ${from}`);
  }

  // A restore into the directory (restore.ts) moves every file out and
  // others in, chat.db among them: one that ran while this copied would leave a backup
  // of old and new files mixed, whose keys sign no token its accounts hold.
  const identity = (): string => {
    const s = statSync(join(from, "chat.db"), { bigint: true, throwIfNoEntry: false });
    return s ? `${s.dev}:${s.ino}` : "none";
  };
  const original = identity();

  mkdirSync(dirname(to), { recursive: true });
  removeAbandonedPartials(to);
  const partial = partialPath(to, process.pid);
  mkdirSync(partial, { mode: 0o700 });
  try {
    const report: BackupReport = { target: to, databases: [], files: [], ms: 0 };
    for (const name of copyOrder(readdirSync(from))) {
      // The running chatd's lock (data-dir.ts): copied, it would keep a chatd off the restored copy.
      if (DATABASE_COMPANION.test(name) || name === "chatd.lock" || name === "chatd.lock.takeover") continue;
      if (DATABASE.test(name)) {
        try {
          copyDatabase(join(from, name), join(partial, name));
        } catch (err) {
          // SQLite's messages name no file: "database or disk is full" could be either disk.
          throw new Error(`copying ${join(from, name)} to ${dirname(to)}: ${(err as Error).message}`, { cause: err });
        }
        report.databases.push({ name, bytes: statSync(join(partial, name)).size });
        copied(name);
      } else {
        // The files themselves, not links to them: a backup must outlive the originals.
        cpSync(join(from, name), join(partial, name), { recursive: true, preserveTimestamps: true, dereference: true });
        report.files.push(name);
      }
    }
    if (existsSync(join(from, RESTORE_MARK)) || identity() !== original) {
      throw new Error(`${from} was restored into while it was copied: run the backup again`);
    }
    // VACUUM INTO and cpSync leave their writes in the page cache: a power cut
    // after the rename could leave a torn copy under the finished name.
    syncTree(partial, sync);
    renameSync(partial, to);
    sync(dirname(to));
    report.ms = now() - started;
    return report;
  } catch (err) {
    rmSync(partial, { recursive: true, force: true });
    throw err;
  }
}

/**
 * chat.db last. Each database is a snapshot of its own moment, and what moves
 * between them goes from queue.db to chat.db: the sends an older chatd acked
 * into queue.db, which chatd stores in chat.db and then trims from the queue
 * (cmd/chatd/old-pipeline.ts), and the push notifications of messages stored
 * in chat.db. Copied first, the queue can only hold a record chat.db has too
 * (stored again, it is dropped as a repeat); copied after chat.db, a record
 * stored and trimmed between the two snapshots was in neither, an acked
 * message lost, and a notification could name a message the backup lacks.
 */
function copyOrder(names: string[]): string[] {
  return names.sort().sort((a, b) => Number(a === "chat.db") - Number(b === "chat.db"));
}

/** `path` with the symlinks of its longest existing part resolved. */
function realPathOf(path: string): string {
  const rest: string[] = [];
  let at = path;
  while (!existsSync(at) && dirname(at) !== at) {
    rest.unshift(basename(at));
    at = dirname(at);
  }
  return join(realpathSync(at), ...rest);
}

/** Where the backup to `to` by process `pid` is made, beside the target. */
function partialPath(to: string, pid: number): string {
  return join(dirname(to), `.${basename(to)}.partial-${pid}`);
}

/**
 * Removes the half-made copies of backups to `target` whose process is gone:
 * one killed (Ctrl-C, a timeout, the OOM killer) or cut off by a power cut
 * leaves its copy beside the target, as large as the data and holding its
 * password hashes, and every run after would leave another. A copy whose
 * pid is alive (another backup to the same target under way) is left alone;
 * so is our own pid's, which the caller makes. Returns the paths removed.
 */
export function removeAbandonedPartials(target: string, alive: (pid: number) => boolean = isAlive): string[] {
  const to = resolve(target);
  const prefix = `.${basename(to)}.partial-`;
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dirname(to));
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = name.slice(prefix.length);
    if (!/^[1-9]\d*$/.test(pid)) continue;
    // Our own pid in a copy we have not started is a previous life's (a container's pid 1 again).
    if (Number(pid) !== process.pid && alive(Number(pid))) continue;
    rmSync(join(dirname(to), name), { recursive: true, force: true });
    removed.push(join(dirname(to), name));
  }
  return removed;
}

/** Every file under `path` (or `path` itself, a file), then each directory after what it holds. */
export function syncTree(dir: string, sync: (path: string) => void): void {
  if (!statSync(dir).isDirectory()) return sync(dir);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) syncTree(path, sync);
    else sync(path);
  }
  sync(dir);
}

/** fsync of a file or a directory (a rename is durable once its directory is synced). */
export function syncToDisk(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function copyDatabase(path: string, copy: string): void {
  // Made empty first, for the owner alone: the copy holds password and token
  // hashes, and SQLite would create it readable by everyone (0644), which a
  // copy taken out of the backup's 0700 directory keeps. VACUUM INTO fills an
  // empty file as it is.
  closeSync(openSync(copy, "wx", 0o600));
  if (!copyStoppedDatabase(path, copy)) {
    // Read-only: a backup never migrates, checkpoints or otherwise changes what it copies.
    const db = new Database(path, { readonly: true, fileMustExist: true });
    try {
      db.prepare("VACUUM INTO ?").run(copy);
    } finally {
      db.close();
    }
  }
  const check = new Database(copy, { fileMustExist: true });
  try {
    // As VACUUM INTO leaves its copies: a file that needs no -wal or -shm beside
    // it (chatd turns WAL on again when it opens it).
    check.pragma("journal_mode = DELETE");
    const result = check.pragma("quick_check", { simple: true });
    if (result !== "ok") throw new Error(`the copy of ${basename(path)} fails SQLite's quick_check: ${String(result)}`);
  } finally {
    check.close();
  }
}

/**
 * A database no chatd has open (chatd stopped: no WAL beside it, every commit
 * is in the file) is copied as a file. A connection, even a read-only one,
 * would make `-wal` and `-shm` files beside it, changing the directory it
 * copies, and where it may not (a read-only snapshot, a backup user without
 * write access) could not read it at all ("attempt to write a readonly
 * database"). A chatd that starts meanwhile makes a WAL and changes the file:
 * then the copy is thrown away (false) and made the ordinary way.
 */
function copyStoppedDatabase(path: string, copy: string): boolean {
  const wal = `${path}-wal`;
  if (existsSync(wal)) return false;
  const before = statSync(path, { bigint: true });
  copyFileSync(path, copy);
  chmodSync(copy, 0o600); // copyFileSync gives the copy the original's mode
  const after = statSync(path, { bigint: true });
  const unchanged = (["ino", "size", "mtimeNs", "ctimeNs"] as const).every((k) => before[k] === after[k]);
  if (unchanged && !existsSync(wal)) return true;
  truncateSync(copy, 0);
  return false;
}
