// Key files a process makes once and keeps for good (the token signing key,
// the VAPID pair). Each is written to a temporary file, flushed, then linked
// or renamed into place: without the flush, a power cut soon after the first
// start can leave the name pointing at an empty file (ext4's and XFS's
// delayed allocation), and every later start would fail on it.
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";
import { open } from "node:fs/promises";

/** A new file `path` (refused if there) holding `data`, on the disk when this returns. */
export function writeFlushedSync(path: string, data: string | Uint8Array, mode = 0o600): void {
  const fd = openSync(path, "wx", mode);
  try {
    writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export async function writeFlushed(path: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const file = await open(path, "wx", mode);
  try {
    await file.writeFile(data);
    await file.sync();
  } finally {
    await file.close();
  }
}

/** The directory's entries (a link or rename just made in it) on the disk. Best effort: some filesystems refuse to sync a directory. */
export function flushDirSync(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // The file itself is flushed; at worst the name is lost, and the next start makes the file again.
  }
}

export async function flushDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // As flushDirSync.
  }
}

/**
 * A key file that is there but cannot be used (empty, damaged), as an error
 * naming it, with the `code` and `path` of a file error so that a process
 * reports it in one line beside its setting (chatd: CHAT_DATA_DIR) rather
 * than as a crash.
 */
export function unusableKeyFile(path: string, what: string, cause: unknown): Error {
  const why = cause instanceof Error ? cause.message : String(cause);
  return Object.assign(new Error(`${path} is not ${what} (${why || "empty"})`), { code: "EINVAL", path });
}
