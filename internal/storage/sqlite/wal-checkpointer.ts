import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/** Pages the writing connection lets the WAL grow to before it checkpoints by itself. */
export const WRITER_AUTOCHECKPOINT_PAGES = 10_000;

// CommonJS, run with `eval`: a TypeScript worker file would need the loader
// that runs this process (tsx in development, none once built).
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true });
const timer = setInterval(() => {
  try { db.pragma("wal_checkpoint(PASSIVE)"); } catch {}
}, workerData.intervalMs);
parentPort.once("message", () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/**
 * Copies the write-ahead log back into the database file from a worker
 * thread, on its own connection, so the event loop that writes never does it.
 * SQLite's default is a checkpoint inside the COMMIT that takes the WAL past
 * 1,000 pages: on a group message (a hundred inbox rows on a hundred pages) it
 * was as much CPU as the inserts themselves, every time, on the main thread.
 *
 * PASSIVE checkpoints never wait for, or block, the writer. The writing
 * connection keeps a checkpoint of its own at WRITER_AUTOCHECKPOINT_PAGES as
 * a backstop: by then the worker has copied nearly every page, so it is
 * cheap, and it is what lets the WAL start over from its beginning while the
 * writer is never idle. If the worker dies the backstop is all that runs.
 * Durability is unchanged: a commit is in the WAL whether or not it has been
 * copied back.
 */
export class WalCheckpointer {
  private readonly worker: Worker;
  private readonly exit: Promise<void>;

  constructor(path: string, intervalMs = 10) {
    const driver = createRequire(import.meta.url).resolve("better-sqlite3");
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { driver, path, intervalMs } });
    // The writer's backstop covers a worker that failed; never keep the process alive for it.
    this.worker.on("error", () => {});
    this.exit = new Promise((resolve) => this.worker.once("exit", () => resolve()));
    this.worker.unref();
  }

  /**
   * Asks the worker to close its connection and exit; does not wait. From
   * here the worker holds the process open until it has exited, so a caller
   * awaiting exited() with nothing else pending is not cut short (Node would
   * end the process with exit code 13, the WAL file left behind).
   */
  stop(): void {
    this.worker.ref();
    this.worker.postMessage("stop");
  }

  /** Resolves when the worker has exited (tests). */
  exited(): Promise<void> {
    return this.exit;
  }
}
