// Preloaded into the server processes by `npm run bench -- --heap-snapshots` (`node --import`).
// Plain JavaScript because it loads before tsx. SIGUSR2 writes a V8 heap snapshot
// (after the full collection a snapshot starts with, so it holds only what is live)
// to $CHAT_BENCH_SNAPSHOT_DIR/<pid>-<n>.heapsnapshot, renamed into place once whole.
import { mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { writeHeapSnapshot } from "node:v8";

const dir = process.env.CHAT_BENCH_SNAPSHOT_DIR;
if (dir) {
  mkdirSync(dir, { recursive: true });
  let written = 0;
  process.on("SIGUSR2", () => {
    const file = join(dir, `${process.pid}-${++written}.heapsnapshot`);
    try {
      writeHeapSnapshot(`${file}.part`);
      renameSync(`${file}.part`, file);
    } catch (err) {
      process.stderr.write(`heap-snapshot: ${err.message}\n`);
    }
  });
}
